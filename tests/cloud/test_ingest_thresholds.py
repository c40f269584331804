"""Threshold crossings at ingest: the setting, the decision (tables of cases, worked out by
hand from the rules in ``cloud.ingest.thresholds``' docstring), and the states kept across
batches through the real pipeline on SQLite and PostgreSQL.

Batches are built with the core's ``batch.encode_batch`` and sealed with ``cose``, so each
test states exactly what the gateway sent and when.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import URL

from bankiot_core import cose
from bankiot_core.batch import CLOCK_UNIX_MS, BatchReading, encode_batch
from cloud.config import ConfigError, load_config
from cloud.db import Database
from cloud.ingest.models import DeviceEvent, ThresholdState, utc
from cloud.ingest.pipeline import Envelope, Ingest
from cloud.ingest.thresholds import (
    State,
    Threshold,
    ThresholdError,
    Thresholds,
    evaluate,
    threshold_events,
)
from provisioning.cli import main
from tests.cloud.ingest_support import SENSOR, SimGateway, migrated, reading_count

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
START = NOW - dt.timedelta(hours=1)
SENSOR_ADDRESS = "A4:C1:38:00:00:01"


def at(second: int) -> dt.datetime:
    """``second`` seconds after ``START``."""
    return START + dt.timedelta(seconds=second)


def at_ms(second: int) -> int:
    return int(at(second).timestamp() * 1000)


# ---- the setting -------------------------------------------------------------------------------

PARSED = [
    # text, [(key, metric, direction, level, normal)]
    ("temperature>30:28", [("temperature>30", "temperature", ">", 30.0, 28.0)]),
    (
        " co2 > 1200 : 1000 , co2>2000",
        [("co2>1200", "co2", ">", 1200.0, 1000.0), ("co2>2000", "co2", ">", 2000.0, 2000.0)],
    ),
    ("battery<15:20", [("battery<15", "battery", "<", 15.0, 20.0)]),
    ("humidity<-5.5", [("humidity<-5.5", "humidity", "<", -5.5, -5.5)]),
    ("t_2>1e3:9.5e2", [("t_2>1000", "t_2", ">", 1000.0, 950.0)]),
    ("a>.25:-0.5", [("a>0.25", "a", ">", 0.25, -0.5)]),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_rules_are_read_from_the_setting(text: str, expected: list[tuple]) -> None:
    rules = Thresholds.parse(text).rules
    assert [(r.key, r.metric, r.direction, r.level, r.normal) for r in rules] == expected


REFUSED = [
    ("temperature>>30", "'temperature>>30' is not METRIC>LEVEL[:NORMAL]"),
    ("temperature=30", "is not METRIC>LEVEL"),
    ("temperature>30:32", "normal level must be at or below 30"),
    ("battery<15:10", "normal level must be at or above 15"),
    ("a>1, a>1.0", "a>1 is given twice"),
    ("a>1,", "an empty rule"),
    ("a>nan", "is not METRIC>LEVEL"),
    ("a>1e999", "levels must be finite"),
    ("x" * 65 + ">1", "at most 64 letters"),
    ("température>30", "is not METRIC>LEVEL"),
    (", ".join("m%d>1" % i for i in range(101)), "at most 100 thresholds"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_a_bad_rule_is_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(ThresholdError) as caught:
        Thresholds.parse(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("ingest_thresholds: ")
    assert isinstance(caught.value, ConfigError)


def test_the_setting_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "cloud.toml"
    file.write_text('ingest_thresholds = "co2>1200:1000"\n')
    from_file = Thresholds.from_config(load_config(file, environ={}))
    assert [rule.key for rule in from_file.rules] == ["co2>1200"]
    environ = {"BANKIOT_INGEST_THRESHOLDS": "temperature<5:7"}
    from_env = Thresholds.from_config(load_config(file, environ=environ))
    assert [rule.key for rule in from_env.rules] == ["temperature<5"]
    assert not Thresholds.from_config(load_config(None, environ={}))


def test_a_bad_setting_stops_an_ingest_service_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, free_udp_port: int
) -> None:
    file = tmp_path / "cloud.toml"
    file.write_text('ingest_thresholds = "temperature>30:35"\n')
    args = ["cloud", "ingest-coap", "--config", str(file), "--data-dir", str(tmp_path)]
    assert main([*args, "--coap", "127.0.0.1:%d" % free_udp_port]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "Error: ingest_thresholds: threshold temperature>30:35: "
        "the normal level must be at or below 30"
    ]


# ---- the decision ------------------------------------------------------------------------------

ABOVE = Threshold("temperature", ">", 30.0, 28.0)
BELOW = Threshold("battery", "<", 15.0, 20.0)
NO_GAP = Threshold("co2", ">", 10.0, 10.0)
C, N = True, False

EVALUATED = [
    # (case, rule, start, [(second, value)], [(second, value, crossed)], final crossed)
    ("at the level is not beyond", ABOVE, State(), [(1, 30.0)], [], N),
    ("beyond crosses once", ABOVE, State(), [(1, 30.5), (2, 31), (3, 40)], [(1, 30.5, C)], C),
    (
        "hovering in the gap stays crossed",
        ABOVE,
        State(),
        [(1, 31), (2, 29), (3, 30.5), (4, 28.01)],
        [(1, 31, C)],
        C,
    ),
    (
        "at the normal level is normal again",
        ABOVE,
        State(),
        [(1, 31), (2, 28), (3, 29.9), (4, 30.1)],
        [(1, 31, C), (2, 28, N), (4, 30.1, C)],
        C,
    ),
    (
        "below: crossed under the level, normal at or over the normal level",
        BELOW,
        State(),
        [(1, 16), (2, 15), (3, 14), (4, 19), (5, 20)],
        [(3, 14, C), (5, 20, N)],
        N,
    ),
    (
        "no gap: the level is the normal level",
        NO_GAP,
        State(),
        [(1, 11), (2, 10), (3, 10.5)],
        [(1, 11, C), (2, 10, N), (3, 10.5, C)],
        C,
    ),
    (
        "from crossed only a recovery changes it",
        ABOVE,
        State(True, at(0), 33.0, at(0)),
        [(1, 35), (2, 27)],
        [(2, 27, N)],
        N,
    ),
    (
        "older than the state's newest reading: ignored; the same time: taken",
        ABOVE,
        State(False, None, None, at(10)),
        [(5, 40), (10, 41)],
        [(10, 41, C)],
        C,
    ),
    (
        "an older reading within the run is ignored too",
        ABOVE,
        State(),
        [(5, 31), (3, 20), (6, 20)],
        [(5, 31, C), (6, 20, N)],
        N,
    ),
]


@pytest.mark.parametrize(
    ("rule", "start", "readings", "changes", "crossed"),
    [case[1:] for case in EVALUATED],
    ids=[case[0] for case in EVALUATED],
)
def test_evaluate(
    rule: Threshold,
    start: State,
    readings: list[tuple[int, float]],
    changes: list[tuple[int, float, bool]],
    crossed: bool,
) -> None:
    state, got = evaluate(rule, start, [(at(s), float(v)) for s, v in readings])
    assert [(c.at, c.value, c.crossed) for c in got] == [(at(s), v, x) for s, v, x in changes]
    assert state.crossed is crossed
    taken = [s for s, _v in readings if start.last_at is None or at(s) >= start.last_at]
    assert state.last_at == at(max(taken))
    if changes:  # the state remembers the reading that last changed it
        assert (state.since, state.value) == (at(changes[-1][0]), changes[-1][1])
    else:
        assert (state.since, state.value) == (start.since, start.value)


def reading_row(device: str, second: int, metric: str, value: Any, kind: str) -> dict:
    """A reading row as ``records`` makes it (the fields thresholds read)."""
    return {
        "gateway": "gw",
        "device": device,
        "metric": metric,
        "measured_at": at(second),
        "time_estimated": False,
        "received_at": NOW,
        "data_class": "environment",
        "value_kind": kind,
        "value_num": value if kind in ("int", "float", "bool") else None,
    }


def test_several_rules_several_devices_and_only_numbers() -> None:
    rules = Thresholds.parse("temperature>30:28, temperature>40:38")
    rows = [
        reading_row("A", 1, "temperature", 41.0, "float"),  # crosses both
        reading_row("B", 1, "temperature", 31, "int"),  # crosses the first
        reading_row("A", 2, "temperature", 1.0, "bool"),  # a boolean: not compared
        reading_row("A", 3, "temperature", math.nan, "float"),  # NaN: not compared
        reading_row("A", 4, "temperature", None, "text"),
        reading_row("A", 5, "humidity", 99.0, "float"),  # no rule
        reading_row("A", 6, "temperature", 37.5, "float"),  # back under 38 only
    ]
    states = {("B", "temperature>30"): State(False, None, None, at(0))}
    new, events = threshold_events(rules, states, rows)
    assert [(e["device"], e["occurred_at"], e["data"]) for e in events] == [
        ("A", at(1), _data(30, 28, ">", 41.0, "crossed")),
        ("A", at(1), _data(40, 38, ">", 41.0, "crossed")),
        ("B", at(1), _data(30, 28, ">", 31.0, "crossed")),
        ("A", at(6), _data(40, 38, ">", 37.5, "normal")),
    ]
    assert {e["kind"] for e in events} == {"threshold"}
    assert new == {
        ("A", "temperature>30"): State(True, at(1), 41.0, at(6)),
        ("A", "temperature>40"): State(False, at(6), 37.5, at(6)),
        ("B", "temperature>30"): State(True, at(1), 31.0, at(1)),
        ("B", "temperature>40"): State(False, None, None, at(1)),
    }


def _data(level: float, normal: float, direction: str, value: float, state: str) -> dict:
    return {
        "metric": "temperature",
        "value": value,
        "level": float(level),
        "normal": float(normal),
        "direction": direction,
        "state": state,
    }


# ---- through the pipeline ----------------------------------------------------------------------


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def sealed(gw: SimGateway, seq: int, records: list) -> bytes:
    return cose.seal_with(gw.ring, seq, encode_batch(records, CLOCK_UNIX_MS), gw.aad)


def send(ingest: Ingest, gw: SimGateway, seq: int, records: list) -> str:
    envelope = sealed(gw, seq, records)
    return ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id).status


def temps(*pairs: tuple[int, float]) -> list:
    return [BatchReading(SENSOR, at_ms(s), "temperature", v, "°C") for s, v in pairs]


def make(database: Database, rules: str, gateway: str = "gw-th") -> tuple[Ingest, SimGateway]:
    gw = SimGateway(gateway)
    ingest = Ingest(database, gw.keys(), clock=lambda: NOW, thresholds=Thresholds.parse(rules))
    return ingest, gw


def events_of(database: Database, device: str = SENSOR_ADDRESS) -> list[tuple]:
    """The device's events in the order consumers read them: (kind, time, data)."""
    with database.sessions() as session:
        rows = session.execute(
            select(DeviceEvent.kind, DeviceEvent.occurred_at, DeviceEvent.data)
            .where(DeviceEvent.device == device)
            .order_by(DeviceEvent.id)
        ).all()
    return [(kind, utc(when), data) for kind, when, data in rows]


