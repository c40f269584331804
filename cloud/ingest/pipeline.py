"""The ingest pipeline: one sealed batch in, a verdict and a sealed acknowledgement out.

Every transport (MQTT worker, CoAP resource, HTTP endpoint) calls ``Ingest.handle`` (or
``handle_many`` for several at once) with the envelope's bytes, the topic or resource it
arrived on (the envelope's external AAD) and the transport's name. In this order:

1. size: over ``max_envelope_bytes`` is rejected (``too_large``) unread;
2. ``cose.peek_envelope``: the kid (gateway id, key version) and sequence number, no AES
   (``malformed``); on MQTT the kid's gateway must be the topic's (``wrong_gateway``);
3. the gateway must not be revoked (``revoked``) and must have that key version
   (``unknown_key``), from the ``KeySource``;
4. ``cose.open_envelope`` with the topic or resource as external AAD (``forged``);
5. ``batch.decode_batch`` (``undecodable``: authentic but not understood, not acknowledged,
   so the gateway keeps it until a cloud that understands it takes it); rows
   (``records``, ``unstorable``);
6. one transaction (``store.stage_batch``; ``handle_many`` stages every batch of the group
   in one transaction, a group commit): the receipt for (gateway, key version,
   sequence) first; if it is there already (or a racing copy is committing it), the batch is
   a duplicate: acknowledged again, stored no more. Otherwise readings, events, health.
   Either way a downlink number. Duplicates are authenticated (step 4) before they are
   answered, so a forged copy of a known batch gets no acknowledgement and uses no
   downlink number; checking for them in the same transaction, rather than with a query
   before it, costs a duplicate its decoding and saves every new batch a round trip;
7. after the commit, the acknowledgement: an ACK naming this batch's sequence number
   (``downlink.encode_ack``), sealed in the downlink direction with the key version the
   batch used, bound to ``devices/<gateway>/down`` (MQTT) or to the request's resource
   (CoAP, HTTP).

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

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bankiot_core import cose, downlink
from bankiot_core.batch import decode_batch
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError
from bankiot_core.keyring import KeyRing
from cloud.db import Database
from cloud.ingest import retention, store
from cloud.ingest.keys import KeySource
from cloud.ingest.records import Rows, UnstorableBatch, batch_rows
from cloud.ingest.stats import ACCEPTED, DUPLICATE, REJECTED, UNAVAILABLE, IngestStats

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
    a rejection (``stats`` lists them) with a one-line ``detail``, and what it was."""

    status: str
    ack: bytes | None = None
    reason: str = ""
    detail: str = ""
    gateway: str | None = None
    seq: int | None = None
    readings: int = 0

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
    class from (metric, unit); ``clock``: the current UTC time (tests).
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
    ) -> None:
        self.database = database
        self.key_source = key_source
        self.stats = stats if stats is not None else IngestStats()
        self.max_envelope_bytes = max_envelope_bytes
        self.classify = classify
        self.clock = clock

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
        for envelope, result in zip(envelopes, done, strict=True):
            self.stats.count(result.status, result.reason, envelope.transport, result.readings)
            log.debug(
                "%s %s gateway=%s seq=%s %s",
                envelope.transport,
                result.status,
                result.gateway,
                result.seq,
                result.reason,
            )
        return done

    # ---- the steps ---------------------------------------------------------------------------

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
            opened = cose.open_envelope(envelope, lambda _g, _v: key, item.resource)
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
            rows = batch_rows(batch, gateway, received_at, self.classify)
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
        try:
            with self.database.sessions() as session:
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
                    )
                    for p in staged
                ]
                session.commit()
        except Exception as exc:
            if not _unavailable(exc):
                raise
            log.warning("database unavailable: %s", str(exc).splitlines()[0])
            return [
                (i, Result(UNAVAILABLE, None, "", "database unavailable", p.gateway, p.seq))
                for i, p in enumerate(staged)
            ]
        out = []
        for i, (p, c) in enumerate(zip(staged, committed, strict=True)):
            ack = _seal_ack(p.ring, c.downlink_seq, p.seq, p.reply_aad)
            if c.duplicate:
                out.append((i, Result(DUPLICATE, ack, "", "", p.gateway, p.seq)))
            else:
                out.append((i, Result(ACCEPTED, ack, "", "", p.gateway, p.seq, c.readings)))
        return out


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


def _seal_ack(ring: KeyRing, downlink_seq: int, seq: int, reply_aad: str) -> bytes:
    message = downlink.encode_ack(None, [seq])
    return downlink.seal_downlink(
        ring, downlink_seq, message, reply_aad, key_version=ring.current_version
    )


def _rejected(reason: str, detail: str, gateway: str | None = None, seq: int | None = None):
    return Result(REJECTED, None, reason, detail, gateway, seq)
