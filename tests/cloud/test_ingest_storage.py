"""What a committed batch becomes: readings with their times and value forms, events,
gateway health and loss, retention by data class, and (PostgreSQL) monthly partitions.

Batches are built with the core's ``batch.encode_batch`` and sealed with ``cose``, so each
test states exactly what the gateway sent.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL

from bankiot_core import cose
from bankiot_core.batch import CLOCK_TICKS, CLOCK_UNIX_MS, BatchReading, Health, encode_batch
from bankiot_core.errors import LocalError
from bankiot_core.presence import PresenceEvent
from cloud.db import Database
from cloud.fleet.models import Branch, Device
from cloud.ingest import partitions
from cloud.ingest.models import DeviceEvent, GatewayHealth, Reading, utc
from cloud.ingest.pipeline import Ingest
from cloud.ingest.retention import RetentionError, RetentionPolicy, classify, purge_expired
from cloud.ingest.thresholds import Thresholds
from cloud.ingest.wearables import WearableDirectory
from tests.cloud.ingest_support import (
    SENSOR,
    WEARABLE,
    SimGateway,
    migrated,
    reading_count,
    receipt_count,
)

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
FUZZ_SEQ = itertools.count(1)


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def send(ingest: Ingest, gw: SimGateway, seq: int, records: list, clock: int = CLOCK_UNIX_MS):
    envelope = cose.seal_with(gw.ring, seq, encode_batch(records, clock), gw.aad)
    return ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id)


def make(database: Database, gateway: str = "gw-st") -> tuple[Ingest, SimGateway]:
    gw = SimGateway(gateway)
    return Ingest(database, gw.keys(), clock=lambda: NOW), gw


def test_readings_keep_their_times_values_and_classes(database: Database) -> None:
    ingest, gw = make(database)
    at = NOW_MS - 60_000
    records = [
        BatchReading(SENSOR, at, "temperature", 21.37, "°C"),
        BatchReading(SENSOR, at, "door", True, ""),
        BatchReading(SENSOR, at + 5, "text", "hello\x00world", ""),
        BatchReading(SENSOR, at + 5, "raw", b"\x01\x02", ""),
        BatchReading(SENSOR, at + 5, "count", 2**60 + 1, ""),
        BatchReading(WEARABLE, at + 7, "heart_rate", 72, "bpm"),
        BatchReading(WEARABLE, at + 7, "rr_intervals", [801, 799], "ms"),
        BatchReading(WEARABLE, at + 9, "button", "press", "event"),
        BatchReading(WEARABLE, at + 9, "custom_thing", None, "x"),
    ]
    assert send(ingest, gw, 0, records).status == "accepted"
    with database.sessions() as session:
        rows = session.scalars(select(Reading).order_by(Reading.position)).all()
    got = {
        r.metric: (r.value_kind, r.value_num, r.value_text, r.value_bytes, r.data_class)
        for r in rows
    }
    assert got == {
        "temperature": ("float", 21.37, None, None, "environment"),
        "door": ("bool", 1.0, None, None, "environment"),
        "text": ("text", None, None, b"hello\x00world", "environment"),
        "raw": ("bytes", None, None, b"\x01\x02", "environment"),
        "count": ("int", float(2**60 + 1), str(2**60 + 1), None, "environment"),
        "heart_rate": ("int", 72.0, None, None, "health"),
        "rr_intervals": ("list", None, None, cbor2.dumps([801, 799]), "health"),
        "button": ("text", None, "press", None, "interaction"),
        "custom_thing": ("null", None, None, None, "environment"),
    }
    assert [utc(r.measured_at) for r in rows][:2] == [NOW - dt.timedelta(seconds=60)] * 2
    assert {r.device for r in rows} == {"A4:C1:38:00:00:01", "C0:FF:EE:00:00:02"}
    assert not any(r.time_estimated for r in rows)
    assert {utc(r.received_at) for r in rows} == {NOW}


def test_tick_times_count_back_from_arrival_and_wild_clocks_are_estimated(
    database: Database,
) -> None:
    ingest, gw = make(database)
    ticks = [BatchReading(SENSOR, 5_000 + dt_ms, "humidity", 40.0, "%") for dt_ms in (0, 1500)]
    assert send(ingest, gw, 0, ticks, CLOCK_TICKS).status == "accepted"
    future = NOW_MS + 3 * 86_400_000  # a gateway clock three days ahead
    wild = [BatchReading(SENSOR, future, "humidity", 41.0, "%")]
    assert send(ingest, gw, 1, wild).status == "accepted"
    with database.sessions() as session:
        rows = session.execute(
            select(Reading.value_num, Reading.measured_at, Reading.time_estimated).order_by(
                Reading.value_num, Reading.measured_at
            )
        ).all()
    assert [(v, utc(t), e) for v, t, e in rows] == [
        (40.0, NOW - dt.timedelta(milliseconds=1500), True),
        (40.0, NOW, True),
        (41.0, NOW, True),
    ]


def test_health_keeps_the_latest_report_and_turns_new_loss_into_an_event(
    database: Database,
) -> None:
    ingest, gw = make(database)

    def health(seq: int, dropped: int, depth: int, extra: dict | None = None):
        counters: dict[str, int | None] = {
            "depth": depth,
            "dropped_batches": dropped,
            "dropped_bytes": dropped * 100,
        }
        counters.update(lost_first=3 if dropped else None, lost_last=2 + dropped or None)
        counters.update(extra or {})
        return send(ingest, gw, seq, [Health(NOW_MS - 1000 + seq, counters)])

    assert health(1, 0, 5).status == "accepted"
    assert health(3, 2, 9, {"vendor_counter": 2**64 - 1}).status == "accepted"
    assert health(2, 1, 7).status == "accepted"  # older, arriving late: history only
    with database.sessions() as session:
        row = session.get(GatewayHealth, "gw-st")
        assert row is not None
        assert (row.seq, row.queue_depth, row.dropped_batches, row.lost_first, row.lost_last) == (
            3,
            9,
            2,
            3,
            4,
        )
        assert row.counters["vendor_counter"] == 2**64 - 1
        kinds = session.execute(
            select(DeviceEvent.kind, DeviceEvent.data).order_by(DeviceEvent.id)
        ).all()
    assert [k for k, _ in kinds] == ["health", "health", "loss", "health"]
    assert kinds[2][1] == {"dropped_batches": 2, "lost_first": 3, "lost_last": 4}


def test_presence_events_carry_rssi_and_confidence(database: Database) -> None:
    ingest, gw = make(database)
    records = [
        PresenceEvent("enter", WEARABLE, NOW_MS - 9000, -61, 72),
        PresenceEvent("leave", WEARABLE, NOW_MS - 1000, -90, 0),
    ]
    assert send(ingest, gw, 0, records).status == "accepted"
    with database.sessions() as session:
        events = session.execute(
            select(DeviceEvent.kind, DeviceEvent.data, DeviceEvent.data_class).order_by(
                DeviceEvent.id
            )
        ).all()
    assert [tuple(e) for e in events] == [
        ("enter", {"rssi": -61, "confidence": 72}, "presence"),
        ("leave", {"rssi": -90, "confidence": 0}, "presence"),
    ]
    assert reading_count(database) == 0 and receipt_count(database) == 1


def test_a_name_the_schema_cannot_hold_rejects_the_batch_whole(database: Database) -> None:
    ingest, gw = make(database)
    records = [
        BatchReading(SENSOR, NOW_MS, "temperature", 20.0, "°C"),
        BatchReading(SENSOR, NOW_MS, "m" * 65, 1, ""),
    ]
    result = send(ingest, gw, 0, records)
    assert (result.status, result.reason, result.ack) == ("rejected", "unstorable", None)
    assert receipt_count(database) == 0 and reading_count(database) == 0


def test_purge_deletes_only_what_outlived_its_class(database: Database) -> None:
    ingest, gw = make(database)
    old = NOW_MS - 10 * 86_400_000  # ten days ago
    records = [
        BatchReading(WEARABLE, old, "heart_rate", 70, "bpm"),  # health: 7 days
        BatchReading(SENSOR, old, "temperature", 20.0, "°C"),  # environment: 365 days
        PresenceEvent("enter", WEARABLE, old, -60, 60),  # presence: 30 days
    ]
    assert send(ingest, gw, 0, records).status == "accepted"
    recent = [BatchReading(WEARABLE, NOW_MS - 3600_000, "heart_rate", 71, "bpm")]
    assert send(ingest, gw, 1, recent).status == "accepted"
    with database.sessions() as session:
        assert purge_expired(session, NOW) == {
            "health": 1,
            "presence": 0,
            "interaction": 0,
            "device": 0,
            "environment": 0,
        }
        session.commit()
        left = session.execute(select(Reading.metric, Reading.value_num)).all()
        assert sorted(tuple(r) for r in left) == [("heart_rate", 71.0), ("temperature", 20.0)]
        short = RetentionPolicy.parse({"presence": "12h", "environment": "1d"})
        purged = purge_expired(session, NOW, short)
        assert (purged["presence"], purged["environment"], purged["health"]) == (1, 1, 0)
        session.commit()
        assert session.scalars(select(DeviceEvent)).all() == []


WEARABLE_ADDRESS, SENSOR_ADDRESS = "C0:FF:EE:00:00:02", "A4:C1:38:00:00:01"


def register(database: Database, uid: str, kind: str) -> None:
    """A device in the inventory, as the fleet area records it."""
    with database.sessions() as session:
        branch = session.query(Branch).filter_by(code="B001").one_or_none()
        branch = branch or Branch(code="B001", name="Branch B001")
        session.add(Device(uid=uid, kind=kind, branch=branch, status="active"))
        session.commit()


class Ticks:
    """A monotonic clock the test moves (``WearableDirectory``'s time-to-live)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_wearables_readings_are_health_data_whatever_the_metric(database: Database) -> None:
    register(database, WEARABLE_ADDRESS, "wearable")
    register(database, SENSOR_ADDRESS, "sensor")
    gw = SimGateway("gw-st")
    rules = Thresholds.parse("temperature>37.5:37")
    ingest = Ingest(database, gw.keys(), clock=lambda: NOW, thresholds=rules)
    at = NOW_MS - 60_000
    records = [
        BatchReading(WEARABLE, at, "temperature", 38.1, "°C"),  # skin temperature
        BatchReading(WEARABLE, at, "steps", 1200, ""),
        BatchReading(WEARABLE, at + 1, "button", "press", "event"),
        PresenceEvent("enter", WEARABLE, at + 2, -60, 80),
        BatchReading(SENSOR, at, "temperature", 38.2, "°C"),  # a room (or a cabinet)
    ]
    assert send(ingest, gw, 0, records).status == "accepted"
    with database.sessions() as session:
        readings = session.execute(
            select(Reading.device, Reading.metric, Reading.data_class).order_by(Reading.position)
        ).all()
        events = session.execute(
            select(DeviceEvent.device, DeviceEvent.kind, DeviceEvent.data_class).order_by(
                DeviceEvent.id
            )
        ).all()
    assert [tuple(r) for r in readings] == [
        (WEARABLE_ADDRESS, "temperature", "health"),
        (WEARABLE_ADDRESS, "steps", "health"),
        (WEARABLE_ADDRESS, "button", "health"),
        (SENSOR_ADDRESS, "temperature", "environment"),
    ]
    assert sorted(tuple(e) for e in events) == [
        (SENSOR_ADDRESS, "threshold", "environment"),
        (WEARABLE_ADDRESS, "button", "health"),
        (WEARABLE_ADDRESS, "enter", "presence"),  # where someone was: presence, 30 days
        (WEARABLE_ADDRESS, "threshold", "health"),
    ]


def test_purge_deletes_a_wearables_readings_after_seven_days(database: Database) -> None:
    gw = SimGateway("gw-st")
    ticks = Ticks()
    ingest = Ingest(
        database, gw.keys(), clock=lambda: NOW, wearables=WearableDirectory(clock=ticks)
    )
    day = 86_400_000
    before = [BatchReading(WEARABLE, NOW_MS - 10 * day, "temperature", 33.0, "°C")]
    assert send(ingest, gw, 0, before).status == "accepted"  # not registered yet
    register(database, WEARABLE_ADDRESS, "wearable")
    ticks.now += 61  # past the time-to-live: ingest asks again
    records = [
        BatchReading(WEARABLE, NOW_MS - 8 * day, "temperature", 34.0, "°C"),
        BatchReading(SENSOR, NOW_MS - 8 * day, "temperature", 21.0, "°C"),
    ]
    assert send(ingest, gw, 1, records).status == "accepted"
    recent = [BatchReading(WEARABLE, NOW_MS - 1 * day, "temperature", 35.0, "°C")]
    assert send(ingest, gw, 2, recent).status == "accepted"
    with database.sessions() as session:
        stored = session.execute(select(Reading.value_num, Reading.data_class)).all()
        assert sorted(tuple(r) for r in stored) == [
            (21.0, "environment"),
            (33.0, "environment"),  # stored before the device was known as a wearable
            (34.0, "health"),
            (35.0, "health"),
        ]
        purged = purge_expired(session, NOW)
        session.commit()
        left = session.execute(select(Reading.device, Reading.value_num)).all()
    assert purged["health"] == 2 and purged["environment"] == 0
    assert sorted(tuple(r) for r in left) == [(SENSOR_ADDRESS, 21.0), (WEARABLE_ADDRESS, 35.0)]


def test_wearables_are_looked_up_once_per_batch_at_most_and_remembered(
    database: Database,
) -> None:
    register(database, WEARABLE_ADDRESS, "wearable")
    ticks = Ticks()
    directory = WearableDirectory(ttl=60, clock=ticks)
    gw = SimGateway("gw-st")
    ingest = Ingest(database, gw.keys(), clock=lambda: NOW, wearables=directory)
    both = [
        BatchReading(WEARABLE, NOW_MS, "temperature", 33.0, "°C"),
        BatchReading(SENSOR, NOW_MS, "temperature", 21.0, "°C"),
    ]
    assert send(ingest, gw, 0, both).status == "accepted"
    assert directory.queries == 1
    assert send(ingest, gw, 1, both).status == "accepted"
    assert directory.queries == 1  # both remembered, the negative answer too
    assert send(ingest, gw, 2, [Health(NOW_MS, {"depth": 0})]).status == "accepted"
    assert directory.queries == 1  # no device readings: nothing to ask
    ticks.now += 60
    assert send(ingest, gw, 3, both).status == "accepted"
    assert directory.queries == 2  # expired: asked again, once for the batch
    with database.sessions() as session:
        classes = session.execute(select(Reading.device, Reading.data_class).distinct()).all()
    assert sorted(tuple(c) for c in classes) == [
        (SENSOR_ADDRESS, "environment"),
        (WEARABLE_ADDRESS, "health"),
    ]


def test_retention_settings_are_checked_and_metrics_classified() -> None:
    with pytest.raises(RetentionError, match="like 7d"):
        RetentionPolicy.parse({"health": "a week"})
    with pytest.raises(RetentionError, match="unknown data class"):
        RetentionPolicy({"gossip": dt.timedelta(days=1)})
    with pytest.raises(RetentionError, match="positive"):
        RetentionPolicy({"health": dt.timedelta(0)})
    assert RetentionPolicy.parse({"health": "36h"}).period("health") == dt.timedelta(hours=36)
    assert [classify(m, u) for m, u in [("heart_rate", "bpm"), ("temperature_2", "°C")]] == [
        "health",
        "environment",
    ]
    assert classify("major", "") == "presence" and classify("dimmer", "event") == "interaction"


def test_postgresql_puts_each_month_in_its_own_partition(postgres_url: URL) -> None:
    with migrated(postgres_url) as database:
        with database.engine.begin() as conn:
            partitions.create_partitions(conn, NOW)  # the migration made today's months
            later = dt.datetime(2030, 12, 5, tzinfo=dt.UTC)
            made = partitions.create_partitions(conn, later)
            assert made == ["readings_2030_12", "readings_2031_01", "readings_2031_02"]
            assert partitions.create_partitions(conn, later) == []  # idempotent
        ingest, gw = make(database)
        old = int(dt.datetime(2024, 2, 1, tzinfo=dt.UTC).timestamp() * 1000)
        assert send(ingest, gw, 0, [BatchReading(SENSOR, NOW_MS, "co2", 20, "ppm")]).status == (
            "accepted"
        )
        assert send(ingest, gw, 1, [BatchReading(SENSOR, old, "co2", 19, "ppm")]).status == (
            "accepted"
        )
        with database.engine.connect() as conn:
            places = conn.execute(
                text("SELECT tableoid::regclass::text, value_num FROM readings ORDER BY value_num")
            ).all()
    assert [tuple(p) for p in places] == [
        ("readings_partitions.readings_default", 19.0),
        ("readings_partitions.readings_2026_11", 20.0),
    ]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64) + 1, 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=20),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4))
