"""Reconnect backoff, and the decision of when to try to connect: "stay connected", sans-I/O.

Two layers, as mqtt_as keeps them apart:

- one attempt: the driver opens a socket and runs one protocol session over it (for MQTT,
  ``mqtt.MqttClient``: CONNECT, CONNACK, traffic, until the link dies);
- stay connected: ``Reconnector`` says when the next attempt is due, and hears how each one
  ended. It never opens anything and reads no clock: the driver passes ``now_ms``, and asks
  ``wait_ms`` how long it may sleep.

Delays come from ``Backoff``: exponential with full jitter (the delay before attempt n is
uniform in ``[0, min(cap_ms, base_ms * 2**n))``), so that a branch full of gateways coming
back after a power cut does not knock on the broker all at once (ETSI EN 303 645 5.9-3:
orderly reconnects). The count starts again after a successful connection.

Randomness comes in: a number in ``[0, 1)`` or a function returning one (``random.random``
on a board or on CPython), so tests choose it.
"""

from bankiot_core.errors import ConfigError, LocalError
from bankiot_core.ticks import MAX_DURATION_MS, elapsed, wrap


def _uniform(random):
    """A number in [0, 1) from ``random``: the number itself or what the function returns."""
    r = random() if callable(random) else random
    if not isinstance(r, (int, float)) or r < 0 or r >= 1:
        raise ConfigError("randomness must be a number in [0, 1), not %r" % (r,))
    return r


class Backoff:
    """Exponential delays with full jitter and a cap, in milliseconds."""

    def __init__(self, base_ms=1000, cap_ms=60000):
        if not isinstance(base_ms, int) or not isinstance(cap_ms, int):
            raise ConfigError("base_ms and cap_ms must be ints (milliseconds)")
        if not 1 <= base_ms <= cap_ms <= MAX_DURATION_MS:
            raise ConfigError("backoff needs 1 <= base_ms <= cap_ms <= %d" % MAX_DURATION_MS)
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.attempts = 0  # delays handed out since the last reset
        self._ceiling = base_ms

    def ceiling(self):
        """The upper bound (exclusive) of the next delay: ``min(cap, base * 2**attempts)``."""
        return self._ceiling

    def next_delay(self, random):
        """The next delay in ms, uniform in ``[0, ceiling())``; then the ceiling doubles."""
        ceiling = self._ceiling
        delay = int(_uniform(random) * ceiling)
        if delay >= ceiling:  # single-precision floats (ESP32) can round r * ceiling up
            delay = ceiling - 1
        self.attempts += 1
        # Doubling stops at the cap, so the ceiling stays a small int however long it fails.
        self._ceiling = min(ceiling * 2, self.cap_ms)
        return delay

    def reset(self):
        """After a successful connection: the next delay is short again."""
        self.attempts = 0
        self._ceiling = self.base_ms


# Reconnector states.
WAITING = "WAITING"  # no link; the next attempt is due after a delay
ATTEMPTING = "ATTEMPTING"  # the driver is trying (socket, CONNECT, waiting for CONNACK)
UP = "UP"  # connected
STOPPED = "STOPPED"  # no more attempts (shutdown, decommission)

# (state, trigger) -> next state; a missing pair is not allowed in that state.
_TRANSITIONS = {
    (WAITING, "attempt"): ATTEMPTING,
    (ATTEMPTING, "succeeded"): UP,
    (ATTEMPTING, "failed"): WAITING,
    (UP, "lost"): WAITING,
    (WAITING, "stop"): STOPPED,
    (ATTEMPTING, "stop"): STOPPED,
    (UP, "stop"): STOPPED,
    (STOPPED, "stop"): STOPPED,
}


class Reconnector:
    """When to attempt a connection: at once at the start, then after backoff delays.

    The driver's loop::

        if rc.due(now):                 # state ATTEMPTING
            try to connect ...
            rc.succeeded()   or   rc.failed(now)
        ... later, the link breaks: rc.lost(now)
        sleep at most rc.wait_ms(now)

    ``random`` (a function returning [0, 1)) jitters the delays; ``failed`` and ``lost``
    also take ``r``, a number or function for that one delay. ``attempts`` and
    ``failures`` count all attempts and the failed ones; ``delay_ms`` is the last delay.
    """

    def __init__(self, backoff=None, random=None):
        self.backoff = backoff if backoff is not None else Backoff()
        self.random = random
        self.state = WAITING
        self.attempts = 0
        self.failures = 0
        self.delay_ms = 0
        self._since = None  # tick the delay started at; None: due at once

    def _go(self, trigger):
        new = _TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise LocalError("reconnector cannot %s in state %s" % (trigger, self.state))
        self.state = new

    def wait_ms(self, now_ms):
        """Milliseconds until the next attempt is due (0: now); None unless ``WAITING``."""
        if self.state != WAITING:
            return None
        if self._since is None:
            return 0
        passed = elapsed(wrap(now_ms), self._since)
        return self.delay_ms - passed if passed < self.delay_ms else 0

    def due(self, now_ms):
        """True when an attempt should start now; the state is then ``ATTEMPTING``."""
        if self.wait_ms(now_ms) != 0:
            return False
        self._go("attempt")
        self.attempts += 1
        return True

    def succeeded(self):
        """The attempt connected (for MQTT: CONNACK accepted). Resets the backoff."""
        self._go("succeeded")
        self.backoff.reset()

    def failed(self, now_ms, r=None):
        """The attempt failed (refused, timed out, CONNACK refused): wait, then retry."""
        self._go("failed")
        self.failures += 1
        self._schedule(now_ms, r)

    def lost(self, now_ms, r=None):
        """The connection broke after ``succeeded``: wait a jittered delay, then retry."""
        self._go("lost")
        self._schedule(now_ms, r)

    def stop(self):
        """No more attempts."""
        self._go("stop")

    def _schedule(self, now_ms, r):
        source = r if r is not None else self.random
        if source is None:
            raise ConfigError("the reconnector needs randomness: random= or r=")
        self.delay_ms = self.backoff.next_delay(source)
        self._since = wrap(now_ms)
