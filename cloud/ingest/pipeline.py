"""The ingest pipeline: one sealed batch in, a verdict and a sealed acknowledgement out.

Every transport (MQTT worker, CoAP resource, HTTP endpoint) calls ``Ingest.handle`` (or
``handle_many`` for several at once) with the envelope's bytes, the topic or resource it
arrived on (the envelope's external AAD) and the transport's name. In this order:

1. size: over ``max_envelope_bytes`` is rejected (``too_large``) unread;
2. ``cose.peek_envelope``: the kid (gateway id, key version) and sequence number, no AES
   (``malformed``); on MQTT the kid's gateway must be the topic's (``wrong_gateway``);
3. the gateway must not be revoked (``revoked``) and must have that key version
   (``unknown_key``), from the ``KeySource``;
4. ``cose.open_envelope`` with the topic or resource as external AAD (``forged``). A gateway
   seals a batch when it queues it, for the transport it prefers, and sends it on another
   when that one is down (MQTT <-> CoAP/HTTP): an envelope bound to the gateway's own MQTT
   uplink topic or to the ``batches`` resource is accepted on every transport. That costs a
   forged envelope up to three AES-CCM checks, and gives nothing away: the kid names the
   gateway (on MQTT it must be the topic's), and a copy of a batch on another transport is
   a duplicate by its (gateway, key version, sequence) receipt;
5. ``batch.decode_batch`` (``undecodable``: authentic but not understood, not acknowledged,
   so the gateway keeps it until a cloud that understands it takes it); rows
   (``records``, ``unstorable``);
6. one transaction (``store.stage_batch``; ``handle_many`` stages every batch of the group
   in one transaction, a group commit): the receipt for (gateway, key version,
   sequence) first; if it is there already (or a racing copy is committing it), the batch is
   a duplicate: acknowledged again, stored no more. Otherwise readings, events, health.
   Before the transaction, in one short session of its own: the consents of the
   customers whose wearables the group names (``consents``: records of a customer's
   wearable are stored only for the purposes the customer consents to now; what is
   withheld is counted in ``Result.withheld`` and ``stats``), then which of the group's
   devices are registered wearables (``wearables``: remembered for a minute, asked in a
   session of its own; their readings are ``health`` data, ``records.mark_wearables``).
   First in it, only if the group holds readings of a metric with thresholds, the
   threshold states of the devices they come from, locked (``store``); each batch's
   threshold crossings are events like the rest (``thresholds``). Duplicates are
   authenticated (step 4) before they are answered, so a forged copy of a known batch gets
   no acknowledgement and uses no downlink number; checking for them in the same
   transaction, rather than with a query before it, costs a duplicate its decoding and
   saves every new batch a round trip;
7. after the commit, the acknowledgement: downlink numbers for the group in a short
   transaction of its own (``store.take_ack_numbers``; see ``store`` for why not in the
   group's), then an ACK naming this batch's sequence number (``downlink.encode_ack``),
   sealed in the downlink direction with the key version the batch used, bound to
   ``devices/<gateway>/down`` (MQTT) or to the request's resource (CoAP, HTTP). If the
   database goes away between the two, the group is ``unavailable``: stored, not yet
   acknowledged; the resends are duplicates, acknowledged then;
8. with ``kiosk_offers`` (``cloud.offers.kiosk.KioskOffers``): its ``stage`` runs in step 6's
   transaction for each new batch (offer results stored with their kiosk events), and its
   ``after`` once step 7 is done, in a transaction of its own, for the batch's kiosk
   check-ins as they arrived (before consent gating, so a decision not to offer is logged
   too): the OFFERS messages it returns are sealed like the acknowledgement (numbers taken
   in that transaction) and returned in ``Result.downlinks``, which the transport sends
   right after the acknowledgement. A failure there is logged and costs only the offers:
   the batch is stored and acknowledged.

Every rejection is also counted in the database, per (sender, reason, hour), in a short
transaction of its own once the group's verdicts are in (``rejections``); a failure there is
logged and changes no verdict.

A database that does not answer gives ``unavailable``: nothing is stored, nothing is
acknowledged, and the sender (or the MQTT worker) tries again. Nothing else raises (an
unexpected database error is a bug and propagates): every envelope is counted in ``stats``
with its outcome.

Acknowledgements are selective (the batch's own number): exact whatever order batches
arrive in (urgent ones overtake a backlog of routine ones), and idempotent on the gateway.

Logging: DEBUG for each envelope's verdict, WARNING when the database is unavailable.
Never a key, never a payload.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from bankiot_core import cose, downlink
from bankiot_core.batch import decode_batch
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError
from bankiot_core.keyring import KeyRing
from cloud.customers import codes, consent
from cloud.db import Database
from cloud.identity.keys import KeyWrapper
from cloud.ingest import consents, rejections, retention, store
from cloud.ingest.keys import KeySource
from cloud.ingest.records import Rows, UnstorableBatch, batch_rows, mark_wearables
from cloud.ingest.stats import ACCEPTED, DUPLICATE, REJECTED, UNAVAILABLE, IngestStats
from cloud.ingest.thresholds import Thresholds, state_keys
from cloud.ingest.wearables import WearableDirectory

log = logging.getLogger(__name__)

TRANSPORTS = ("mqtt", "coap", "http")
UPLINK_TOPIC = "devices/%s/up"
# The CoAP resource and the HTTP endpoint bind envelopes to this one string (the CoAP
# Uri-Path), so a gateway whose UDP is blocked re-sends its queued CoAP envelopes over HTTP.
RESOURCE = "batches"
# The largest plaintext AES-CCM takes here (64 KiB), plus the envelope's headers.
MAX_ENVELOPE_BYTES = 65536 + 128


@dataclass(frozen=True)
class Envelope:
    """One envelope to judge: its bytes, the topic or resource it came on, the transport,
    and the gateway the channel belongs to if it says (``Ingest.handle``)."""

    data: bytes
    resource: str
    transport: str
    claimed_gateway: str | None = None


@dataclass(frozen=True)
class Result:
    """The verdict on one envelope: ``status`` (``accepted``, ``duplicate``, ``rejected``,
    ``unavailable``), the sealed acknowledgement (accepted and duplicate only), the reason of
    a rejection (``stats`` lists them) with a one-line ``detail``, and what it was;
    ``withheld``: records of customers' wearables not stored for want of consent, per
    purpose (``consents``), or None."""

    status: str
    ack: bytes | None = None
    reason: str = ""
    detail: str = ""
    gateway: str | None = None
    seq: int | None = None
    readings: int = 0
    withheld: dict[str, int] | None = None  # records withheld per purpose not consented
    downlinks: tuple[bytes, ...] = ()  # sealed messages to send after the ack (offers)

    @property
    def acknowledged(self) -> bool:
        """True if the batch is in the database and ``ack`` says so."""
        return self.ack is not None


def utcnow() -> dt.datetime:
    """The current time, aware, UTC."""
    return dt.datetime.now(dt.UTC)


def uplink_topic(gateway: str) -> str:
    """The MQTT topic a gateway publishes its batches on: ``devices/<gateway>/up``."""
    return UPLINK_TOPIC % gateway


def _unavailable(exc: BaseException) -> bool:
    """True for the errors that mean "the database did not answer", not "a bug"."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Ingest:
    """Opens, checks and commits sealed batches (module docstring); thread-safe.

    ``database``: where batches go; ``key_source``: gateways' keys and revocation;
    ``stats``: the counters (a new ``IngestStats`` by default); ``classify``: a reading's data
    class from (metric, unit); ``clock``: the current UTC time (tests); ``thresholds``: the
    threshold rules (none by default); ``wearables``: which addresses are wearables (a
    ``WearableDirectory`` with its default time-to-live by default); ``code_key``: the
    pairing codes' digest key (``codes.key_from``; by default derived from the key source's
    KEK when it holds one, else kiosks' pairing codes make no offers).
    """

    def __init__(
        self,
        database: Database,
        key_source: KeySource,
        *,
        stats: IngestStats | None = None,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
        classify: Callable[[str, str], str] = retention.classify,
        clock: Callable[[], dt.datetime] = utcnow,
        thresholds: Thresholds | None = None,
        wearables: WearableDirectory | None = None,
        code_key: bytes | None = None,
        kiosk_offers: KioskHooks | None = None,
    ) -> None:
        self.database = database
        self.key_source = key_source
        self.stats = stats if stats is not None else IngestStats()
        self.max_envelope_bytes = max_envelope_bytes
        self.classify = classify
        self.clock = clock
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self.wearables = wearables if wearables is not None else WearableDirectory()
        self.code_key = code_key
        self.kiosk_offers = kiosk_offers
        self._derived: tuple[object, bytes | None] | None = None  # (key source, its key)

    async def handle_async(
        self,
        envelope: bytes,
        resource: str,
        transport: str,
        claimed_gateway: str | None = None,
    ) -> Result:
        """``handle`` in a worker thread, for asyncio transports."""
        return await asyncio.to_thread(self.handle, envelope, resource, transport, claimed_gateway)

    def handle(
        self,
        envelope: bytes,
        resource: str,
        transport: str,
        claimed_gateway: str | None = None,
    ) -> Result:
        """Judge, store and acknowledge one envelope; see the module docstring.

        ``resource``: the MQTT topic or CoAP/HTTP resource it came on (its external AAD);
        ``transport``: ``mqtt``, ``coap`` or ``http``; ``claimed_gateway``: the gateway the
        channel belongs to, if it says (the MQTT topic's), which the kid must name.
        """
        return self.handle_many([Envelope(envelope, resource, transport, claimed_gateway)])[0]

    def handle_many(self, envelopes: Sequence[Envelope]) -> list[Result]:
        """``handle`` for several envelopes at once, their results in the same order; the
        ones that get as far as the database share one transaction (a group commit: a
        worker with a backlog pays one commit for many batches). They are written in the
        order of (gateway, key version, sequence), so that concurrent groups take their
        locks in the same order. If the database is unavailable, all of them are."""
        results: list[Result | None] = []
        staged: list[tuple[int, _Prepared]] = []
        for envelope in envelopes:
            if envelope.transport not in TRANSPORTS:
                raise ValueError(
                    "transport must be one of %s, not %r" % (TRANSPORTS, envelope.transport)
                )
            verdict = self._prepare(envelope)
            if isinstance(verdict, Result):
                results.append(verdict)
            else:
                staged.append((len(results), verdict))
                results.append(None)
        if staged:
            staged.sort(key=lambda item: (item[1].gateway, item[1].version, item[1].seq))
            for index, result in self._commit([prepared for _, prepared in staged]):
                results[staged[index][0]] = result
        done = [result for result in results if result is not None]
        self._count_rejections(
            [
                (_sender(envelope, result), result.reason)
                for envelope, result in zip(envelopes, done, strict=True)
                if result.status == REJECTED
            ]
        )
        for envelope, result in zip(envelopes, done, strict=True):
            self.stats.count(result.status, result.reason, envelope.transport, result.readings)
            if result.withheld:
                self.stats.withhold(result.withheld)
            log.debug(
                "%s %s gateway=%s seq=%s %s",
                envelope.transport,
                result.status,
                result.gateway,
                result.seq,
                result.reason,
            )
        return done

    def count_rejection(self, reason: str, transport: str, gateway: str | None = None) -> None:
        """Count an envelope a transport rejected before the pipeline saw it (or that
        raised in it), in ``stats`` and in the database (``rejections``); ``gateway``: the
        channel's, if it names one."""
        self.stats.count(REJECTED, reason, transport)
        self._count_rejections([(gateway, reason)])

    def _count_rejections(self, rejected: list[tuple[str | None, str]]) -> None:
        """Add ``rejected`` (sender, reason) to the database's counts (``rejections``),
        in a transaction of its own. Counting must never cost an answer: a failure is
        logged and the rejections stay counted in ``stats`` only."""
        if not rejected:
            return
        try:
            rejections.record(self.database, rejected, self.clock())
        except Exception as exc:
            log.warning(
                "%d rejection(s) not counted in the database: %s",
                len(rejected),
                (str(exc).splitlines() or [type(exc).__name__])[0],
            )

    # ---- the steps ---------------------------------------------------------------------------

    def _code_key(self) -> bytes | None:
        """The pairing codes' digest key: given, or derived from the key source's KEK
        (once per key source: ``cloud.ingest.set_key_source`` may swap it)."""
        if self.code_key is not None:
            return self.code_key
        source = self.key_source
        if self._derived is None or self._derived[0] is not source:
            wrapper = getattr(source, "wrapper", None)
            key = codes.key_from(wrapper) if isinstance(wrapper, KeyWrapper) else None
            self._derived = (source, key)
        return self._derived[1]

    def _prepare(self, item: Envelope) -> Result | _Prepared:
        """Everything before the database: a rejection, or the rows to commit."""
        envelope = bytes(item.data)
        if len(envelope) > self.max_envelope_bytes:
            return _rejected(
                "too_large",
                "envelope of %d bytes is over the limit of %d"
                % (len(envelope), self.max_envelope_bytes),
            )
        try:
            peeked = cose.peek_envelope(envelope)
            gateway = peeked.gateway_id.decode("utf-8")
            downlink.downlink_topic(gateway)  # a gateway id must be one topic level
        except (DecodeError, ConfigError) as exc:
            return _rejected("malformed", str(exc))
        except UnicodeDecodeError:
            return _rejected("malformed", "the kid's gateway id is not UTF-8")
        seq, version = peeked.seq, peeked.key_version
        claimed = item.claimed_gateway
        if claimed is not None and claimed != gateway:
            return _rejected(
                "wrong_gateway", "kid names %s, the channel %s" % (gateway, claimed), gateway, seq
            )
        revoked = self.key_source.is_revoked(peeked.gateway_id)
        key = None if revoked else self.key_source.lookup(peeked.gateway_id, version)
        if revoked:
            return _rejected("revoked", "gateway %s is revoked" % gateway, gateway, seq)
        if key is None:
            return _rejected(
                "unknown_key", "no key %d for gateway %s" % (version, gateway), gateway, seq
            )
        try:
            opened = _open(envelope, key, _bindings(item.resource, gateway))
        except AuthenticationError as exc:
            return _rejected("forged", str(exc), gateway, seq)
        except DecodeError as exc:
            return _rejected("malformed", str(exc), gateway, seq)
        try:
            batch = decode_batch(opened.plaintext)
        except DecodeError as exc:
            return _rejected("undecodable", str(exc), gateway, seq)
        received_at = self.clock()
        try:
            rows = batch_rows(
                batch, gateway, received_at, self.classify, self.thresholds, self._code_key()
            )
        except UnstorableBatch as exc:
            return _rejected("unstorable", str(exc), gateway, seq)
        reply_aad = downlink.downlink_topic(gateway) if item.transport == "mqtt" else item.resource
        return _Prepared(
            gateway,
            version,
            seq,
            KeyRing(peeked.gateway_id, version, key),
            reply_aad,
            item.transport,
            len(envelope),
            rows,
            received_at,
        )

    def _commit(self, staged: list[_Prepared]) -> list[tuple[int, Result]]:
        """One transaction for ``staged``; then the acknowledgements."""
        checkins = [_checkins(p.rows) for p in staged]  # as sent: before consent gating
        try:
            withheld = self._withhold(staged)
            devices = set().union(*(p.rows.devices for p in staged))
            wearables = self.wearables.lookup(self.database.sessions, devices)
            for p in staged:
                mark_wearables(p.rows, wearables)
            with self.database.sessions() as session:
                thresholds = self.thresholds
                keys = set()
                if thresholds:
                    for p in staged:
                        keys |= state_keys(thresholds, p.rows.watched)
                states = store.lock_threshold_states(session, thresholds, keys)
                locked = dict(states)
                committed = [
                    store.stage_batch(
                        session,
                        p.gateway,
                        p.version,
                        p.seq,
                        p.rows,
                        p.received_at,
                        p.transport,
                        p.size,
                        thresholds,
                        states,
                    )
                    for p in staged
                ]
                if self.kiosk_offers is not None:
                    for p, c in zip(staged, committed, strict=True):
                        if not c.duplicate and p.rows.kiosk:
                            self.kiosk_offers.stage(session, p.gateway, p.rows.kiosk)
                store.save_threshold_states(session, locked, states)
                session.commit()
        except Exception as exc:
            if not _unavailable(exc):
                raise
            log.warning("database unavailable: %s", str(exc).splitlines()[0])
            return [
                (i, Result(UNAVAILABLE, None, "", "database unavailable", p.gateway, p.seq))
                for i, p in enumerate(staged)
            ]
        try:
            with self.database.sessions() as session:
                numbers = store.take_ack_numbers(session, [p.gateway for p in staged])
                session.commit()
        except Exception as exc:
            if not _unavailable(exc):
                raise
            # Committed, not acknowledged: the gateway's resend is a duplicate, acked then.
            log.warning("database unavailable after a commit: %s", str(exc).splitlines()[0])
            return [
                (i, Result(UNAVAILABLE, None, "", "database unavailable", p.gateway, p.seq))
                for i, p in enumerate(staged)
            ]
        extra = self._offers(staged, [c.duplicate for c in committed], checkins)
        out = []
        for i, (p, c, number) in enumerate(zip(staged, committed, numbers, strict=True)):
            ack = _seal_ack(p.ring, number, p.seq, p.reply_aad)
            if c.duplicate:
                out.append((i, Result(DUPLICATE, ack, "", "", p.gateway, p.seq)))
            else:
                result = Result(
                    ACCEPTED, ack, "", "", p.gateway, p.seq, c.readings, withheld[i], extra[i]
                )
                out.append((i, result))
        return out

    def _offers(
        self,
        staged: list[_Prepared],
        duplicate: list[bool],
        checkins: list[list[tuple[int, str]]],
    ) -> list[tuple[bytes, ...]]:
        """Step 8 of the module docstring: the sealed OFFERS of each batch."""
        out: list[tuple[bytes, ...]] = [()] * len(staged)
        hooks = self.kiosk_offers
        if hooks is None or not any(c for c, d in zip(checkins, duplicate, strict=True) if not d):
            return out
        try:
            with self.database.sessions() as session:
                plain = [
                    [] if d else hooks.after(session, p.gateway, c, self.clock())
                    for p, d, c in zip(staged, duplicate, checkins, strict=True)
                ]
                firsts = [
                    store.take_downlink_seq(session, p.gateway, len(m)) if m else 0
                    for p, m in zip(staged, plain, strict=True)
                ]
                session.commit()
        except Exception:  # offers must never cost a batch: it is stored and acknowledged
            log.exception("offers for kiosk check-ins not decided")
            return out
        for i, (p, messages, first) in enumerate(zip(staged, plain, firsts, strict=True)):
            out[i] = tuple(
                downlink.seal_downlink(
                    p.ring, first + n, message, p.reply_aad, key_version=p.ring.current_version
                )
                for n, message in enumerate(messages)
            )
        return out

    def _withhold(self, staged: list[_Prepared]) -> list[dict[str, int] | None]:
        """Take out of each batch's rows what its customers do not consent to
        (``consents``), asking the database once for the group; the counts per batch."""
        addresses = set().union(*(consents.subjects(p.rows) for p in staged))
        if not addresses:
            return [None] * len(staged)
        with self.database.engine.connect() as connection:  # a plain read: no ORM needed
            granted = consent.granted_purposes(connection, addresses)
        if not granted:
            return [None] * len(staged)
        partner = [False] * len(staged)
        clues = []
        for i, p in enumerate(staged):
            if consents.has_presence_of(p.rows, granted):
                clues.append((i, *consents.beacon_clues(p.rows, granted)))
        if clues:
            identifiers = set().union(*(c[1] for c in clues))
            heard = set().union(*(c[2] for c in clues))
            present: dict[str, bool] = {}  # per gateway: a partner's beacon present there
            with self.database.sessions() as session:
                merchants = consents.partner_places(session, identifiers, heard)
                for i, ids, addrs in clues:
                    gateway = staged[i].gateway
                    partner[i] = bool(merchants & (ids | addrs))
                    if not partner[i]:  # the gateway's present partners: asked once per group
                        if gateway not in present:
                            present[gateway] = bool(consents.partners_present(session, gateway))
                        partner[i] = present[gateway]
        return [
            consents.withhold(p.rows, granted, partner[i]) or None for i, p in enumerate(staged)
        ]


