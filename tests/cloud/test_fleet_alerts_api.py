"""GET /api/fleet/alerts and POST /api/fleet/alerts/<id>/ack: scoping, filters, pages,
acknowledgement (audited), and the open-alerts gauge on /metrics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from cloud.audit import AuditEvent
from cloud.db import database
from cloud.fleet.alert_rules import Thresholds
from cloud.fleet.alerts import check_alerts
from cloud.fleet.models import Device
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers
from tests.cloud.people_actions import add_operator, body, sign_in

URL = "/api/fleet/alerts"
REGISTERED = dt.datetime(2030, 5, 1, 8, 0, tzinfo=dt.UTC)
NOW = REGISTERED + dt.timedelta(hours=1)


def run_check(app: APIFlask, now: dt.datetime = NOW) -> None:
    with app.app_context(), database().sessions() as db:
        check_alerts(db, Thresholds(), now)
        db.commit()


@pytest.fixture
def fleet(cloud_app: APIFlask) -> dict[str, int]:
    """North: two silent gateways, one with a low battery reading path; south: one silent
    gateway. Every active gateway has been silent for an hour: offline alerts."""
    ids = add_branches(cloud_app, "north", "south")
    common = {"status": "active", "created_at": REGISTERED}
    add_devices(
        cloud_app,
        {"uid": "gw-n1", "branch_id": ids["north"], **common},
        {"uid": "gw-n2", "branch_id": ids["north"], **common},
        {"uid": "gw-s1", "branch_id": ids["south"], **common},
        {"uid": "gw-s2", "branch_id": ids["south"]},  # not enrolled: no alert
    )
    run_check(cloud_app)
    return ids


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    return Callers(cloud_app)


def listing(client: FlaskClient, **params: Any) -> dict:
    response = client.get(URL, query_string=params)
    assert response.status_code == 200, response.json
    return body(response)


def uids(client: FlaskClient, **params: Any) -> list[str]:
    """Device uids of every page, following ``next``."""
    seen: list[str] = []
    after = None
    while True:
        page = listing(client, **params, **({"after": after} if after is not None else {}))
        seen += [alert["device_uid"] for alert in page["alerts"]]
        after = page["next"]
        if after is None:
            return seen


def alert_id(client: FlaskClient, uid: str) -> int:
    return next(a["id"] for a in listing(client, state="all")["alerts"] if a["device_uid"] == uid)


def test_a_branch_manager_sees_only_their_branch(client, callers, fleet) -> None:
    callers.as_manager(fleet["north"])
    assert uids(client) == ["gw-n1", "gw-n2"]
    assert listing(client, branch=fleet["south"]) == {"alerts": [], "next": None}
    callers.as_operations()
    assert uids(client) == ["gw-n1", "gw-n2", "gw-s1"]
    assert uids(client, branch=fleet["south"]) == ["gw-s1"]


def test_items_say_what_and_why(cloud_app, client, callers, fleet) -> None:
    callers.as_operations()
    alert = listing(client, limit=1)["alerts"][0]
    with cloud_app.app_context(), database().sessions() as db:
        device_id = db.scalars(select(Device.id).where(Device.uid == "gw-n1")).one()
    assert alert == {
        "id": alert["id"],
        "device_id": device_id,
        "device_uid": "gw-n1",
        "device_kind": "gateway",
        "branch_id": fleet["north"],
        "branch_code": "north",
        "kind": "offline",
        "severity": "critical",
        "state": "open",
        "opened_at": NOW.isoformat(),
        "resolved_at": None,
        "detail": {"last_heard_at": None, "offline_after_seconds": 300},
        "acknowledged_by": None,
        "acknowledged_at": None,
    }


def test_filters_and_pages(cloud_app, client, callers, fleet) -> None:
    callers.as_operations()
    with cloud_app.app_context(), database().sessions() as db:
        db.execute(update(Device).where(Device.uid == "gw-n2").values(status="retired"))
        db.commit()
    run_check(cloud_app, NOW + dt.timedelta(minutes=1))  # gw-n2's alert resolves
    n2 = alert_id(client, "gw-n2")
    assert uids(client) == ["gw-n1", "gw-s1"]
    assert uids(client, state="resolved") == ["gw-n2"]
    assert uids(client, state="all", limit=1) == ["gw-n1", "gw-n2", "gw-s1"]
    assert uids(client, state="all", device=alert_device(client, n2)) == ["gw-n2"]
    assert uids(client, kind="offline") == ["gw-n1", "gw-s1"]
    assert uids(client, kind="battery_low") == []
    first = listing(client, state="all", limit=2)
    assert len(first["alerts"]) == 2 and first["next"] == first["alerts"][-1]["id"]


def alert_device(client: FlaskClient, ident: int) -> int:
    return next(a["device_id"] for a in listing(client, state="all")["alerts"] if a["id"] == ident)


def test_bad_queries_are_refused(client, callers, fleet) -> None:
    callers.as_operations()
    for params in (
        {"state": "closed"},
        {"kind": "fire"},
        {"limit": 0},
        {"limit": 501},
        {"after": -1},
        {"device": 0},
    ):
        assert client.get(URL, query_string=params).status_code == 422, params


def test_acknowledge_own_branch_only_and_audited(cloud_app, fleet) -> None:
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    add_operator(cloud_app, "tom", "technician", ("north",))
    add_operator(cloud_app, "ops", "operations")
    maria = sign_in(cloud_app, "maria")
    ops = sign_in(cloud_app, "ops")
    north, south = alert_id(ops.client, "gw-n1"), alert_id(ops.client, "gw-s1")

    response = maria.client.post("%s/%d/ack" % (URL, north), headers=maria.csrf)
    assert response.status_code == 200, response.json
    acked = body(response)
    assert (acked["id"], acked["acknowledged_by"]) == (north, "operator:maria")
    assert acked["state"] == "open" and acked["acknowledged_at"] is not None
    # Another branch's alert is not found, like one that does not exist.
    assert maria.client.post("%s/%d/ack" % (URL, south), headers=maria.csrf).status_code == 404
    assert maria.client.post("%s/999999/ack" % URL, headers=maria.csrf).status_code == 404
    tom = sign_in(cloud_app, "tom")
    assert tom.client.post("%s/%d/ack" % (URL, north), headers=tom.csrf).status_code == 403
    # A second acknowledgement keeps the first.
    again = body(ops.client.post("%s/%d/ack" % (URL, north), headers=ops.csrf))
    assert again["acknowledged_by"] == "operator:maria"
    assert again["acknowledged_at"] == acked["acknowledged_at"]
    assert body(ops.client.post("%s/%d/ack" % (URL, south), headers=ops.csrf))[
        "acknowledged_by"
    ] == ("operator:ops")

    with cloud_app.app_context(), database().sessions() as db:
        logged = db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "alert.acknowledge")
            .order_by(AuditEvent.id)
        ).all()
    assert [(e.actor, e.target) for e in logged] == [
        ("operator:maria", "alert:%d" % north),
        ("operator:ops", "alert:%d" % south),
    ]
    assert logged[0].details["kind"] == "offline"


def test_acknowledging_needs_a_session_and_csrf(cloud_app, client, fleet) -> None:
    add_operator(cloud_app, "ops", "operations")
    ops = sign_in(cloud_app, "ops")
    ident = alert_id(ops.client, "gw-n1")
    assert client.post("%s/%d/ack" % (URL, ident)).status_code == 401
    assert ops.client.post("%s/%d/ack" % (URL, ident)).status_code in (400, 403)


def test_open_alerts_gauge(client, fleet) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bankiot_open_alerts{kind="offline"} 3.0' in text
    assert 'bankiot_open_alerts{kind="battery_low"} 0.0' in text


def test_the_inventory_counts_open_alerts(cloud_app, client, callers, fleet) -> None:
    with cloud_app.app_context(), database().sessions() as db:
        db.execute(update(Device).where(Device.uid == "gw-n2").values(status="retired"))
        db.commit()
    run_check(cloud_app, NOW + dt.timedelta(minutes=1))  # gw-n2's alert resolves
    callers.as_operations()
    devices = body(client.get("/api/fleet/devices")).get("devices", [])
    counts = {device["uid"]: device["open_alerts"] for device in devices}
    assert counts == {"gw-n1": 1, "gw-n2": 0, "gw-s1": 1, "gw-s2": 0}
