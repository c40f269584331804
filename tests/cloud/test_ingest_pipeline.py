"""cloud.ingest.pipeline: every batch stored exactly once and acknowledged end to end.

A gateway simulated with the portable core (``ingest_support.SimGateway``) seals batches,
the pipeline judges and commits them on SQLite and on PostgreSQL, and the gateway opens the
acknowledgements with its own replay window and releases its queue with ``apply_ack``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from bankiot_core import cose, downlink
from bankiot_core.errors import ReplayError
from bankiot_core.keyring import KeyRing
from bankiot_core.replay import ReplayWindow
from cloud.db import Database
from cloud.ingest.models import BatchReceipt, DeviceEvent, DownlinkCounter
from cloud.ingest.pipeline import Envelope, Ingest
from tests.cloud.ingest_support import (
    SENSOR,
    WEARABLE,
    SimGateway,
    migrated,
    reading_count,
    receipt_count,
    secret_for,
    stored_readings,
)


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def deliver(ingest: Ingest, gateway: SimGateway, transport: str = "mqtt") -> list[str]:
    """Send everything the gateway's queue hands out, apply the acks; return the statuses."""
    statuses = []
    for _seq, envelope in gateway.outbox():
        claimed = gateway.gateway_id if transport == "mqtt" else None
        result = ingest.handle(envelope, gateway.aad, transport, claimed)
        statuses.append(result.status)
        if result.ack is not None:
            gateway.receive(result.ack)
    return statuses


def test_every_batch_is_stored_once_acknowledged_and_leaves_the_queue(
    database: Database,
) -> None:
    gateways = [SimGateway("gw-a"), SimGateway("gw-b", unix_ms=1_790_000_000_000)]
    keys = gateways[0].keys()
    gateways[1].keys(keys)
    ingest = Ingest(database, keys)
    for gw in gateways:
        gw.hear_many(30)
        gw.hear(WEARABLE, "heart_rate", 71, "bpm")
        gw.hear(SENSOR, "button", "press", "event")  # urgent: overtakes the routine backlog
        gw.flush()
    statuses = []
    for gw in gateways:
        sent = deliver(ingest, gw)
        assert len(gw.queue) == 0 and gw.acks == len(sent) > 1
        statuses += sent
    assert set(statuses) == {"accepted"}
    expected = Counter(
        (address, metric, value) for gw in gateways for address, metric, value in gw.accepted
    )
    assert Counter(stored_readings(database)) == expected
    assert receipt_count(database) == len(statuses)
    assert ingest.stats.batches("accepted") == len(statuses)
    assert ingest.stats.readings() == sum(expected.values())


def test_the_same_envelope_twice_is_stored_once_and_acknowledged_twice(
    database: Database,
) -> None:
    gw = SimGateway("gw-dup")
    ingest = Ingest(database, gw.keys())
    gw.hear_many(5)
    gw.flush()
    [(_seq, envelope)] = gw.outbox()
    first = ingest.handle(envelope, gw.aad, "mqtt", "gw-dup")
    second = ingest.handle(envelope, gw.aad, "mqtt", "gw-dup")
    assert (first.status, second.status) == ("accepted", "duplicate")
    assert first.ack is not None and second.ack is not None and first.ack != second.ack
    assert gw.receive(second.ack) == 1  # either ack releases the batch ...
    assert gw.receive(first.ack) == 0  # ... and the other is a harmless repeat
    assert reading_count(database) == 5 and receipt_count(database) == 1
    assert ingest.stats.batches("duplicate") == 1
    with pytest.raises(ReplayError):  # the same ack replayed is refused by the gateway
        gw.receive(second.ack)


def test_a_batch_committed_but_never_acknowledged_is_sent_again_and_stored_once(
    database: Database,
) -> None:
    gw = SimGateway("gw-crash")
    ingest = Ingest(database, gw.keys())
    gw.hear_many(16)
    gw.flush()
    sent = gw.outbox()
    for _seq, envelope in sent:
        assert ingest.handle(envelope, gw.aad, "mqtt", "gw-crash").status == "accepted"
    # The worker crashed after the commits: no ack reached the gateway.
    assert len(gw.queue) == len(sent) and gw.outbox() == []
    gw.now_ms += gw.queue.resend_ms  # the gateway's resend timer fires
    assert deliver(ingest, gw) == ["duplicate"] * len(sent)
    assert len(gw.queue) == 0
    assert reading_count(database) == 16 and receipt_count(database) == len(sent)


