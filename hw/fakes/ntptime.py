"""Test stand-in for MicroPython's ``ntptime`` module (never installed on a board).

On a board ``settime()`` asks an NTP server (UDP, a one-second timeout) and sets the RTC.
Here nothing is asked: the host's clock is already right (``time.time()`` in the VM is the
host's). Hooks for tests: ``_fail`` (how many of the next calls fail as an unanswered
query does: ``OSError(ETIMEDOUT)``), ``_calls`` (every call made), ``host``.
"""

import errno
import time as _time

host = "pool.ntp.org"
timeout = 1
_fail = 0
_calls = []


def _answer():
    global _fail
    if _fail > 0:
        _fail -= 1
        raise OSError(errno.ETIMEDOUT)


def time():
    _calls.append("time")
    _answer()
    return int(_time.time())


def settime():
    _calls.append("settime")
    _answer()
