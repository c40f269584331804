"""Test stand-in for MicroPython's ``network`` module (never installed on a board).

``WLAN`` connects when the SSID is in ``_NETWORKS`` with the right key. Hooks for tests:
``_NETWORKS`` (ssid -> key), ``WLAN._drop()`` to simulate losing the access point.
"""

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_WRONG_PASSWORD = -3
STAT_NO_AP_FOUND = -2
STAT_CONNECT_FAIL = -1
STAT_GOT_IP = 3

_NETWORKS = {"branch-iot": "branch-secret"}
_interfaces = {}


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF

    def __new__(cls, interface=STA_IF):
        # One object per interface, as on the boards.
        if interface not in _interfaces:
            obj = object.__new__(cls)
            obj._interface = interface
            obj._active = False
            obj._status = STAT_IDLE
            obj._ssid = None
            obj._config = {"mac": b"\x24\x0a\xc4\x12\x34\x57", "hostname": "bankiot"}
            _interfaces[interface] = obj
        return _interfaces[interface]

    def __init__(self, interface=STA_IF):
        pass

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._status = STAT_IDLE

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("WLAN not active")
        if ssid not in _NETWORKS:
            self._status = STAT_NO_AP_FOUND
        elif _NETWORKS[ssid] != key:
            self._status = STAT_WRONG_PASSWORD
        else:
            self._status = STAT_GOT_IP
            self._ssid = ssid

    def disconnect(self):
        self._status = STAT_IDLE

    def isconnected(self):
        return self._status == STAT_GOT_IP

    def status(self, param=None):
        if param == "rssi":
            return -55
        return self._status

    def ifconfig(self, config=None):
        if self._status != STAT_GOT_IP:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kwargs):
        if args:
            return self._config[args[0]]
        self._config.update(kwargs)

    def _drop(self):
        """Test hook: the access point went away."""
        self._status = STAT_CONNECT_FAIL
