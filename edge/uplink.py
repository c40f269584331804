"""The Raspberry Pi gateway's uplink: stay connected over MQTT or CoAP, fall back, send.

``Uplinks`` is the "stay connected" layer over the links of ``edge.uplink_mqtt`` and
``edge.uplink_coap`` (each "one attempt", ``edge.uplink_link``):

- **Which link.** The preferred one (``prefer``: ``gateway.toml``'s ``[uplink] prefer``, or
  the cloud's ``uplink`` setting) first. A failure is a connection attempt that fails, a
  connection that breaks, or a send that is not delivered (``LinkDown``); after
  ``fallback_after`` failures in a row on one link the other is tried (``fallbacks`` counts
  moves away from the preferred one). Failures in a row end with a send the transport took
  or a downlink message received. While on the fallback, the preferred link is tried again
  every ``retry_preferred_ms`` (jittered between half and all of it): the probe connects
  while the fallback keeps sending, and if it connects the gateway moves back (``returns``)
  at once; if it fails the fallback carries on. With only one link configured there is no
  fallback. Both down: the two are tried in turn, ``fallback_after`` attempts each.
- **When to try.** Attempts are paced by the core's ``bankiot_core.backoff.Backoff``:
  exponential delays with full jitter (1 s doubling to 60 s by default), so a branch full of
  gateways coming back after an outage does not storm the broker (ETSI EN 303 645 5.9-3).
  The delays start short again only after a delivery (a batch the transport took, or a
  downlink message), not after a mere connection: CoAP has no connection to prove anything,
  and a broker that accepts and drops at once must not be hammered.
- **What to send.** On every new connection ``link_reset()`` on the engine makes every
  unacknowledged batch go again; then whatever ``next_to_send(now_ms)`` hands out is sent,
  each in a task of its own (the engine's queue bounds how many are in flight). When it
  hands out nothing, the loop sleeps ``wait_ms(now_ms)`` (when the next resend is due), or
  until ``wake()`` (a batch was queued) or a downlink message (an acknowledgement frees the
  window) wakes it. A CoAP 5.03 (``Busy``) pauses new sends for a jittered delay from its
  own ``Backoff`` (at least half the cloud's Max-Age hint); a refused batch (``Refused``,
  CoAP 4.xx) is counted and stays queued: only the cloud's acknowledgement deletes, and the
  queue sends it again after its ``resend_ms``.
- **Downlink.** Every message a link receives goes to ``on_downlink(data, aad)``, the
  runtime's (which calls the engine's ``downlink``); an exception there is logged and
  counted (``downlinks_failed``), and the link carries on.

Envelopes are sealed once, when queued, with one AAD: the gateway's MQTT uplink topic
``devices/<uid>/up`` (``uplink_aad``), whichever link later carries them, so that a batch
sealed while MQTT was up can still go over CoAP after a fallback (and back). The cloud
accepts an envelope on its CoAP resource if it is bound to the resource or to the uplink
topic of the gateway its kid names.

Logging: INFO for connections and moves between links, WARNING for failures. Never a
payload or a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from bankiot_core.backoff import Backoff
from edge.identity import Identity, uplink_endpoints
from edge.settings import UPLINKS, GatewaySettings
from edge.uplink_coap import CoapLink
from edge.uplink_link import Busy, DownlinkHandler, Link, LinkDown, Refused, UplinkError
from edge.uplink_mqtt import MqttLink, up_topic

log = logging.getLogger(__name__)

COUNTERS = (
    "connects",
    "connect_failures",
    "lost",
    "send_failures",
    "fallbacks",
    "returns",
    "probe_failures",
    "sent",
    "refused",
    "busy",
    "downlinks",
    "downlinks_failed",
)
"""Keys of ``Uplinks.counters()``, all since start: ``connects`` (connections made, probes
included), ``connect_failures``, ``lost`` (connections that broke), ``send_failures``,
``fallbacks`` (moves from the preferred link to the other), ``returns`` (moves back),
``probe_failures`` (the preferred link tried from the fallback and not reached), ``sent``
(batches the transport took, resends included), ``refused`` (CoAP 4.xx), ``busy`` (CoAP
5.03), ``downlinks`` (messages received), ``downlinks_failed`` (``on_downlink`` raised)."""

IDLE_WAKE_MS = 60_000  # sleep at most this long with nothing to do (a safety net, not a rule)


def monotonic_ms() -> int:
    """Milliseconds of the monotonic clock (the engine's ``now_ms``)."""
    return time.monotonic_ns() // 1_000_000


def uplink_aad(uid: str) -> str:
    """The AAD every batch of gateway ``uid`` is sealed with: its MQTT uplink topic (the
    engine's ``uplink_aad``), whichever link carries it (module docstring)."""
    return up_topic(uid)


class Outbox(Protocol):
    """What ``Uplinks`` needs of the engine (``GatewayOutbox`` adapts the real one)."""

    def next_to_send(self, now_ms: int) -> tuple[int, bytes] | None:
        """``(seq, envelope)`` to send now, or None."""
        ...

    def link_reset(self) -> None:
        """A new connection: everything unacknowledged may go again."""
        ...

    def wait_ms(self, now_ms: int) -> int | None:
        """Milliseconds until ``next_to_send`` has something (None: nothing queued)."""
        ...


class GatewayOutbox:
    """``Outbox`` over a ``bankiot_core.gateway.Gateway`` (its queue says how long to wait)."""

    def __init__(self, engine: object) -> None:
        self.engine = engine

    def next_to_send(self, now_ms: int) -> tuple[int, bytes] | None:
        """The engine's next batch to send."""
        return self.engine.next_to_send(now_ms)  # type: ignore[attr-defined]

    def link_reset(self) -> None:
        """Tell the engine a new connection was made."""
        self.engine.link_reset()  # type: ignore[attr-defined]

    def wait_ms(self, now_ms: int) -> int | None:
        """The engine's queue's ``wait_ms``."""
        return self.engine.queue.wait_ms(now_ms)  # type: ignore[attr-defined]


def make_links(settings: GatewaySettings, identity: Identity) -> dict[str, Link]:
    """The links the gateway can use: those with an endpoint in ``gateway.toml`` or from
    enrollment. ``UplinkError`` for an endpoint that cannot be used, or none at all."""
    urls = uplink_endpoints(settings, identity)
    links: dict[str, Link] = {}
    if urls.get("mqtt"):
        links["mqtt"] = MqttLink.from_url(str(urls["mqtt"]), identity)
    if urls.get("coap"):
        links["coap"] = CoapLink.from_url(str(urls["coap"]))
    if not links:
        raise UplinkError("no uplink endpoint: set [uplink] mqtt or coap in gateway.toml")
    return links


class Uplinks:
    """Stay connected, fall back, send (module docstring).

    ``outbox``: the engine (``GatewayOutbox``); ``links``: name -> ``Link`` (one or both of
    ``mqtt`` and ``coap``); ``on_downlink``: the runtime's handler; ``prefer``: the link to
    use when it works; ``backoff``: delays between attempts (core ``Backoff``, 1 s to 60 s
    by default); ``fallback_after``: failures in a row before the other link is tried;
    ``retry_preferred_ms``: how often the preferred link is tried from the fallback;
    ``busy_backoff``: pauses after a 5.03; ``clock``: ``now_ms`` as the engine sees it;
    ``random``: jitter in [0, 1). Raises ``UplinkError`` for a configuration that cannot work.
    """

    def __init__(
        self,
        outbox: Outbox,
        links: Mapping[str, Link],
        on_downlink: DownlinkHandler,
        prefer: str = "mqtt",
        *,
        backoff: Backoff | None = None,
        fallback_after: int = 3,
        retry_preferred_ms: int = 300_000,
        busy_backoff: Backoff | None = None,
        clock: Callable[[], int] = monotonic_ms,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not links or any(name not in UPLINKS for name in links):
            raise UplinkError("links must be some of %s, got %s" % (UPLINKS, sorted(links)))
        if fallback_after < 1 or retry_preferred_ms < 1:
            raise UplinkError("fallback_after and retry_preferred_ms must be positive")
        self.outbox = outbox
        self.links = dict(links)
        self.on_downlink = on_downlink
        self.backoff = backoff if backoff is not None else Backoff(1000, 60_000)
        self.busy_backoff = busy_backoff if busy_backoff is not None else Backoff(1000, 60_000)
        self.fallback_after = fallback_after
        self.retry_preferred_ms = retry_preferred_ms
        self.clock = clock
        self.random = random
        self.current: str | None = None  # the link connected now
        self.delay_ms = 0  # the last delay before an attempt
        self.connected = asyncio.Event()  # set while a link is connected
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._failures = dict.fromkeys(self.links, 0)  # failures in a row, per link
        self._wake = asyncio.Event()
        self._probe_at: int | None = None  # when to try the preferred link from the fallback
        self.prefer = prefer if prefer in self.links else next(iter(self.links))
        self._choice = self.prefer  # the link to attempt next

    # ---- what the runtime calls --------------------------------------------------------

    def wake(self) -> None:
        """Batches were queued: send them now rather than after the current sleep."""
        self._wake.set()

    def set_preferred(self, name: str) -> None:
        """Prefer ``name`` from now on (the cloud's ``uplink`` setting); if another link is
        in use, the preferred one is tried soon. Names without a link are ignored."""
        if name not in self.links or name == self.prefer:
            return
        self.prefer = name
        self._probe_at = self.clock()
        self._wake.set()

    def counters(self) -> dict[str, int]:
        """The figures for health records (keys: ``COUNTERS``)."""
        return dict(self._counts)

    # ---- stay connected -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Stay connected and send until ``stop`` is set (or the task is cancelled); closes
        the link in use on the way out. Errors from the engine (its storage) propagate."""
        stop = stop if stop is not None else asyncio.Event()
        link: Link | None = None
        delay_ms = 0  # the first attempt goes at once
        try:
            while not stop.is_set():
                if link is None:
                    if delay_ms:
                        await _sleep_unless(stop, delay_ms)
                        delay_ms = 0
                        continue
                    link = await self._attempt(self._choice)
                    if link is None:
                        delay_ms = self._delay()
                        continue
                    self._up(link)
                outcome, probed = await self._pump(link, stop)
                name = link.name
                await self._down(link)
                link = None
                if probed is not None:  # the preferred link is back: move at once
                    self._counts["returns"] += 1
                    log.info("uplink: back on %s", probed.name)
                    link = probed
                    self._up(link)
                elif outcome == "lost":
                    self._counts["lost"] += 1
                    self._failed(name)
                    delay_ms = self._delay()
        finally:
            if link is not None:
                await self._down(link)

    def _delay(self) -> int:
        """The jittered delay before the next attempt (``delay_ms`` keeps it for health)."""
        self.delay_ms = self.backoff.next_delay(self.random)
        return self.delay_ms

    async def _attempt(self, name: str, probing: bool = False) -> Link | None:
        """One connection attempt on ``name``; the link, or None (counted) if it failed. A
        failed probe (the preferred link tried from the fallback) moves nothing."""
        link = self.links[name]
        try:
            await link.connect(self._downlink)
        except LinkDown as exc:
            if probing:
                self._counts["probe_failures"] += 1
                log.info("uplink: %s still unreachable: %s", name, exc)
            else:
                self._counts["connect_failures"] += 1
                log.warning("uplink %s: %s", name, exc)
                self._failed(name)
            return None
        except asyncio.CancelledError:  # cancelled half-way: leave nothing open
            with contextlib.suppress(Exception):
                await link.close()
            raise
        return link

    def _up(self, link: Link) -> None:
        """A new connection: in-flight batches go again."""
        self._counts["connects"] += 1
        self.current = link.name
        self._choice = link.name
        self.connected.set()
        if link.name == self.prefer:
            self._probe_at = None
        elif self._probe_at is None:
            self._probe_at = self._next_probe()
        self.outbox.link_reset()
        self._wake.set()
        log.info("uplink: connected over %s", link.name)

    async def _down(self, link: Link) -> None:
        self.current = None
        self.connected.clear()
        await link.close()

    def _failed(self, name: str) -> None:
        """One more failure on ``name``: after ``fallback_after`` in a row, the other."""
        self._failures[name] += 1
        if self._failures[name] < self.fallback_after:
            return
        self._failures[name] = 0
        other = next((n for n in self.links if n != name), None)
        if other is None:
            return
        self._choice = other
        if name == self.prefer:
            self._counts["fallbacks"] += 1
            self._probe_at = self._next_probe()
        log.warning(
            "uplink: %s failed %d times in a row; trying %s", name, self.fallback_after, other
        )

    def _next_probe(self) -> int:
        """When to try the preferred link again: jittered, between half and all of the
        interval, so gateways that fell back together do not all come back together."""
        half = self.retry_preferred_ms // 2
        return self.clock() + half + int(self.random() * (self.retry_preferred_ms - half))

    def _downlink(self, data: bytes, aad: str) -> None:
        """A link received a downlink message: the runtime's handler, then wake the sender
        (an acknowledgement frees the in-flight window)."""
        self._counts["downlinks"] += 1
        if self.current is not None:
            self._failures[self.current] = 0
            self.backoff.reset()
        try:
            self.on_downlink(data, aad)
        except Exception:  # one bad message or handler bug must not take the link down
            self._counts["downlinks_failed"] += 1
            log.exception("uplink: the downlink handler raised on a message for %s", aad)
        self._wake.set()

    # ---- sending -----------------------------------------------------------------------

    async def _send(self, link: Link, seq: int, envelope: bytes) -> None:
        """Send one batch; count how it went. ``LinkDown`` and ``Busy`` go to the pump."""
        try:
            await link.send(seq, envelope)
        except Refused:
            self._counts["refused"] += 1
            return
        except Busy:
            self._counts["busy"] += 1
            raise
        except LinkDown:
            self._counts["send_failures"] += 1
            raise
        self._counts["sent"] += 1
        self._failures[link.name] = 0
        self.backoff.reset()  # the path works: the next outage starts with short delays
        self.busy_backoff.reset()

    async def _pump(self, link: Link, stop: asyncio.Event) -> tuple[str, Link | None]:
        """Send over ``link`` until it breaks (``"lost"``), ``stop`` (``"stop"``), or the
        preferred link, tried from the fallback, connects (``"return"`` and that link)."""
        sending: set[asyncio.Future] = set()
        lost = asyncio.ensure_future(link.wait_lost())
        stopping = asyncio.ensure_future(stop.wait())
        woken: asyncio.Future | None = None
        probe: asyncio.Future[Link | None] | None = None
        paused_until: int | None = None
        try:
            while True:
                self._wake.clear()  # before looking, so that a wake() from now on counts
                now = self.clock()
                if paused_until is not None and now - paused_until >= 0:
                    paused_until = None
                wait: int | None = None
                if paused_until is None:
                    while (item := self.outbox.next_to_send(now)) is not None:
                        sending.add(asyncio.ensure_future(self._send(link, *item)))
                    wait = self.outbox.wait_ms(now)
                else:
                    wait = paused_until - now
                if probe is None and self._probe_at is not None and link.name != self.prefer:
                    until_probe = self._probe_at - now
                    if until_probe <= 0:
                        probe = asyncio.ensure_future(self._probe())
                    else:
                        wait = until_probe if wait is None else min(wait, until_probe)
                if woken is None or woken.done():
                    woken = asyncio.ensure_future(self._wake.wait())
                waiters: set[asyncio.Future] = {lost, stopping, woken, *sending}
                if probe is not None:
                    waiters.add(probe)
                timeout = min(wait if wait is not None else IDLE_WAKE_MS, IDLE_WAKE_MS)
                done, _ = await asyncio.wait(
                    waiters, timeout=timeout / 1000, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping in done:
                    return "stop", None
                if probe is not None and probe in done:
                    probed, probe = probe.result(), None
                    if probed is not None:  # moving on: this link's troubles no longer matter
                        return "return", probed
                if lost in done:
                    return "lost", None
                for task in done & sending:
                    sending.discard(task)
                    exc = task.exception()
                    if isinstance(exc, LinkDown):
                        log.warning("uplink %s: %s", link.name, exc)
                        return "lost", None
                    if isinstance(exc, Busy):
                        paused_until = self.clock() + self._busy_delay(exc)
                    elif exc is not None:
                        raise exc
        finally:
            for future in (lost, stopping, woken, probe, *sending):
                if future is not None and not future.done():
                    future.cancel()
            settling = [f for f in (*sending, probe) if f is not None]
            if settling:  # cancelled sends and probe settle before the link closes
                await asyncio.wait(settling)
            if probe is not None and probe.done() and not probe.cancelled():
                orphan = probe.result() if probe.exception() is None else None
                if orphan is not None:  # connected just as this ended: not to be kept
                    await orphan.close()

    def _busy_delay(self, busy: Busy) -> int:
        """How long to pause after a 5.03: jittered backoff, at least half the hint."""
        delay = self.busy_backoff.next_delay(self.random)
        if busy.retry_after_s:
            delay = max(delay, busy.retry_after_s * 500)
        log.warning("uplink: %s; pausing %d ms", busy, delay)
        return delay

    async def _probe(self) -> Link | None:
        """Try the preferred link while the fallback carries on; the link if it connected."""
        link = await self._attempt(self.prefer, probing=True)
        if link is None:
            self._probe_at = self._next_probe()
        return link


async def _sleep_unless(stop: asyncio.Event, ms: int) -> None:
    """Sleep ``ms`` milliseconds, or less if ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), ms / 1000)
