"""WiFi station: join the provisioned network, notice when it is lost, retry with backoff.

``WifiLink.step(now_ms)`` never blocks: it starts a connection when the core's
``Reconnector`` says one is due, and on later steps reads the interface's status; a wrong
key, a missing access point or ``connect_timeout_ms`` without an address is a failed
attempt, retried after a jittered, doubling delay (1 s to 60 s). ``rssi()`` is None while
not connected. The key is never printed.
"""

from bankiot_core.backoff import Backoff, Reconnector
from bankiot_core.ticks import elapsed


class WifiLink:
    """The station interface of ``network`` joining ``ssid`` (module docstring)."""

    def __init__(self, network, ssid, key, random, connect_timeout_ms=20000, backoff=None):
        self.network = network
        self.ssid = ssid
        self._key = key
        self.connect_timeout_ms = connect_timeout_ms
        self.wlan = network.WLAN(network.STA_IF)
        self.reconnector = Reconnector(backoff or Backoff(1000, 60000), random)
        self._started = 0
        self.connects = 0
        self.failures = 0
        self.last_status = None

    def step(self, now_ms):
        """Advance; True while connected."""
        state = self.reconnector.state
        wlan = self.wlan
        if state == "UP":
            if wlan.isconnected():
                return True
            self.reconnector.lost(now_ms)
            return False
        if state == "WAITING":
            if not self.reconnector.due(now_ms):
                return False
            wlan.active(True)
            try:
                wlan.connect(self.ssid, self._key)
            except OSError:
                self._failed(now_ms)
                return False
            self._started = now_ms
        if wlan.isconnected():
            self.reconnector.succeeded()
            self.connects += 1
            return True
        status = wlan.status()
        self.last_status = status
        network = self.network
        refused = (network.STAT_WRONG_PASSWORD, network.STAT_NO_AP_FOUND, network.STAT_CONNECT_FAIL)
        if status in refused or elapsed(now_ms, self._started) > self.connect_timeout_ms:
            self._failed(now_ms)
        return False

    def _failed(self, now_ms):
        self.failures += 1
        try:
            self.wlan.disconnect()
        except OSError:
            self.last_status = None  # the interface is down already
        self.reconnector.failed(now_ms)

    def connected(self):
        """True while the station has an address."""
        return self.reconnector.state == "UP" and self.wlan.isconnected()

    def rssi(self):
        """The signal strength in dBm, or None while not connected."""
        if not self.connected():
            return None
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError):
            return None
