"""Nothing unauthenticated is stored: forged, misdirected, revoked, unknown, malformed,
oversized and undecodable envelopes are rejected, counted, and the pipeline carries on.

Hypothesis mutates authentic envelopes (bit flips, truncation, splices, garbage) and feeds
them to the pipeline on SQLite and PostgreSQL: only the untouched envelope may be stored,
nothing ever raises, and an authentic batch still goes through afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from bankiot_core import cbor, cose
from bankiot_core.errors import CoreError
from cloud.db import Database
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import MAX_ENVELOPE_BYTES, Ingest
from tests.cloud.ingest_support import (
    SimGateway,
    migrated,
    reading_count,
    receipt_count,
    secret_for,
)

GATEWAY = "gw-sec"


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def one_envelope(gw: SimGateway, readings: int = 4) -> bytes:
    gw.hear_many(readings)
    gw.flush()
    [(_seq, envelope)] = gw.outbox()
    return envelope


def rejections(database: Database) -> tuple[Ingest, SimGateway, MemoryKeySource]:
    gw = SimGateway(GATEWAY)
    keys = gw.keys()
    SimGateway("gw-other").keys(keys)
    return Ingest(database, keys), gw, keys


def test_every_kind_of_bad_envelope_is_rejected_with_its_reason(database: Database) -> None:
    ingest, gw, keys = rejections(database)
    topic = gw.aad
    good = one_envelope(gw)
    wrong_key = cose.seal(b"k" * 32, GATEWAY, 1, 50, b"\x84\x01\x00\x00\x80", topic)
    # Sealed by gw-other with its own key, published on gw-sec's topic.
    other = SimGateway("gw-other")
    misdirected = cose.seal_with(other.ring, 1, b"x", topic)
    # gw-sec's key, but the kid claims gw-other (over CoAP, where no topic names a gateway).
    claims_other = cose.seal(secret_for(GATEWAY), "gw-other", 1, 7, b"x", "batches")
    unknown_version = cose.seal(secret_for(GATEWAY, 9), GATEWAY, 9, 8, b"x", topic)
    for_another_topic = cose.seal_with(gw.ring, 60, b"x", "devices/gw-other/up")
    not_a_batch = cose.seal_with(gw.ring, 61, cbor.dumps(["not", "a", "batch"]), topic)
    cases = [
        (b"", topic, "mqtt", GATEWAY, "malformed"),
        (b"\xd0\x83garbage", topic, "mqtt", GATEWAY, "malformed"),
        (b"\x00" * (MAX_ENVELOPE_BYTES + 1), topic, "mqtt", GATEWAY, "too_large"),
        (wrong_key, topic, "mqtt", GATEWAY, "forged"),
        (misdirected, topic, "mqtt", GATEWAY, "wrong_gateway"),
        (claims_other, "batches", "coap", None, "forged"),
        (unknown_version, topic, "mqtt", GATEWAY, "unknown_key"),
        (for_another_topic, topic, "mqtt", GATEWAY, "forged"),
        (not_a_batch, topic, "mqtt", GATEWAY, "undecodable"),
    ]
    got = []
    for envelope, resource, transport, claimed, _reason in cases:
        result = ingest.handle(envelope, resource, transport, claimed)
        assert result.status == "rejected" and result.ack is None and result.detail
        assert "\n" not in result.detail
        got.append(result.reason)
    assert got == [case[-1] for case in cases]
    assert receipt_count(database) == 0 and reading_count(database) == 0
    assert ingest.stats.batches("rejected") == len(cases)
    assert ingest.stats.batches("rejected", "forged") == 3
    # ... and the pipeline still serves the genuine batch.
    assert ingest.handle(good, topic, "mqtt", GATEWAY).status == "accepted"

    keys.revoke(GATEWAY)
    again = one_envelope(gw)
    revoked = ingest.handle(again, topic, "mqtt", GATEWAY)
    assert (revoked.status, revoked.reason) == ("rejected", "revoked")
    duplicate = ingest.handle(good, topic, "mqtt", GATEWAY)  # not even a duplicate's ack
    assert (duplicate.status, duplicate.reason) == ("rejected", "revoked")
    assert receipt_count(database) == 1


def test_a_forged_copy_of_a_stored_batch_gets_no_acknowledgement(database: Database) -> None:
    ingest, gw, _keys = rejections(database)
    good = one_envelope(gw)
    assert ingest.handle(good, gw.aad, "mqtt", GATEWAY).status == "accepted"
    forged = good[:-1] + bytes([good[-1] ^ 1])  # same kid and sequence number, bad tag
    assert cose.peek_envelope(forged) == cose.peek_envelope(good)
    result = ingest.handle(forged, gw.aad, "mqtt", GATEWAY)
    assert (result.status, result.reason, result.ack) == ("rejected", "forged", None)


def mutations() -> st.SearchStrategy:
    flip = st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255))
    cut = st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(0))
    splice = st.tuples(st.just("splice"), st.integers(0, 10_000), st.binary(max_size=40))
    garbage = st.tuples(st.just("garbage"), st.just(0), st.binary(max_size=200))
    return st.lists(st.one_of(flip, cut, splice, garbage), min_size=1, max_size=3)


def mutate(envelope: bytes, steps: list) -> bytes:
    data = bytearray(envelope)
    for kind, where, what in steps:
        i = where % (len(data) or 1)
        if kind == "flip" and data:
            data[i] ^= what
        elif kind == "cut":
            del data[i:]
        elif kind == "splice":
            data[i:i] = what
        else:
            data = bytearray(what)
    return bytes(data)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=mutations(), transport=st.sampled_from(["mqtt", "coap"]))
def test_mutated_envelopes_never_store_anything_and_never_crash(
    database: Database, steps: list, transport: str
) -> None:
    gw = SimGateway(GATEWAY, resource=None if transport == "mqtt" else "batches")
    ingest = Ingest(database, gw.keys())
    envelope = one_envelope(gw, readings=3)
    before = receipt_count(database)
    mutated = mutate(envelope, steps)
    claimed = GATEWAY if transport == "mqtt" else None
    result = ingest.handle(mutated, gw.aad, transport, claimed)
    try:  # a mutation that still opens is the same batch in another CBOR spelling
        authentic = cose.open_envelope(mutated, gw.ring.lookup, gw.aad)
    except CoreError:
        authentic = None
    if authentic is None:
        assert result.status == "rejected" and result.ack is None
        assert receipt_count(database) == before
    else:
        assert authentic == cose.open_envelope(envelope, gw.ring.lookup, gw.aad)
        assert result.status in ("accepted", "duplicate")
    assert ingest.handle(envelope, gw.aad, transport, claimed).status in ("accepted", "duplicate")


def test_a_batch_sealed_for_one_transport_is_taken_on_the_other_once(database: Database) -> None:
    """A gateway seals when it queues, for the transport it prefers, and falls back to the
    other when that one is down: the cloud takes the envelope there, and stores it once."""
    ingest, gw, _keys = rejections(database)
    for_mqtt = one_envelope(gw)  # bound to devices/gw-sec/up
    over_http = ingest.handle(for_mqtt, "batches", "http")
    assert (over_http.status, over_http.ack is not None) == ("accepted", True)
    again_over_mqtt = ingest.handle(for_mqtt, gw.aad, "mqtt", GATEWAY)
    assert again_over_mqtt.status == "duplicate"
    for_coap = cose.seal_with(
        gw.ring, 70, cose.open_envelope(for_mqtt, gw.ring.lookup, gw.aad).plaintext, "batches"
    )
    assert ingest.handle(for_coap, gw.aad, "mqtt", GATEWAY).status == "accepted"
    assert receipt_count(database) == 2