def crossings(database: Database) -> list[tuple[dt.datetime, str, float, str]]:
    """The threshold events, in order: (time, rule key, value, state)."""
    return [
        (when, "%s%s%g" % (d["metric"], d["direction"], d["level"]), d["value"], d["state"])
        for kind, when, d in events_of(database)
        if kind == "threshold"
    ]


def states_of(database: Database) -> dict[str, tuple]:
    with database.sessions() as session:
        rows = session.scalars(select(ThresholdState)).all()
    return {
        r.rule: (r.device, r.metric, r.crossed, utc(r.since) if r.since else None, r.value)
        for r in rows
    }


def test_crossings_across_batches_are_events_in_order(database: Database) -> None:
    ingest, gw = make(database, "temperature>30:28, temperature>40:38")
    first = [*temps((1, 29.0), (2, 31.0)), BatchReading(SENSOR, at_ms(3), "button", 1, "event")]
    assert send(ingest, gw, 0, first) == "accepted"
    assert send(ingest, gw, 1, temps((4, 41.0), (5, 37.0), (6, 27.5))) == "accepted"
    assert events_of(database) == [
        ("threshold", at(2), _data(30, 28, ">", 31.0, "crossed")),
        ("button", at(3), {"value": 1}),
        ("threshold", at(4), _data(40, 38, ">", 41.0, "crossed")),
        ("threshold", at(5), _data(40, 38, ">", 37.0, "normal")),
        ("threshold", at(6), _data(30, 28, ">", 27.5, "normal")),
    ]
    assert states_of(database) == {
        "temperature>30": (SENSOR_ADDRESS, "temperature", False, at(6), 27.5),
        "temperature>40": (SENSOR_ADDRESS, "temperature", False, at(5), 37.0),
    }
    with database.sessions() as session:
        classes = session.scalars(
            select(DeviceEvent.data_class).where(DeviceEvent.kind == "threshold")
        ).all()
    assert set(classes) == {"environment"}  # the reading's class


