"""Boots that never reached a healthy run, counted on flash: past a limit, safe mode.

``boot.py`` calls ``CrashCounter.boot()`` on every start; the application calls
``healthy()`` once it has run well for a while (``HEALTHY_AFTER_MS``: the main loop turning
and the watchdog fed), which sets the count back to 0. A board that resets again and again
before that (an exception at start, a watchdog reset, a brown-out in a loop) reaches
``limit`` and ``safe_mode()`` says so: ``main.py`` then starts nothing (no watchdog, no
radio, no network) and leaves the REPL to the technician. Holding the board's button at
boot forces safe mode too; ``clear()`` (or a healthy run) ends it.

The count is one decimal number in one small file, written atomically (``store.write``).
"""

from app import store

COUNT_FILE = "/data/boots"
DEFAULT_LIMIT = 4
HEALTHY_AFTER_MS = 60000


def parse_count(data):
    """The count stored in ``data`` (bytes or None); garbage counts as 0."""
    if not data:
        return 0
    text = data.decode().strip() if isinstance(data, (bytes, bytearray)) else str(data)
    return int(text) if text.isdigit() else 0


def in_safe_mode(count, limit, button_held=False):
    """Whether ``count`` boots without a healthy run (or the held button) mean safe mode."""
    return button_held or count >= limit


class CrashCounter:
    """The count in ``path`` (module docstring); ``limit`` boots in a row mean safe mode."""

    def __init__(self, path=COUNT_FILE, limit=DEFAULT_LIMIT):
        self.path = path
        self.limit = limit

    def count(self):
        """Boots since the last healthy run."""
        return parse_count(store.read(self.path))

    def boot(self):
        """One more boot; returns the new count."""
        count = self.count() + 1
        folder = self.path.rsplit("/", 1)[0]
        if folder:
            store.makedirs(folder)
        store.write(self.path, b"%d" % count)
        return count

    def healthy(self):
        """The application runs well: the count starts again from 0."""
        if self.count():
            store.write(self.path, b"0")

    clear = healthy

    def safe_mode(self, button_held=False):
        """True when the board must start in safe mode."""
        return in_safe_mode(self.count(), self.limit, button_held)
