"""The running board's support module, its pins as objects, and the watchdog's timeout."""

import sys


def current(platform=None):
    """``boards.picow`` on rp2, else ``boards.esp32`` (also under the test VM)."""
    name = platform if platform is not None else sys.platform
    if name == "rp2":
        from boards import picow

        return picow
    from boards import esp32

    return esp32


def wdt_timeout(board, wanted_ms=None):
    """The watchdog timeout to ask for: ``wanted_ms`` (default the board's), at most what
    the chip allows (8388 ms on the RP2040) and at least a second."""
    wanted = board.WDT_TIMEOUT_MS if wanted_ms is None else wanted_ms
    if wanted > board.WDT_MAX_MS:
        wanted = board.WDT_MAX_MS
    return wanted if wanted >= 1000 else 1000


def button_held(board, machine):
    """True if the board's button is held now (forces safe mode at boot)."""
    if board.BUTTON_PIN is None:
        try:
            import rp2  # type: ignore[import-not-found]

            return bool(rp2.bootsel_button())
        except ImportError:
            return False
    pin = machine.Pin(board.BUTTON_PIN, machine.Pin.IN, machine.Pin.PULL_UP)
    level = pin.value()
    return level == 0 if board.BUTTON_ACTIVE_LOW else level == 1


class Led:
    """The status LED: ``on``, ``off``, ``toggle`` whatever its polarity."""

    def __init__(self, board, machine):
        self.pin = machine.Pin(board.LED_PIN, machine.Pin.OUT)
        self.active_high = board.LED_ACTIVE_HIGH
        self.off()

    def on(self):
        self.pin.value(1 if self.active_high else 0)

    def off(self):
        self.pin.value(0 if self.active_high else 1)

    def toggle(self):
        self.pin.value(0 if self.pin.value() else 1)
