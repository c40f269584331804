"""The scan duty cycle: listen less when nothing paired has been heard for a while, and
outside the branch's opening hours.

Energy on a board is the radio's listening time. While paired devices are heard
(``frames_in`` of the engine goes up) the scanner uses the configured window; once
``idle_after_ms`` pass without one, the window shrinks to a ``idle_divisor``-th (at least
the 2.5 ms the specification allows, here 3), and it comes back at the next frame heard.
Outside the opening hours (``gatewayconfig.opening_hours``; the caller says whether it is
open) the window is that idle one whatever is heard; when the branch opens, the
configured one comes back for at least ``idle_after_ms``. The interval stays, so a device
that comes back is still heard within one interval, only less surely per advertisement.
The time listened is in health (``scan_on_ms``).
"""

from bankiot_core.ticks import elapsed

_MIN_WINDOW_MS = 3


class DutyCycle:
    """Decides the scan window (module docstring)."""

    def __init__(self, idle_after_ms=300000, idle_divisor=4):
        self.idle_after_ms = idle_after_ms
        self.idle_divisor = idle_divisor
        self.idle = False  # the window is the idle one now (nothing heard, or closed)
        self.closed = False  # outside the opening hours
        self._frames = None
        self._heard_at = None

    def window(self, now_ms, frames_in, window_ms, open_now=True):
        """The window to scan with now, given the engine's ``frames_in`` count, the
        configured ``window_ms`` and whether the branch is open (``open_now``)."""
        if self._frames is None or frames_in != self._frames or (self.closed and open_now):
            self._frames = frames_in  # heard, or the branch just opened: a full window
            self._heard_at = now_ms
        self.closed = not open_now
        self.idle = self.closed or elapsed(now_ms, self._heard_at) >= self.idle_after_ms
        if not self.idle:
            return window_ms
        reduced = window_ms // self.idle_divisor
        return reduced if reduced >= _MIN_WINDOW_MS else _MIN_WINDOW_MS
