"""Test stand-in for MicroPython's ``bluetooth`` module (never installed on a board).

Only the observer role the gateways use: ``BLE().active()``, ``irq(handler)``,
``gap_scan(duration_ms, interval_us, window_us, active)``. Hooks for tests:
``BLE._inject(addr_type, addr, adv_type, rssi, adv_data)`` delivers a scan result to the IRQ
handler exactly as the stack does (memoryviews valid only during the call) and
``BLE._scan_done()`` ends the scan. On the virtual board the host's radio feeds
``_host_poll()``.
"""

from binascii import unhexlify

_IRQ_SCAN_RESULT = 5
_IRQ_SCAN_DONE = 6

FLAG_READ = 0x0002
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010

_instance = None


class UUID:
    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, UUID) and self.value == other.value


class BLE:
    def __new__(cls):
        global _instance
        if _instance is None:
            _instance = object.__new__(cls)
            _instance._active = False
            _instance._handler = None
            _instance._scan = None
        return _instance

    def __init__(self):
        pass

    def active(self, active=None):
        if active is None:
            return self._active
        self._active = bool(active)

    def irq(self, handler):
        self._handler = handler

    def config(self, *args, **kwargs):
        if args and args[0] == "mac":
            return (0, b"\x24\x0a\xc4\x12\x34\x58")
        return None

    def gap_scan(self, duration_ms, interval_us=1280000, window_us=11250, active=False):
        if not self._active:
            raise OSError(19)  # ENODEV, as the stack reports when inactive
        if duration_ms is None:
            self._scan = None
        else:
            self._scan = (duration_ms, interval_us, window_us, active)

    def _inject(self, addr_type, addr, adv_type, rssi, adv_data):
        """Test hook: the radio heard an advertisement."""
        if self._scan is None or self._handler is None:
            return False
        # The stack hands out views into its own buffers, valid only during the call;
        # overwriting them afterwards catches a handler that keeps them.
        a = bytearray(addr)
        d = bytearray(adv_data)
        self._handler(_IRQ_SCAN_RESULT, (addr_type, memoryview(a), adv_type, rssi, memoryview(d)))
        for i in range(len(a)):
            a[i] = 0xEE
        for i in range(len(d)):
            d[i] = 0xEE
        return True

    def _host_poll(self):
        """Virtual board hook: deliver what the host's simulated radio queued (see
        hw/virtual_board.py); returns how many reached the handler."""
        import _vboard  # the virtual board's host link; absent elsewhere

        n = 0
        while True:
            record = _vboard.take_adv()
            if record is None:
                return n
            addr_type, addr, adv_type, rssi, data = record.split(",")
            if self._inject(
                int(addr_type), unhexlify(addr), int(adv_type), int(rssi), unhexlify(data)
            ):
                n += 1

    def _scan_done(self):
        self._scan = None
        if self._handler is not None:
            self._handler(_IRQ_SCAN_DONE, ())


def _host_poll():
    """Virtual board hook: the radio heard something; deliver it if a BLE object exists."""
    if _instance is not None:
        return _instance._host_poll()
    return 0