names = st.text(min_size=1, max_size=70)
records = st.lists(
    st.tuples(st.sampled_from([SENSOR, WEARABLE]), st.integers(0, 60_000), names, values, names),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=records, counters=st.dictionaries(names, st.integers(-(2**64) + 1, 2**64 - 1)))
def test_any_authentic_batch_is_stored_or_refused_whole_never_a_crash(
    database: Database, items: list, counters: dict
) -> None:
    ingest, gw = make(database, "gw-fuzz")
    batch: list[object] = [BatchReading(a, NOW_MS - 60_000 + t, m, v, u) for a, t, m, v, u in items]
    if counters:
        batch.append(Health(NOW_MS - 30_000, counters))
    try:
        payload = encode_batch(batch, CLOCK_UNIX_MS)
    except LocalError:  # what no gateway can send (an int beyond 64 bits once scaled)
        assume(False)
        return
    before = reading_count(database)
    envelope = cose.seal_with(gw.ring, next(FUZZ_SEQ), payload, gw.aad)
    result = ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id)
    assert result.status in ("accepted", "rejected"), result.detail
    if result.status == "rejected":
        assert result.reason == "unstorable" and reading_count(database) == before
        assert any(len(m) > 64 or len(u) > 32 or "\x00" in m + u for _, _, m, _, u in items)
        return
    with database.sessions() as session:
        stored = session.scalars(
            select(Reading.metric).where(
                Reading.receipt_id == select(func.max(Reading.receipt_id)).scalar_subquery()
            )
        ).all()
    assert sorted(stored) == sorted(m for _, _, m, _, _ in items)
