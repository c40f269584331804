"""A wearable paired again at another branch takes its open alerts along, on SQLite and
PostgreSQL: through the real pairing pages, a battery reading through the real ingest, the
real alert check, and branch managers signed in to the alerts API."""

from __future__ import annotations

import datetime as dt

import pytest
from apiflask import APIFlask
from sqlalchemy import select

from cloud.audit import AuditEvent
from cloud.fleet.alert_rules import BATTERY_LOW, Thresholds
from cloud.fleet.alerts import Alert, check_alerts
from cloud.fleet.models import Device
from cloud.ingest.pipeline import Ingest
from tests.cloud.customer_actions import WEARABLE, Customer, Kiosks, database_of, kiosk_fleet
from tests.cloud.fleet_actions import add_devices
from tests.cloud.ingest_support import SimGateway
from tests.cloud.people_actions import add_operator, body, sign_in

NORTH_CODE = "7KQ2M9XD"
SOUTH_CODE = "M9XD7KQ2"


class Battery:
    """Gateway gw-n1 hears the wearable's battery through the real ingest, and the alert
    check runs, each a minute after the one before."""

    def __init__(self, app: APIFlask) -> None:
        self.app = app
        self.now = dt.datetime.now(dt.UTC)
        self.gateway = SimGateway("gw-n1")
        self.ingest = Ingest(database_of(app), self.gateway.keys(), clock=lambda: self.now)

    def reads(self, percent: int) -> None:
        self.now += dt.timedelta(minutes=1)
        self.gateway.hear(bytes.fromhex(WEARABLE.replace(":", "")), "battery", percent, "%")
        self.gateway.flush()
        for _seq, envelope in self.gateway.outbox():
            result = self.ingest.handle(envelope, self.gateway.aad, "mqtt", "gw-n1")
            assert result.status == "accepted", result
            self.gateway.receive(result.ack or b"")

    def check(self) -> None:
        self.now += dt.timedelta(minutes=1)
        with database_of(self.app).sessions() as db:
            check_alerts(db, Thresholds(), self.now)
            db.commit()


def battery_alerts(app: APIFlask) -> list[tuple[str, int]]:
    """The wearable's battery_low alerts as (state, branch id), oldest first."""
    with database_of(app).sessions() as db:
        rows = db.execute(
            select(Alert.state, Alert.branch_id)
            .join(Device, Device.id == Alert.device_id)
            .where(Device.uid == WEARABLE, Alert.kind == BATTERY_LOW)
            .order_by(Alert.id)
        ).all()
    return [(state, branch) for state, branch in rows]


def seen_by(app: APIFlask, manager: str, state: str) -> list[tuple[str, str, str]]:
    """(device uid, branch code, state) of the battery_low alerts ``manager`` sees."""
    client = sign_in(app, manager).client
    response = client.get("/api/fleet/alerts", query_string={"state": state, "kind": BATTERY_LOW})
    assert response.status_code == 200, response.json
    return [(a["device_uid"], a["branch_code"], a["state"]) for a in body(response)["alerts"]]


@pytest.mark.parametrize("who", ["the same customer", "another customer after unpairing"])
def test_open_alerts_follow_a_wearable_paired_again_at_another_branch(
    cloud_app: APIFlask, who: str
) -> None:
    fleet = kiosk_fleet(cloud_app)
    north, south = fleet["north"], fleet["south"]
    wearable = {"uid": WEARABLE, "kind": "wearable", "branch_id": north, "status": "active"}
    add_devices(cloud_app, wearable)  # registered in the inventory at north
    add_operator(cloud_app, "nora", "branch_manager", ("north",))
    add_operator(cloud_app, "sam", "branch_manager", ("south",))
    kiosks = Kiosks(cloud_app, "kiosk-n1", "kiosk-s1")
    alice = Customer(cloud_app)
    alice.sign_up("alice@example.com")
    kiosks.show_code("kiosk-n1", NORTH_CODE)
    assert alice.pair(NORTH_CODE).status_code == 302

    battery = Battery(cloud_app)
    for percent in (12, 90, 10):  # low, a new battery (resolved), low again (open)
        battery.reads(percent)
        battery.check()
    assert battery_alerts(cloud_app) == [("resolved", north), ("open", north)]

    kiosks.show_code("kiosk-s1", SOUTH_CODE)
    if who == "the same customer":
        assert alice.pair(SOUTH_CODE).status_code == 302
    else:
        assert alice.unpair().status_code == 302
        bob = Customer(cloud_app)
        bob.sign_up("bob@example.com")
        assert bob.pair(SOUTH_CODE).status_code == 302

    assert battery_alerts(cloud_app) == [("resolved", north), ("open", south)]
    with database_of(cloud_app).sessions() as db:
        assert db.scalar(select(Device.branch_id).where(Device.uid == WEARABLE)) == south
        moves = db.scalars(select(AuditEvent).where(AuditEvent.action == "device.move")).all()
        assert [(m.target, m.details) for m in moves] == [
            ("device:%s" % WEARABLE, {"from_branch": north, "to_branch": south, "open_alerts": 1})
        ]
    assert seen_by(cloud_app, "sam", "open") == [(WEARABLE, "south", "open")]
    assert seen_by(cloud_app, "nora", "open") == []
    assert seen_by(cloud_app, "nora", "resolved") == [(WEARABLE, "north", "resolved")]

    battery.check()  # still low: the same alert, still the new branch's
    assert battery_alerts(cloud_app) == [("resolved", north), ("open", south)]
