"""Test stand-in for MicroPython's ``machine`` module (never installed on a board).

Covers what the firmware uses: Pin, WDT, UART, unique_id, reset, reset_cause, freq, idle.
Hooks for tests: ``_UNIQUE_ID`` (bytes), ``_RESET_CAUSE``, ``WDT._feeds``, ``Reset`` (raised
by ``reset()`` so a test harness can "reboot" the board), ``UART._written`` (every byte
written) and ``UART._feed(data)`` (bytes arriving), ``_wdts`` (every WDT started).
"""

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_UNIQUE_ID = b"\x24\x0a\xc4\x12\x34\x56"
_RESET_CAUSE = PWRON_RESET
_FREQ = 240000000


class Reset(BaseException):
    """Raised by reset(): the board would restart here."""


def unique_id():
    """The chip's unique id (the ESP32 base MAC here)."""
    return _UNIQUE_ID


def _tell_host(cause):
    # On the virtual board the host reboots the VM once the running code returns.
    try:
        import _vboard
    except ImportError:
        return
    _vboard.request_reset(cause)


def reset():
    _tell_host(HARD_RESET)
    raise Reset()


def soft_reset():
    _tell_host(SOFT_RESET)
    raise Reset()


def reset_cause():
    return _RESET_CAUSE


def freq(hz=None):
    global _FREQ
    if hz is None:
        return _FREQ
    _FREQ = hz


def idle():
    pass


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 1
    IRQ_RISING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._value = 1 if pull == Pin.PULL_UP else 0
        self._handler = None
        if value is not None:
            self._value = 1 if value else 0

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self._value = 1

    def off(self):
        self._value = 0

    def toggle(self):
        self._value ^= 1

    def irq(self, handler=None, trigger=3):
        self._handler = handler
        self._trigger = trigger

    def _drive(self, v):
        """Test hook: an external signal sets the level and fires the IRQ on an edge."""
        old = self._value
        self._value = 1 if v else 0
        if self._handler is not None and old != self._value:
            rising = self._value == 1
            if self._trigger & (Pin.IRQ_RISING if rising else Pin.IRQ_FALLING):
                self._handler(self)


_wdts = []


class WDT:
    """A watchdog that cannot be stopped; tests read ``_feeds``."""

    def __init__(self, id=0, timeout=5000):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self._feeds = 0
        _wdts.append(self)

    def feed(self):
        self._feeds += 1


class UART:
    """A serial port: what is written is kept in ``_written``; ``_feed`` makes bytes readable."""

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, tx=None, rx=None, **kw):
        self.id = id
        self.baudrate = baudrate
        self.tx = tx
        self.rx = rx
        self._written = bytearray()
        self._inbox = bytearray()

    def init(self, baudrate=115200, **kw):
        self.baudrate = baudrate

    def write(self, data):
        self._written.extend(data)
        return len(data)

    def any(self):
        return len(self._inbox)

    def read(self, n=-1):
        if not self._inbox:
            return None
        if n < 0:
            n = len(self._inbox)
        out = bytes(self._inbox[:n])
        self._inbox = self._inbox[n:]
        return out

    def _feed(self, data):
        """Test hook: bytes arrive on RX."""
        self._inbox.extend(data)
