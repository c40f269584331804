"""Test stand-in for MicroPython's ``machine`` module (never installed on a board).

Covers what the firmware uses: Pin, WDT, unique_id, reset, reset_cause, freq, idle.
Hooks for tests: ``_UNIQUE_ID`` (bytes), ``_RESET_CAUSE``, ``WDT._feeds``, ``Reset`` (raised
by ``reset()`` so a test harness can "reboot" the board).
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


def reset():
    raise Reset()


def soft_reset():
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


class WDT:
    """A watchdog that cannot be stopped; tests read ``_feeds``."""

    def __init__(self, id=0, timeout=5000):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self._feeds = 0

    def feed(self):
        self._feeds += 1
