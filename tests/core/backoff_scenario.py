"""A reconnect story for bankiot_core.backoff, runnable under CPython and MicroPython.

A gateway loses its broker for a while: attempts fail, delays grow under the cap with the
jitter the scenario chooses, the link comes back, breaks again, and the first delay is short
again. ``tests/core/test_backoff.py`` runs ``run()`` on CPython and under real MicroPython
(installed as ``/lib/backoff_scenario.py``) and compares both with ``EXPECTED``.

Written in the common subset: no f-strings, no annotations.
"""

from bankiot_core.backoff import Backoff, Reconnector

# The jitter, one number per delay (a board would pass random.random instead).
JITTER = (0.5, 0.25, 0.999999, 0.5, 0.0, 0.75, 0.5)


def run():
    numbers = list(JITTER)

    def jitter():
        return numbers.pop(0)

    rc = Reconnector(Backoff(base_ms=1000, cap_ms=5000), jitter)
    log = []
    now = 0x3FFFFF00  # near the 2**30 wrap of ticks_ms(): differences must still be right
    log.append(["start", rc.state, rc.wait_ms(now), rc.due(now), rc.state])
    for _ in range(5):  # five failed attempts
        rc.failed(now)
        log.append(["failed", rc.delay_ms, rc.backoff.ceiling()])
        waited = rc.wait_ms(now) or 0
        if waited:
            log.append(["early", rc.due(now + waited - 1), rc.wait_ms(now + waited - 1)])
        now += waited
        log.append(["due", rc.due(now)])
    rc.succeeded()
    log.append(["up", rc.state, rc.wait_ms(now), rc.backoff.ceiling()])
    now += 60000
    rc.lost(now)
    log.append(["lost", rc.delay_ms, rc.state])
    now += rc.wait_ms(now) or 0
    log.append(["due", rc.due(now), rc.attempts, rc.failures])
    rc.stop()
    log.append(["stopped", rc.state, rc.due(now + 100000)])
    return log


EXPECTED = [
    ["start", "WAITING", 0, True, "ATTEMPTING"],  # the first attempt is at once
    # delay = int(r * ceiling); ceilings 1000, 2000, 4000, then the cap 5000
    ["failed", 500, 2000],
    ["early", False, 1],
    ["due", True],
    ["failed", 500, 4000],
    ["early", False, 1],
    ["due", True],
    ["failed", 3999, 5000],  # 0.999999 * 4000 = 3999.996
    ["early", False, 1],
    ["due", True],
    ["failed", 2500, 5000],
    ["early", False, 1],
    ["due", True],
    ["failed", 0, 5000],  # r = 0: at once
    ["due", True],
    ["up", "UP", None, 1000],  # the backoff starts again
    ["lost", 750, "WAITING"],  # 0.75 * 1000
    ["due", True, 7, 5],
    ["stopped", "STOPPED", False],
]