class KioskHooks(Protocol):
    """What ingest calls for kiosk events (step 8; ``cloud.offers.kiosk.KioskOffers``)."""

    def stage(self, session: Session, gateway: str, kiosk: list[dict[str, Any]]) -> object:
        """In the batch's transaction: stage what its stored kiosk rows mean."""
        ...

    def after(
        self, session: Session, gateway: str, checkins: Sequence[tuple[int, str]], now: dt.datetime
    ) -> list[bytes]:
        """After the commit: decide for the check-ins; downlink messages to seal."""
        ...


def _checkins(rows: Rows) -> list[tuple[int, str]]:
    """(event id, wearable) of the batch's kiosk check-ins that name a wearable."""
    return [
        (row["event_id"], row["wearable"])
        for row in rows.kiosk
        if row["kind"] == "checkin" and row["wearable"] is not None
    ]


@dataclass(frozen=True)
class _Prepared:
    """An authentic, decoded batch ready for the database."""

    gateway: str
    version: int
    seq: int
    ring: KeyRing
    reply_aad: str
    transport: str
    size: int
    rows: Rows
    received_at: dt.datetime


def _sender(envelope: Envelope, result: Result) -> str | None:
    """Who sent a rejected envelope, as far as can be told: the channel's gateway (the MQTT
    topic, which only that gateway may write), else the kid's (``rejections`` keeps it only
    if the inventory holds it)."""
    return envelope.claimed_gateway or result.gateway


def _bindings(resource: str, gateway: str) -> tuple[str, ...]:
    """The external AADs an envelope that came on ``resource`` may be bound to: the resource
    first, then the other transports' (step 4 of the module docstring)."""
    topic = UPLINK_TOPIC % gateway
    return tuple(dict.fromkeys((resource, topic, RESOURCE)))


def _open(envelope: bytes, key: bytes, bindings: tuple[str, ...]) -> cose.Opened:
    """``cose.open_envelope`` under the first binding that authenticates; the last refusal
    if none does."""
    for aad in bindings[:-1]:
        try:
            return cose.open_envelope(envelope, lambda _g, _v: key, aad)
        except AuthenticationError:
            continue
    return cose.open_envelope(envelope, lambda _g, _v: key, bindings[-1])


def _seal_ack(ring: KeyRing, downlink_seq: int, seq: int, reply_aad: str) -> bytes:
    message = downlink.encode_ack(None, [seq])
    return downlink.seal_downlink(
        ring, downlink_seq, message, reply_aad, key_version=ring.current_version
    )


def _rejected(reason: str, detail: str, gateway: str | None = None, seq: int | None = None):
    return Result(REJECTED, None, reason, detail, gateway, seq)
