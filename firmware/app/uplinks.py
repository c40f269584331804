"""Stay connected: when to try, which link, what to send; over the "one attempt" links.

``Uplinks.step(now_ms)`` is the whole of it, called by the uplink task every few tens of
milliseconds; it never blocks for longer than a link's ``open``:

- **When to try.** The core's ``backoff.Reconnector``: the first attempt at once, then
  exponential delays with full jitter (1 s doubling to 60 s), reset only by a connection
  that came up (CONNACK and subscription): a branch full of boards back after a power cut
  does not storm the broker.
- **Which link.** The preferred one (the ``uplink`` setting, ``mqtt`` or ``coap``); after
  ``fallback_after`` failures in a row the other, if the board has one. On the fallback,
  the preferred link is tried again every ``retry_preferred_ms``: the fallback is closed
  and the preferred one attempted (if that fails, the count sends it back to the fallback).
- **What to send.** On every new connection the engine's ``link_reset`` makes every
  unacknowledged batch go again; then whatever ``next_to_send`` hands out while the link
  is ``ready``. Only the cloud's acknowledgement (a downlink) deletes a batch.

A link is any object with ``name``, ``up``, ``open(now)``, ``pump(now, on_downlink)``,
``ready()``, ``send(seq, envelope, now)`` and ``close()``, whose faults are ``OSError``.
"""

from bankiot_core.backoff import Backoff, Reconnector
from bankiot_core.ticks import elapsed

COUNTERS = ("connects", "connect_failures", "lost", "fallbacks", "sent")


class Uplinks:
    """Keep one of ``links`` (name -> link) connected for ``engine`` (module docstring).

    ``on_downlink(payload, aad)``: the gateway's handler; ``random``: a function returning
    [0, 1) for the jitter; ``connect_timeout_ms``: how long a link may take to come up.
    """

    def __init__(
        self,
        engine,
        links,
        on_downlink,
        random,
        prefer="mqtt",
        fallback_after=3,
        retry_preferred_ms=300000,
        connect_timeout_ms=15000,
        backoff=None,
    ):
        if not links:
            raise ValueError("no uplink")
        self.engine = engine
        self.links = links
        self.on_downlink = on_downlink
        self.prefer = prefer if prefer in links else sorted(links)[0]
        self.choice = self.prefer
        self.fallback_after = fallback_after
        self.retry_preferred_ms = retry_preferred_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.reconnector = Reconnector(backoff or Backoff(1000, 60000), random)
        self.link = None
        self._opened_at = 0
        self._up_at = 0
        self._failures = 0
        self.counts = {}
        for name in COUNTERS:
            self.counts[name] = 0
        self.last_error = None

    @property
    def connected(self):
        """True while a link is up."""
        return self.link is not None and self.link.up and self.reconnector.state == "UP"

    def step(self, now_ms):
        """Do what is due now (module docstring); returns ms until the next step is useful."""
        link = self.link
        if link is None:
            if not self.reconnector.due(now_ms):
                wait = self.reconnector.wait_ms(now_ms)
                return wait if wait is not None else 1000
            return self._attempt(now_ms)
        try:
            link.pump(now_ms, self.on_downlink)
            if self.reconnector.state == "ATTEMPTING":
                if link.up:
                    self._came_up(now_ms)
                elif elapsed(now_ms, self._opened_at) > self.connect_timeout_ms:
                    raise OSError(
                        "%s did not come up in %d ms" % (link.name, self.connect_timeout_ms)
                    )
            if link.up:
                self._send(now_ms)
                if self.choice != self.prefer and (
                    elapsed(now_ms, self._up_at) >= self.retry_preferred_ms
                ):
                    self._drop(now_ms, None)  # back to the preferred link
                    self.choice = self.prefer
                    self._failures = 0
        except OSError as exc:
            self._drop(now_ms, exc)
        return 20

    def _attempt(self, now_ms):
        link = self.links[self.choice]
        try:
            link.open(now_ms)
        except OSError as exc:
            link.close()
            self.counts["connect_failures"] += 1
            self.last_error = str(exc)
            self.reconnector.failed(now_ms)
            self._failed()
            return 20
        self.link = link
        self._opened_at = now_ms
        return 0

    def _came_up(self, now_ms):
        self.reconnector.succeeded()
        self.counts["connects"] += 1
        self._failures = 0
        self._up_at = now_ms
        self.engine.link_reset()  # everything unacknowledged goes again

    def _send(self, now_ms):
        link = self.link
        while link is not None and link.ready():
            item = self.engine.next_to_send(now_ms)
            if item is None:
                return
            link.send(item[0], item[1], now_ms)
            self.counts["sent"] += 1

    def _drop(self, now_ms, exc):
        link, self.link = self.link, None
        if link is not None:
            link.close()
        if exc is None:
            self.reconnector.lost(now_ms, 0)  # a planned move: retry at once
            return
        self.last_error = str(exc)
        if self.reconnector.state == "UP":
            self.counts["lost"] += 1
            self.reconnector.lost(now_ms)
        else:
            self.counts["connect_failures"] += 1
            self.reconnector.failed(now_ms)
        self._failed()

    def _failed(self):
        self._failures += 1
        if self._failures < self.fallback_after or len(self.links) < 2:
            return
        self._failures = 0
        for name in self.links:
            if name != self.choice:
                if self.choice == self.prefer:
                    self.counts["fallbacks"] += 1
                self.choice = name
                return

    def close(self):
        """Close the link in use (before a reboot)."""
        if self.link is not None:
            self.link.close()
            self.link = None

    def counters(self):
        """The figures for health records, prefixed ``uplink_``."""
        out = {}
        for name in COUNTERS:
            out["uplink_" + name] = self.counts[name]
        return out
