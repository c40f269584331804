"""What only the board knows, for every health record: free heap, uptime, reset cause, RSSI.

The engine's health record already carries the queue (``depth``, ``bytes``, losses), the
intake, the filters and the batcher; ``refresh`` adds the board's figures through
``engine.set_health`` just before each ``poll``. All whole numbers, as the batch format
wants. ``wifi_rssi`` is None while WiFi is down.
"""

import gc

from bankiot_core.ticks import elapsed


def board_figures(uptime_s, reset_cause, rssi):
    """The board's own figures as a dict (``heap_free`` and ``heap_used`` after a collect)."""
    gc.collect()
    return {
        "heap_free": gc.mem_free(),
        "heap_used": gc.mem_alloc(),
        "uptime_s": uptime_s,
        "reset_cause": reset_cause,
        "wifi_rssi": rssi,
    }


class Uptime:
    """Seconds since start from a wrapping millisecond clock: called at least every few
    days (each ``tick`` adds the time since the last), it never wraps itself."""

    def __init__(self, now_ms):
        self._last = now_ms
        self._ms = 0

    def tick(self, now_ms):
        """Advance to ``now_ms``; returns whole seconds since start."""
        self._ms += elapsed(now_ms, self._last)
        self._last = now_ms
        return self._ms // 1000


def refresh(engine, figures, *counter_sets):
    """Hand ``figures`` and every dict of ``counter_sets`` to ``engine.set_health``."""
    for name in figures:
        engine.set_health(name, figures[name])
    for counters in counter_sets:
        for name in counters:
            engine.set_health(name, counters[name])
