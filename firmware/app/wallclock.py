"""The wall clock before TLS: set by NTP once the network is up, retried with back-off.

A board starts with its real-time clock at the epoch. TLS needs the date to check a
certificate's validity period (``ssl`` with ``CERT_REQUIRED`` and mbedTLS's date checks),
and batches should carry Unix times rather than ticks since boot. So once WiFi is up, and
before the first TLS connection, ``step`` asks NTP (``ntptime.settime()``: one query, the
RTC set) and, when that works, gives the engine the Unix time (``engine.set_clock``: the
batches carry Unix times from then on). A failed query (no answer within its one-second
timeout, a garbled packet) is retried after a jittered doubling delay, 1 s up to 5 minutes
(``bankiot_core.backoff``), so a branch's boards do not ask the NTP server in step.

The port's epoch may be 2000 (older ESP32 and rp2 builds) or 1970; ``unix_ms`` reads it
from ``time.gmtime(0)``. Health carries ``clock_set`` (1 or 0) and ``ntp_failures``.
"""

from bankiot_core.backoff import Backoff, Reconnector

_EPOCH_2000 = 946684800  # seconds from 1970-01-01 to 2000-01-01


class WallClock:
    """NTP for one board: ``ntptime`` and ``time`` are the modules, ``random`` a function
    returning [0, 1) for the jitter."""

    def __init__(self, ntptime, time, random, base_ms=1000, cap_ms=300000):
        self.ntptime = ntptime
        self.time = time
        self.reconnector = Reconnector(Backoff(base_ms, cap_ms), random)
        self.set = False
        self.failures = 0
        self.last_error = None
        self._offset = _EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0

    def step(self, now_ms):
        """Ask NTP if it is due; True once the clock is set."""
        if self.set:
            return True
        if not self.reconnector.due(now_ms):
            return False
        try:
            self.ntptime.settime()
        except (OSError, OverflowError, IndexError, ValueError) as exc:
            self.failures += 1
            self.last_error = "%s: %s" % (type(exc).__name__, exc)
            self.reconnector.failed(now_ms)
            return False
        self.reconnector.succeeded()
        self.set = True
        return True

    def unix_ms(self):
        """Milliseconds since 1970 by the (set) real-time clock."""
        return (int(self.time.time()) + self._offset) * 1000

    def wait_ms(self, now_ms):
        """Milliseconds until the next query is due (None once set)."""
        return None if self.set else self.reconnector.wait_ms(now_ms)

    def counters(self):
        """For health: whether the clock is set, and the failed queries."""
        return {"clock_set": 1 if self.set else 0, "ntp_failures": self.failures}