def test_a_late_older_batch_does_not_flip_the_state(database: Database) -> None:
    ingest, gw = make(database, "temperature>30:28")
    older, newer = sealed(gw, 0, temps((10, 35.0))), sealed(gw, 1, temps((20, 25.0)))
    for envelope in (newer, older):  # the older one arrives last
        assert ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id).status == "accepted"
    assert crossings(database) == []
    assert reading_count(database) == 2  # still stored as a reading
    assert send(ingest, gw, 2, temps((30, 35.0))) == "accepted"
    assert crossings(database) == [(at(30), "temperature>30", 35.0, "crossed")]


def test_a_redelivered_batch_adds_no_crossing(database: Database) -> None:
    ingest, gw = make(database, "temperature>30:28")
    envelope = sealed(gw, 0, temps((1, 31.0), (2, 27.0)))
    results = [ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id) for _ in range(2)]
    assert [r.status for r in results] == ["accepted", "duplicate"]
    assert send(ingest, gw, 1, temps((3, 33.0))) == "accepted"
    assert ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id).status == "duplicate"
    assert crossings(database) == [
        (at(1), "temperature>30", 31.0, "crossed"),
        (at(2), "temperature>30", 27.0, "normal"),
        (at(3), "temperature>30", 33.0, "crossed"),
    ]


