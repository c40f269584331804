"""Millisecond timestamps that wrap, as MicroPython's ``time.ticks_ms()`` does.

The core never reads a clock: callers pass ``now_ms``, a millisecond count that never goes
backwards (``time.ticks_ms()`` on a board, ``time.monotonic_ns() // 1000000`` on CPython).
State keeps times reduced modulo ``PERIOD`` (2**30 ms, about 12.4 days), the period of
``ticks_ms()`` on the boards, so every stored time is a small int: on MicroPython a small int
lives inside the pointer and costs no heap, where a larger one would cost 16 bytes or more.

Differences are taken modulo the period too (``elapsed``), which is right as long as the two
times are less than one period apart. Holders of timestamps therefore forget them once they
have expired (see ``filters.FilterPipeline.tick``); every configurable duration is at most
``MAX_DURATION_MS`` (half a period, about 6.2 days).
"""

from bankiot_core._compat import const

PERIOD = const(0x40000000)
MASK = const(0x3FFFFFFF)
MAX_DURATION_MS = const(0x1FFFFFFF)


def wrap(now_ms):
    """Return ``now_ms`` reduced to a tick (an int in ``0 .. PERIOD - 1``)."""
    return now_ms & MASK


def elapsed(now, then):
    """Milliseconds from tick ``then`` to tick ``now``, in ``0 .. PERIOD - 1``.

    ``then`` None means "never" and gives ``PERIOD - 1``, longer than any duration. A clock
    that stepped back a little gives a value near the period, which also reads as "long ago".
    """
    if then is None:
        return MASK
    return (now - then) & MASK
