"""The gateway's own records in ingest: command results and what the gateway runs.

``batch_rows`` is checked on batches built with the core's ``encode_batch`` and read back with
``decode_batch`` (both checked against cbor2 in tests/core/test_batch.py); the rows are then
stored through the real pipeline on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from bankiot_core import cose
from bankiot_core.batch import (
    CLOCK_TICKS,
    CLOCK_UNIX_MS,
    BatchReading,
    CommandResult,
    Health,
    Running,
    decode_batch,
    encode_batch,
)
from cloud.db import Database
from cloud.ingest.models import DeviceEvent, utc
from cloud.ingest.pipeline import Ingest
from cloud.ingest.records import batch_rows
from tests.cloud.ingest_support import SENSOR, SimGateway, migrated

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
MAX_ID = 2**40 - 1


def at(ms_before_now: int) -> dt.datetime:
    return NOW - dt.timedelta(milliseconds=ms_before_now)


def rows_of(records: list, clock: int = CLOCK_UNIX_MS):
    return batch_rows(decode_batch(encode_batch(records, clock)), "gw-rr", NOW)


def test_results_and_running_become_rows_and_events() -> None:
    rows = rows_of(
        [
            Running(NOW_MS - 5000, "fw 1.4.2", None),
            CommandResult(NOW_MS - 4000, 41, 3, "downloading"),
            BatchReading(SENSOR, NOW_MS - 3500, "battery", 90, "%"),
            Health(NOW_MS - 3000, {"frames_in": 3}),
            CommandResult(NOW_MS - 2000, MAX_ID, 2, "unknown command \x00x"),
            CommandResult(NOW_MS - 1000, 41, 0, ""),
            Running(NOW_MS - 1000, "fw 1.5.0", 8),
            CommandResult(NOW_MS, 7, 1, "flash write failed"),
        ]
    )
    assert rows.results == [
        {"gateway": "gw-rr", "at": at(4000), "command_id": 41, "status": "accepted",
         "detail": "downloading"},
        # NUL, which PostgreSQL text and JSON cannot hold, is replaced
        {"gateway": "gw-rr", "at": at(2000), "command_id": MAX_ID, "status": "refused",
         "detail": "unknown command \ufffdx"},
        {"gateway": "gw-rr", "at": at(1000), "command_id": 41, "status": "done", "detail": ""},
        {"gateway": "gw-rr", "at": at(0), "command_id": 7, "status": "failed",
         "detail": "flash write failed"},
    ]  # fmt: skip
    assert rows.running == {"software": "fw 1.5.0", "config_revision": 8, "at": at(1000)}
    events = [(e["kind"], e["device"], e["occurred_at"], e["data"]) for e in rows.events]
    assert events == [
        ("running", "gw-rr", at(5000), {"software": "fw 1.4.2", "config_revision": None}),
        ("command_result", "gw-rr", at(4000),
         {"command_id": 41, "status": "accepted", "detail": "downloading"}),
        ("health", "gw-rr", at(3000), {"counters": {"frames_in": 3}}),
        ("command_result", "gw-rr", at(2000),
         {"command_id": MAX_ID, "status": "refused", "detail": "unknown command \ufffdx"}),
        ("command_result", "gw-rr", at(1000), {"command_id": 41, "status": "done", "detail": ""}),
        ("running", "gw-rr", at(1000), {"software": "fw 1.5.0", "config_revision": 8}),
        ("command_result", "gw-rr", at(0),
         {"command_id": 7, "status": "failed", "detail": "flash write failed"}),
    ]  # fmt: skip
    assert {e["data_class"] for e in rows.events} == {"device"}
    assert not any(e["time_estimated"] for e in rows.events)
    assert len(rows.readings) == 1 and len(rows.health) == 1


def test_without_gateway_records_there_are_no_results_and_no_running() -> None:
    rows = rows_of([BatchReading(SENSOR, NOW_MS, "battery", 90, "%")])
    assert rows.results == [] and rows.running is None


def test_tick_times_of_gateway_records_count_back_from_arrival() -> None:
    rows = rows_of(
        [Running(1000, "fw 1", 3), CommandResult(2500, 9, 0, "ok"), Running(1200, "fw 2", 4)],
        CLOCK_TICKS,
    )
    # The newest record (2500) arrived now; the running records 1500 and 1300 ms before.
    assert rows.results[0]["at"] == NOW
    assert rows.running == {"software": "fw 2", "config_revision": 4, "at": at(1300)}
    assert all(e["time_estimated"] for e in rows.events)


# ---- stored through the pipeline, on SQLite and PostgreSQL --------------------------------


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def test_gateway_records_are_stored_as_events_once(database: Database) -> None:
    gw = SimGateway("gw-rr")
    ingest = Ingest(database, gw.keys(), clock=lambda: NOW)
    records = [
        Running(NOW_MS - 2000, "fw 1.5.0", 8),
        CommandResult(NOW_MS - 1000, 41, 0, "rebooted \x00"),
    ]
    envelope = cose.seal_with(gw.ring, 0, encode_batch(records, CLOCK_UNIX_MS), gw.aad)
    assert ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id).status == "accepted"
    assert ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id).status == "duplicate"
    with database.sessions() as session:
        stored = session.scalars(select(DeviceEvent).order_by(DeviceEvent.id)).all()
        got = [(e.kind, e.device, utc(e.occurred_at), e.data, e.data_class) for e in stored]
    assert got == [
        ("running", "gw-rr", at(2000), {"software": "fw 1.5.0", "config_revision": 8}, "device"),
        ("command_result", "gw-rr", at(1000),
         {"command_id": 41, "status": "done", "detail": "rebooted \ufffd"}, "device"),
    ]  # fmt: skip