def test_a_group_commit_decides_in_sequence_order_and_skips_its_duplicates(
    database: Database,
) -> None:
    ingest, gw = make(database, "temperature>30:28")
    cross, recover = sealed(gw, 0, temps((1, 31.0))), sealed(gw, 1, temps((2, 20.0)))
    group = [Envelope(e, gw.aad, "mqtt", gw.gateway_id) for e in (recover, cross, cross)]
    assert [r.status for r in ingest.handle_many(group)] == ["accepted", "accepted", "duplicate"]
    assert crossings(database) == [
        (at(1), "temperature>30", 31.0, "crossed"),
        (at(2), "temperature>30", 20.0, "normal"),
    ]
    assert states_of(database)["temperature>30"][2:] == (False, at(2), 20.0)


def test_only_metrics_with_thresholds_cost_a_statement(database: Database) -> None:
    ingest, gw = make(database, "co2>1200:1000")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        assert send(ingest, gw, 0, temps((1, 99.0))) == "accepted"
        assert not any("threshold_states" in s for s in statements)
        co2 = [BatchReading(SENSOR, at_ms(2), "co2", 1300, "ppm")]
        assert send(ingest, gw, 1, co2) == "accepted"
        assert sum("threshold_states" in s for s in statements) == 2  # lock, then save
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
    assert crossings(database) == [(at(2), "co2>1200", 1300.0, "crossed")]


def test_two_workers_on_one_sensor_never_decide_a_crossing_twice(database: Database) -> None:
    """Two gateways hear one sensor and two workers commit their batches at once: each
    crossing is decided once, from the state the other left (rows locked)."""
    rules = Thresholds.parse("temperature>30:28")
    gateways = [SimGateway("gw-x"), SimGateway("gw-y")]
    keys = gateways[0].keys()
    gateways[1].keys(keys)
    workers = [Ingest(database, keys, clock=lambda: NOW, thresholds=rules) for _ in gateways]
    rounds = 80
    failures: list[str] = []

    def run(worker: Ingest, gw: SimGateway, offset: int) -> None:
        for i in range(rounds):
            second = 2 * i + offset  # the two gateways' readings interleave in time
            value = 35.0 if (second // 3) % 2 == 0 else 25.0
            status = "unsent"
            for _attempt in range(50):  # "unavailable" (SQLite busy): the gateway resends
                status = send(worker, gw, i, temps((second, value)))
                if status != "unavailable":
                    break
            if status != "accepted":
                failures.append(status)

    threads = [
        threading.Thread(target=run, args=(w, g, n))
        for n, (w, g) in enumerate(zip(workers, gateways, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    got = crossings(database)
    assert got and got[0][3] == "crossed"
    assert all(a[3] != b[3] for a, b in itertools.pairwise(got))  # alternate
    assert all(a[0] < b[0] for a, b in itertools.pairwise(got))  # forward in time
    for _when, _key, value, state in got:  # each one agrees with the rule
        assert (value > 30) if state == "crossed" else (value <= 28)
    assert states_of(database)["temperature>30"][2] == (got[-1][3] == "crossed")