def test_acknowledgements_use_the_batchs_key_version_and_fresh_downlink_numbers(
    database: Database,
) -> None:
    old = SimGateway("gw-rot", version=1)
    new_secret = secret_for("gw-rot", 2)
    keys = old.keys()
    keys.add(KeyRing("gw-rot", 2, new_secret, previous=(1, secret_for("gw-rot", 1))))
    ingest = Ingest(database, keys)
    old.hear_many(3)
    old.flush()
    [(_seq, envelope)] = old.outbox()
    result = ingest.handle(envelope, old.aad, "mqtt", "gw-rot")
    assert cose.peek_envelope(result.ack).key_version == 1  # what the gateway surely holds
    seqs = []
    for _ in range(3):
        again = ingest.handle(envelope, old.aad, "mqtt", "gw-rot")
        seqs.append(cose.peek_envelope(again.ack).seq)
    assert seqs == sorted(set(seqs)) and cose.peek_envelope(result.ack).seq < seqs[0]
    with database.sessions() as session:
        assert session.get(DownlinkCounter, "gw-rot").next_seq == 4  # type: ignore[union-attr]


def test_two_copies_racing_are_one_commit_and_two_acks(database: Database) -> None:
    gw = SimGateway("gw-race")
    ingest = Ingest(database, gw.keys())
    gw.hear_many(8)
    gw.flush()
    [(_seq, envelope)] = gw.outbox()
    results = []
    start = threading.Barrier(4)

    def send() -> None:
        start.wait()
        results.append(ingest.handle(envelope, gw.aad, "mqtt", "gw-race"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in results) == ["accepted"] + ["duplicate"] * 3
    window = ReplayWindow(size=64)
    for r in results:
        assert r.ack is not None
        downlink.open_downlink(r.ack, gw.ring, window, gw.down_aad)  # four distinct numbers
    assert reading_count(database) == 8 and receipt_count(database) == 1


def test_events_follow_each_device_in_order(database: Database) -> None:
    gw = SimGateway("gw-ev", unix_ms=1_790_000_000_000)
    ingest = Ingest(database, gw.keys())
    for press in ("single_press", "double_press", "long_press"):
        gw.hear(SENSOR, "button", press, "event")
    gw.hear_many(3)
    gw.flush()
    deliver(ingest, gw)
    with database.sessions() as session:
        events = session.execute(
            select(DeviceEvent.kind, DeviceEvent.data, DeviceEvent.occurred_at)
            .where(DeviceEvent.device == "A4:C1:38:00:00:01")
            .order_by(DeviceEvent.id)
        ).all()
        receipts = session.scalars(select(BatchReceipt.transport)).all()
    assert [(k, d["value"]) for k, d, _ in events] == [
        ("button", "single_press"),
        ("button", "double_press"),
        ("button", "long_press"),
    ]
    times = [t for _, _, t in events]
    assert times == sorted(times) and len(set(times)) == 3
    assert set(receipts) == {"mqtt"}


def test_transport_names_are_checked() -> None:
    ingest = Ingest(Database("sqlite://"), SimGateway("gw-x").keys())
    with pytest.raises(ValueError, match="transport"):
        ingest.handle(b"", "batches", "carrier-pigeon")


def test_a_group_commit_keeps_order_and_stores_each_batch_once(database: Database) -> None:
    gw = SimGateway("gw-group")
    ingest = Ingest(database, gw.keys())
    gw.hear_many(40)
    gw.flush()
    sent = gw.outbox()
    first, second = sent[0][1], sent[1][1]
    assert ingest.handle(first, gw.aad, "mqtt", "gw-group").status == "accepted"
    forged = second[:-1] + bytes([second[-1] ^ 0xFF])
    group = [
        Envelope(second, gw.aad, "mqtt", "gw-group"),
        Envelope(first, gw.aad, "mqtt", "gw-group"),  # committed before
        Envelope(forged, gw.aad, "mqtt", "gw-group"),
        Envelope(second, gw.aad, "mqtt", "gw-group"),  # twice in one group
        *(Envelope(envelope, gw.aad, "mqtt", "gw-group") for _s, envelope in sent[2:]),
    ]
    results = ingest.handle_many(group)
    assert [r.status for r in results[:4]] == ["accepted", "duplicate", "rejected", "duplicate"]
    assert [r.seq for r in results] == [cose.peek_envelope(e.data).seq for e in group]
    for result in results:
        if result.ack is not None:
            gw.receive(result.ack)
    assert len(gw.queue) == 0
    assert reading_count(database) == 40 and receipt_count(database) == len(sent)
