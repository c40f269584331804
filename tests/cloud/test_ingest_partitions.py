"""Retention by whole months: on PostgreSQL, ``ingest-purge`` drops the monthly partitions of
``readings`` whose every row has expired whatever its class, and deletes the rest row by
row; on SQLite it deletes everything row by row. Either way the same rows are left.

The partitions are made for months long past (``partitions.create_partitions`` at a past
``now``) before readings of those months arrive, through the real ingest pipeline.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL

from bankiot_core import cose
from bankiot_core.batch import CLOCK_UNIX_MS, BatchReading, encode_batch
from bankiot_core.presence import PresenceEvent
from cloud.db import Database
from cloud.ingest import partitions, service
from cloud.ingest.models import DeviceEvent, Reading
from cloud.ingest.pipeline import Ingest
from cloud.ingest.retention import CLASSES, RetentionPolicy
from provisioning.cli import main
from tests.cloud.ingest_support import SENSOR, WEARABLE, SimGateway, migrated, url_text

# The purge runs at NOW; the longest default retention (environment, 365 days) makes every
# row measured before 2024-03-15 12:00 expired whatever its class.
NOW = dt.datetime(2025, 3, 15, 12, 0, tzinfo=dt.UTC)


def at(*when: int) -> int:
    """Milliseconds since the epoch of a UTC time."""
    return int(dt.datetime(*when, tzinfo=dt.UTC).timestamp() * 1000)


# metric, value, unit, when: value numbers each row so what is left is easy to read.
ROWS = [
    ("temperature", 1, "°C", at(2024, 1, 10)),  # readings_2024_01: dropped whole
    ("heart_rate", 2, "bpm", at(2024, 1, 10)),  # readings_2024_01: dropped whole
    ("temperature", 3, "°C", at(2024, 2, 29, 23, 59)),  # readings_2024_02: dropped whole
    ("temperature", 4, "°C", at(2024, 3, 1)),  # readings_2024_03 (kept): expired row
    ("temperature", 5, "°C", at(2024, 3, 20)),  # readings_2024_03 (kept): kept
    ("heart_rate", 6, "bpm", at(2024, 4, 2)),  # readings_2024_04: health, 7 days: expired
    ("temperature", 7, "°C", at(2020, 6, 1)),  # no partition: the default one; expired
    ("heart_rate", 8, "bpm", at(2025, 3, 14)),  # readings_2025_03: kept
]
LEFT = [("temperature", 5.0), ("heart_rate", 8.0)]


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


@pytest.fixture
def postgres(migrated_postgres_url: URL) -> Iterator[Database]:
    with migrated(migrated_postgres_url) as db:
        yield db


def send(database: Database, records: list, received: dt.datetime = NOW) -> None:
    """``records`` sent by a gateway through the ingest pipeline, one batch each (a batch's
    times must lie within one plausible span)."""
    gw = SimGateway("gw-months")
    ingest = Ingest(database, gw.keys(), clock=lambda: received)
    for seq, record in enumerate(records):
        envelope = cose.seal_with(gw.ring, seq, encode_batch([record], CLOCK_UNIX_MS), gw.aad)
        assert ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id).status == "accepted"


def fill(database: Database) -> None:
    """Partitions for 2024-01..06 and NOW's months (PostgreSQL only), then ``ROWS`` and a
    presence event of 2024-01-10."""
    with database.engine.begin() as conn:
        partitions.create_partitions(conn, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), 5)
        partitions.create_partitions(conn, NOW)
    records: list[object] = [
        BatchReading(SENSOR if unit == "°C" else WEARABLE, when, metric, value, unit)
        for metric, value, unit, when in ROWS
    ]
    records.append(PresenceEvent("enter", WEARABLE, at(2024, 1, 10), -60, 70))
    send(database, records)


def readings_left(database: Database) -> list[tuple[str, float | None]]:
    with database.sessions() as session:
        rows = session.execute(
            select(Reading.metric, Reading.value_num).order_by(Reading.measured_at)
        ).all()
    return [(metric, value) for metric, value in rows]


def partitions_of_readings(database: Database) -> set[str]:
    with database.engine.connect() as conn:
        return set(
            conn.scalars(
                text(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'readings'::regclass"
                )
            )
        )


def purge(database: Database, *keep: str) -> dict:
    return json.loads(service.purge({"DATABASE_URL": database.url}, keep, True, NOW))


def test_purge_drops_whole_months_and_deletes_the_rest_row_by_row(database: Database) -> None:
    fill(database)
    postgres = database.engine.dialect.name == "postgresql"
    before = partitions_of_readings(database) if postgres else set()
    report = purge(database)
    assert readings_left(database) == LEFT  # the same rows on both databases
    left = partitions_of_readings(database) if postgres else set()
    deleted = {name: report[name]["deleted"] for name in CLASSES}
    if postgres:
        assert report["partitions_dropped"] == ["readings_2024_01", "readings_2024_02"]
        # rows in dropped months are not counted: only what went row by row
        assert deleted == {
            "health": 1,  # 6
            "presence": 1,  # the event: events are not partitioned
            "interaction": 0,
            "device": 0,
            "environment": 2,  # 4, and 7 in the default partition
        }
        prefix = "readings_partitions."
        assert before - left == {prefix + "readings_2024_01", prefix + "readings_2024_02"}
        assert {prefix + "readings_default", prefix + "readings_2024_03"} <= left
    else:
        assert report["partitions_dropped"] == []
        assert deleted == {
            "health": 2,  # 2, 6
            "presence": 1,
            "interaction": 0,
            "device": 0,
            "environment": 4,  # 1, 3, 4, 7
        }
    with database.sessions() as session:
        assert session.scalars(select(DeviceEvent)).all() == []

    again = purge(database)  # idempotent: nothing more to drop or delete
    assert again["partitions_dropped"] == []
    assert {name: again[name]["deleted"] for name in CLASSES} == dict.fromkeys(CLASSES, 0)
    assert readings_left(database) == LEFT
    assert (partitions_of_readings(database) if postgres else set()) == left


def test_a_months_upper_bound_must_be_at_or_before_now_minus_the_longest_retention(
    postgres: Database,
) -> None:
    fill(postgres)
    every = dict.fromkeys(CLASSES, "10d")
    months = ["readings_2024_%02d" % month for month in range(1, 7)]
    cases = [
        # (retention, now, dropped): 10 days before 2024-05-11 00:00 is 2024-05-01 00:00,
        # the upper bound of April: an hour earlier April stays, at that time it goes.
        (every, dt.datetime(2024, 5, 10, 23, tzinfo=dt.UTC), months[:3]),
        (every, dt.datetime(2024, 5, 11, tzinfo=dt.UTC), months[3:4]),
        # one long class keeps its months even if every other class is short
        ({**dict.fromkeys(CLASSES, "1h"), "device": "500d"}, NOW, []),
        # the shortest retention: May goes, never now's month (June) nor a later one
        (dict.fromkeys(CLASSES, "1h"), dt.datetime(2024, 6, 15, tzinfo=dt.UTC), months[4:5]),
    ]
    dropped = []
    for keep, now, _ in cases:
        with postgres.engine.begin() as conn:
            dropped.append(
                partitions.drop_expired_partitions(conn, now, RetentionPolicy.parse(keep))
            )
    assert dropped == [expected for _, _, expected in cases]
    names = {name.split(".")[1] for name in partitions_of_readings(postgres)}
    assert {"readings_2024_06", "readings_2025_03", "readings_default"} <= names
    assert not set(months[:5]) & names
    # what the dropped months held is gone; the rest waits for the row-by-row purge
    assert readings_left(postgres) == [("temperature", 7.0), ("heart_rate", 8.0)]


def test_a_busy_readings_table_is_left_to_the_row_by_row_purge(
    postgres: Database, caplog: pytest.LogCaptureFixture
) -> None:
    fill(postgres)
    policy = RetentionPolicy()
    reader = create_engine(url_text(postgres.url))
    try:
        with reader.connect() as other:
            other.begin()
            other.execute(text("SELECT count(*) FROM readings"))  # holds a lock until rollback
            with postgres.engine.begin() as conn, caplog.at_level(logging.WARNING):
                before = conn.scalar(text("SHOW lock_timeout"))
                short = dt.timedelta(milliseconds=100)
                got = partitions.drop_expired_partitions(conn, NOW, policy, short)
                assert got == []
                assert conn.scalar(text("SHOW lock_timeout")) == before  # restored
                assert conn.scalar(text("SELECT count(*) FROM readings")) == len(ROWS)
            assert "could not lock readings" in caplog.text
            other.rollback()
    finally:
        reader.dispose()
    assert "readings_partitions.readings_2024_01" in partitions_of_readings(postgres)
    with postgres.engine.begin() as conn:
        got = partitions.drop_expired_partitions(conn, NOW, policy)
    assert got == ["readings_2024_01", "readings_2024_02"]


def test_ingest_purge_reports_the_months_it_dropped(
    database_url: URL,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    now = dt.datetime.now(dt.UTC)  # the command purges at the real time
    recent = int((now - dt.timedelta(hours=1)).timestamp() * 1000)
    with migrated(database_url) as database:
        with database.engine.begin() as conn:
            partitions.create_partitions(conn, dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        old = BatchReading(SENSOR, at(2020, 1, 15), "temperature", 1, "°C")
        send(database, [old, BatchReading(SENSOR, recent, "temperature", 2, "°C")], now)
        postgres = database.engine.dialect.name == "postgresql"
    monkeypatch.setenv("BANKIOT_DATABASE_URL", url_text(database_url))
    args = ["cloud", "ingest-purge", "--data-dir", str(tmp_path)]
    assert main(args) == 0
    report = {
        line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()
    }
    if postgres:  # 2020-01 held the old reading; 2020-02 and 2020-03 expired empty
        assert report["months"] == (
            "3 dropped whole: readings_2020_01, readings_2020_02, readings_2020_03"
        )
        assert report["environment"].split()[:2] == ["0", "deleted"]
    else:
        assert "months" not in report
        assert report["environment"].split()[:2] == ["1", "deleted"]
    assert main([*args, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["partitions_dropped"] == []  # done already
    assert again["environment"] == {"deleted": 0, "kept_for": "365 days, 0:00:00"}
    with migrated(database_url) as database:
        assert readings_left(database) == [("temperature", 2.0)]
