"""Kiosk events in the cloud: what a sealed batch of kiosk records becomes (a ``kiosk_events``
row and a ``device_events`` row each, exactly once), how ``GET /api/fleet/kiosk-events``
lists them (filters, pages, branch scoping, wearables shown to branch managers only), and
the retention purge. Batches are built with the core (``encode_batch`` with ``KioskEvent``
records) and sealed like a gateway seals them; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import cbor2
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from bankiot_core import cose
from bankiot_core.batch import (
    CLOCK_TICKS,
    CLOCK_UNIX_MS,
    KIOSK_CHECKIN,
    KIOSK_REQUEST,
    KIOSK_TICKET,
    BatchReading,
    KioskEvent,
    encode_batch,
)
from cloud.db import Database
from cloud.ingest import service
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import BatchReceipt, DeviceEvent, Reading, utc
from cloud.ingest.pipeline import Ingest
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers
from tests.cloud.ingest_support import SENSOR, WEARABLE, SimGateway, url_text
from tests.cloud.people_actions import body

URL_PATH = "/api/fleet/kiosk-events"
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
AT_MS = NOW_MS - 60_000  # a minute before the cloud received the batch
AT = NOW - dt.timedelta(minutes=1)
WEARABLE_TEXT = "C0:FF:EE:00:00:02"

# A morning at kiosk-n1: a customer checks in with their wearable, takes a ticket and asks
# for advice; a walk-in takes a ticket; a sensor reading travels in the same batch.
MORNING = [
    KioskEvent(AT_MS, KIOSK_CHECKIN, 1, WEARABLE, ""),
    KioskEvent(AT_MS + 1000, KIOSK_TICKET, 2, WEARABLE, "A042"),
    BatchReading(SENSOR, AT_MS + 1500, "temperature", 21.5, "°C"),
    KioskEvent(AT_MS + 2000, KIOSK_TICKET, 3, None, "A043"),
    KioskEvent(AT_MS + 3000, KIOSK_REQUEST, 4, WEARABLE, "loan advice"),
]


@pytest.fixture
def fleet(cloud_app: APIFlask) -> dict[str, int]:
    """Branches north and south, each with a kiosk; ids by code and uid."""
    ids = add_branches(cloud_app, "north", "south")
    kiosks = add_devices(
        cloud_app,
        {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": ids["north"], "status": "active"},
        {"uid": "kiosk-s1", "kind": "kiosk", "branch_id": ids["south"], "status": "active"},
    )
    return {**ids, "kiosk-n1": kiosks[0], "kiosk-s1": kiosks[1]}


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    return Callers(cloud_app)


def database_of(app: APIFlask) -> Database:
    return app.extensions["bankiot.db"]


def ingest_for(app: APIFlask, *gateways: SimGateway) -> Ingest:
    keys = None
    for gateway in gateways:
        keys = gateway.keys(keys)
    assert keys is not None
    return Ingest(database_of(app), keys, clock=lambda: NOW)


def send(ingest: Ingest, gateway: SimGateway, seq: int, payload: bytes) -> Any:
    envelope = cose.seal_with(gateway.ring, seq, payload, gateway.aad)
    return ingest.handle(envelope, gateway.aad, "mqtt", gateway.gateway_id)


def kiosk_rows(app: APIFlask) -> list[KioskEventRow]:
    with database_of(app).sessions() as session:
        rows = session.scalars(select(KioskEventRow).order_by(KioskEventRow.id)).all()
        session.expunge_all()
        return list(rows)


def kiosk_device_events(app: APIFlask) -> list[tuple[str, str, dict, str]]:
    with database_of(app).sessions() as session:
        rows = session.execute(
            select(DeviceEvent.device, DeviceEvent.kind, DeviceEvent.data, DeviceEvent.data_class)
            .where(DeviceEvent.kind.like("kiosk_%"))
            .order_by(DeviceEvent.id)
        ).all()
    return [(row.device, row.kind, row.data, row.data_class) for row in rows]


def count(app: APIFlask, model: Any) -> int:
    with database_of(app).sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# ---- ingest ----------------------------------------------------------------------------


def test_a_batch_of_kiosk_records_is_stored_once(cloud_app: APIFlask, fleet) -> None:
    gateway = SimGateway("kiosk-n1")
    ingest = ingest_for(cloud_app, gateway)
    payload = encode_batch(MORNING, CLOCK_UNIX_MS)
    assert send(ingest, gateway, 0, payload).status == "accepted"

    rows = kiosk_rows(cloud_app)
    got = [
        (
            r.gateway,
            r.device_id,
            r.branch_id,
            r.event_id,
            r.kind,
            r.wearable,
            r.detail,
            utc(r.occurred_at),
            r.time_estimated,
            utc(r.received_at),
            r.data_class,
        )
        for r in rows
    ]
    n1, north = fleet["kiosk-n1"], fleet["north"]
    second = dt.timedelta(seconds=1)
    assert got == [
        ("kiosk-n1", n1, north, 1, "checkin", WEARABLE_TEXT, "", AT, False, NOW, "presence"),
        (
            "kiosk-n1",
            n1,
            north,
            2,
            "ticket",
            WEARABLE_TEXT,
            "A042",
            AT + second,
            False,
            NOW,
            "presence",
        ),
        (
            "kiosk-n1",
            n1,
            north,
            3,
            "ticket",
            None,
            "A043",
            AT + 2 * second,
            False,
            NOW,
            "interaction",
        ),
        (
            "kiosk-n1",
            n1,
            north,
            4,
            "request",
            WEARABLE_TEXT,
            "loan advice",
            AT + 3 * second,
            False,
            NOW,
            "presence",
        ),
    ]
    assert kiosk_device_events(cloud_app) == [
        (
            "kiosk-n1",
            "kiosk_checkin",
            {"event_id": 1, "wearable": WEARABLE_TEXT, "detail": ""},
            "presence",
        ),
        (
            "kiosk-n1",
            "kiosk_ticket",
            {"event_id": 2, "wearable": WEARABLE_TEXT, "detail": "A042"},
            "presence",
        ),
        (
            "kiosk-n1",
            "kiosk_ticket",
            {"event_id": 3, "wearable": None, "detail": "A043"},
            "interaction",
        ),
        (
            "kiosk-n1",
            "kiosk_request",
            {"event_id": 4, "wearable": WEARABLE_TEXT, "detail": "loan advice"},
            "presence",
        ),
    ]
    assert count(cloud_app, Reading) == 1

    # The gateway did not hear the acknowledgement and sends the batch again: a duplicate.
    assert send(ingest, gateway, 0, payload).status == "duplicate"
    assert len(kiosk_rows(cloud_app)) == 4
    assert len(kiosk_device_events(cloud_app)) == 4
    assert count(cloud_app, BatchReceipt) == 1


def test_tick_clock_times_are_estimated_like_other_records(cloud_app: APIFlask, fleet) -> None:
    gateway = SimGateway("kiosk-n1")
    ingest = ingest_for(cloud_app, gateway)
    records = [
        KioskEvent(5_000, KIOSK_CHECKIN, 9, WEARABLE, ""),
        KioskEvent(7_500, KIOSK_TICKET, 10, WEARABLE, "B001"),
    ]
    assert send(ingest, gateway, 0, encode_batch(records, CLOCK_TICKS)).status == "accepted"
    times = [(utc(r.occurred_at), r.time_estimated) for r in kiosk_rows(cloud_app)]
    # The newest record happened when the batch arrived; the other 2.5 s before.
    assert times == [(NOW - dt.timedelta(milliseconds=2500), True), (NOW, True)]


def test_an_event_in_a_second_batch_is_not_stored_twice(cloud_app: APIFlask, fleet) -> None:
    gateway = SimGateway("kiosk-n1")
    ingest = ingest_for(cloud_app, gateway)
    first = [KioskEvent(AT_MS, KIOSK_CHECKIN, 1, WEARABLE, "")]
    again = [*first, KioskEvent(AT_MS + 10, KIOSK_TICKET, 2, None, "A044")]
    assert send(ingest, gateway, 0, encode_batch(first, CLOCK_UNIX_MS)).status == "accepted"
    # A new sequence number: not a duplicate batch, yet event 1 is there already.
    assert send(ingest, gateway, 1, encode_batch(again, CLOCK_UNIX_MS)).status == "accepted"
    assert [(r.event_id, r.kind) for r in kiosk_rows(cloud_app)] == [(1, "checkin"), (2, "ticket")]
    assert [kind for _, kind, _, _ in kiosk_device_events(cloud_app)] == [
        "kiosk_checkin",
        "kiosk_ticket",
    ]
    with database_of(cloud_app).sessions() as session:
        counts = session.execute(
            select(BatchReceipt.seq, BatchReceipt.events).order_by(BatchReceipt.seq)
        ).all()
    assert [tuple(row) for row in counts] == [(0, 1), (1, 1)]


def test_an_event_number_repeated_in_one_batch_counts_once(cloud_app: APIFlask, fleet) -> None:
    gateway = SimGateway("kiosk-n1")
    ingest = ingest_for(cloud_app, gateway)
    records = [
        KioskEvent(AT_MS, KIOSK_TICKET, 5, None, "A050"),
        KioskEvent(AT_MS + 10, KIOSK_TICKET, 5, None, "A051"),
    ]
    assert send(ingest, gateway, 0, encode_batch(records, CLOCK_UNIX_MS)).status == "accepted"
    assert [(r.event_id, r.detail) for r in kiosk_rows(cloud_app)] == [(5, "A050")]
    assert [data["detail"] for _, _, data, _ in kiosk_device_events(cloud_app)] == ["A050"]


def test_the_database_refuses_a_second_copy_of_an_event(cloud_app: APIFlask, fleet) -> None:
    gateway = SimGateway("kiosk-n1")
    ingest = ingest_for(cloud_app, gateway)
    records = [KioskEvent(AT_MS, KIOSK_CHECKIN, 1, WEARABLE, "")]
    assert send(ingest, gateway, 0, encode_batch(records, CLOCK_UNIX_MS)).status == "accepted"
    (row,) = kiosk_rows(cloud_app)
    copy = {
        column.name: getattr(row, column.name)
        for column in KioskEventRow.__table__.columns
        if column.name != "id"
    }
    with database_of(cloud_app).sessions() as session, pytest.raises(IntegrityError):
        session.execute(insert(KioskEventRow), [copy])
        session.commit()


def test_a_gateway_outside_the_inventory_keeps_its_events(cloud_app: APIFlask) -> None:
    gateway = SimGateway("kiosk-unknown")
    ingest = ingest_for(cloud_app, gateway)
    records = [KioskEvent(AT_MS, KIOSK_TICKET, 1, None, "C007")]
    assert send(ingest, gateway, 0, encode_batch(records, CLOCK_UNIX_MS)).status == "accepted"
    (row,) = kiosk_rows(cloud_app)
    assert (row.gateway, row.device_id, row.branch_id) == ("kiosk-unknown", None, None)


def _raw_batch(kiosk_record: list) -> bytes:
    """A batch written with cbor2 (not the core's encoder, which refuses bad records): a
    sensor reading, then the gateway's group with ``kiosk_record``."""
    base = AT_MS // 1000
    return cbor2.dumps(
        [1, CLOCK_UNIX_MS, base, [SENSOR, [0, 2, 80]], [None, [0, -5, *kiosk_record]]]
    )


@pytest.mark.parametrize(
    ("kiosk_record", "status"),
    [
        ([KIOSK_TICKET, 7, None, "A001"], "accepted"),  # the control: a good record
        ([7, 7, None, "A001"], "rejected"),  # no such kind
        ([-1, 7, None, "A001"], "rejected"),
        ([KIOSK_TICKET, 2**40, None, "A001"], "rejected"),  # id beyond 2**40-1
        ([KIOSK_CHECKIN, 7, WEARABLE[:5], ""], "rejected"),  # a 5-byte wearable
        ([KIOSK_TICKET, 7, None, "x" * 65], "rejected"),  # detail over 64 bytes
        ([KIOSK_TICKET, 7, None], "rejected"),  # a field short
    ],
)
def test_a_malformed_kiosk_record_rejects_the_whole_batch(
    cloud_app: APIFlask, kiosk_record: list, status: str
) -> None:
    gateway = SimGateway("kiosk-n1")
    ingest = ingest_for(cloud_app, gateway)
    result = send(ingest, gateway, 0, _raw_batch(kiosk_record))
    assert result.status == status
    stored = 1 if status == "accepted" else 0
    if status == "rejected":
        assert result.reason == "undecodable" and not result.acknowledged
    # Nothing of a refused batch is stored, not even its good reading.
    assert count(cloud_app, BatchReceipt) == stored
    assert count(cloud_app, Reading) == stored
    assert count(cloud_app, KioskEventRow) == stored
    assert count(cloud_app, DeviceEvent) == stored


# ---- the API ---------------------------------------------------------------------------


@pytest.fixture
def morning(cloud_app: APIFlask, fleet: dict[str, int]) -> dict[str, int]:
    """MORNING at kiosk-n1 (north); a walk-in's ticket at kiosk-s1 (south)."""
    north, south = SimGateway("kiosk-n1"), SimGateway("kiosk-s1")
    ingest = ingest_for(cloud_app, north, south)
    assert send(ingest, north, 0, encode_batch(MORNING, CLOCK_UNIX_MS)).status == "accepted"
    south_ticket = [KioskEvent(AT_MS + 500, KIOSK_TICKET, 1, None, "S001")]
    assert send(ingest, south, 0, encode_batch(south_ticket, CLOCK_UNIX_MS)).status == "accepted"
    return fleet


def listing(client: FlaskClient, **params: Any) -> dict:
    response = client.get(URL_PATH, query_string=params)
    assert response.status_code == 200, response.json
    return body(response)


def events_of(client: FlaskClient, **params: Any) -> list[tuple[str, int]]:
    """(gateway, event id) of every page, following ``next``."""
    seen: list[tuple[str, int]] = []
    after = None
    while True:
        page = listing(client, **params, **({"after": after} if after is not None else {}))
        seen += [(event["gateway"], event["event_id"]) for event in page["events"]]
        after = page["next"]
        if after is None:
            return seen


def test_items_say_what_happened_where(client, callers, morning) -> None:
    callers.as_manager(morning["north"])
    item = listing(client, limit=1)["events"][0]
    assert item == {
        "id": item["id"],
        "branch_id": morning["north"],
        "branch_code": "north",
        "device_id": morning["kiosk-n1"],
        "gateway": "kiosk-n1",
        "event_id": 1,
        "kind": "checkin",
        "with_wearable": True,
        "wearable": WEARABLE_TEXT,
        "detail": "",
        "occurred_at": AT.isoformat(),
        "time_estimated": False,
        "received_at": NOW.isoformat(),
    }


def test_filters_and_pages(client, callers, morning) -> None:
    callers.as_operations()
    north = [("kiosk-n1", n) for n in (1, 2, 3, 4)]
    everything = [*north, ("kiosk-s1", 1)]  # in the order they were stored
    assert events_of(client) == everything
    assert events_of(client, limit=1) == everything
    assert events_of(client, branch=morning["north"]) == north
    assert events_of(client, device=morning["kiosk-s1"]) == [("kiosk-s1", 1)]
    assert events_of(client, kind="ticket") == [north[1], north[2], ("kiosk-s1", 1)]
    assert events_of(client, kind="request", branch=morning["north"]) == [("kiosk-n1", 4)]
    since = (AT + dt.timedelta(seconds=2)).isoformat()
    assert events_of(client, since=since, branch=morning["north"]) == north[2:]
    # The same moment written with an offset of +01:00.
    local = (AT + dt.timedelta(seconds=2)).astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert events_of(client, since=local.isoformat(), branch=morning["north"]) == north[2:]
    first = listing(client, limit=2)
    assert len(first["events"]) == 2 and first["next"] == first["events"][-1]["id"]
    response = client.get(URL_PATH, query_string={"kind": "loan"})
    assert response.status_code == 422


def test_another_branchs_staff_see_nothing_of_it(client, callers, morning) -> None:
    callers.as_manager(morning["south"], name="sam")
    assert events_of(client) == [("kiosk-s1", 1)]
    # Naming the other branch or its kiosk is "not found", as if it did not exist.
    assert client.get(URL_PATH, query_string={"branch": morning["north"]}).status_code == 404
    assert client.get(URL_PATH, query_string={"device": morning["kiosk-n1"]}).status_code == 404
    callers.as_technician(morning["south"])
    assert events_of(client) == [("kiosk-s1", 1)]
    assert client.get(URL_PATH, query_string={"branch": morning["north"]}).status_code == 404
    callers.nobody()
    assert client.get(URL_PATH).status_code == 401


def test_wearables_are_shown_to_branch_managers_only(client, callers, morning) -> None:
    def wearables() -> list[tuple[bool, str | None]]:
        page = listing(client, branch=morning["north"])
        return [(event["with_wearable"], event["wearable"]) for event in page["events"]]

    callers.as_manager(morning["north"])
    assert wearables() == [
        (True, WEARABLE_TEXT),
        (True, WEARABLE_TEXT),
        (False, None),
        (True, WEARABLE_TEXT),
    ]
    hidden = [(True, None), (True, None), (False, None), (True, None)]
    callers.as_operations()
    assert wearables() == hidden
    callers.as_technician(morning["north"])
    assert wearables() == hidden


def test_the_api_is_documented(client) -> None:
    spec = client.get("/openapi.json").json
    operation = spec["paths"][URL_PATH]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "branch",
        "device",
        "kind",
        "since",
        "after",
        "limit",
    }


# ---- retention -------------------------------------------------------------------------


def test_the_purge_removes_expired_kiosk_events(
    cloud_app: APIFlask, database_url: URL, morning
) -> None:
    config = {"DATABASE_URL": url_text(database_url)}
    # 31 days on: the wearable's events (presence, 30 days) have expired, the walk-ins'
    # tickets (interaction, 90 days) have not.
    report = service.purge(config, (), True, now=AT + dt.timedelta(days=31))
    assert [(r.gateway, r.event_id) for r in kiosk_rows(cloud_app)] == [
        ("kiosk-n1", 3),
        ("kiosk-s1", 1),
    ]
    # Three kiosk events and their three device events.
    assert json.loads(report)["presence"]["deleted"] == 6
    assert {kind for _, kind, _, _ in kiosk_device_events(cloud_app)} == {"kiosk_ticket"}
    service.purge(config, (), True, now=AT + dt.timedelta(days=91))
    assert kiosk_rows(cloud_app) == []
    assert kiosk_device_events(cloud_app) == []
