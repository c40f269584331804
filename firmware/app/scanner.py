"""The BLE observer: ``bluetooth.BLE`` scanning, results copied into an ``AdvRing``.

The IRQ handler only copies and returns (``ring.put``); decoding and filtering happen in the
gateway's task. Scanning runs continuously (``gap_scan(0, ...)``) with the configured
interval and window (``scan_interval_ms``, ``scan_window_ms`` of ``gatewayconfig``); on an
ESP32 WiFi and BLE share one radio, which the default window (half the interval) leaves
room for. A scan the stack ends by itself (``_IRQ_SCAN_DONE``) is restarted by ``check``.

Energy: ``radio_on_ms`` adds up window/interval of the time spent scanning, the figure
health reports (``scan_on_ms``); ``set_duty`` changes interval and window on the fly
(the gateway scans less when nothing paired has been heard for a while).
"""

from bankiot_core._compat import const
from bankiot_core.ticks import elapsed

_IRQ_SCAN_RESULT = const(5)
_IRQ_SCAN_DONE = const(6)


class Scanner:
    """Scan with ``ble`` (a ``bluetooth.BLE``) into ``ring`` (module docstring)."""

    def __init__(self, ble, ring, interval_ms=100, window_ms=50, active=False):
        self.ble = ble
        self.ring = ring
        self.interval_ms = interval_ms
        self.window_ms = window_ms
        self.active = active
        self.scanning = False
        self.restarts = 0
        self._on_ms = 0
        self._since = None

    def _irq(self, event, data):
        if event == _IRQ_SCAN_RESULT:
            self.ring.put(data[0], data[1], data[3], data[4])
        elif event == _IRQ_SCAN_DONE:
            self.scanning = False

    def start(self, now_ms):
        """Power the radio and scan until stopped."""
        self.ble.active(True)
        self.ble.irq(self._irq)
        self.ble.gap_scan(0, self.interval_ms * 1000, self.window_ms * 1000, self.active)
        self.scanning = True
        self._since = now_ms

    def stop(self, now_ms):
        """Stop scanning (the radio stays on)."""
        self._account(now_ms)
        self._since = None
        self.ble.gap_scan(None)
        self.scanning = False

    def set_duty(self, interval_ms, window_ms, now_ms):
        """Scan with another interval and window from now on."""
        if interval_ms == self.interval_ms and window_ms == self.window_ms:
            return
        self._account(now_ms)
        self.interval_ms = interval_ms
        self.window_ms = window_ms
        if self.scanning:
            self.start(now_ms)

    def check(self, now_ms):
        """Restart a scan the stack ended; True if it had to."""
        if self.scanning or self._since is None:
            return False
        self.restarts += 1
        self.start(now_ms)
        return True

    def _account(self, now_ms):
        if self._since is not None:
            spent = elapsed(now_ms, self._since)
            self._on_ms += spent * self.window_ms // self.interval_ms
            self._since = now_ms

    def radio_on_ms(self, now_ms):
        """Milliseconds the receiver has listened since start (window / interval of scan time)."""
        self._account(now_ms)
        return self._on_ms
