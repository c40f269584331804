"""Whom and where the shipped ``partner-shopping`` rule processes, end to end on SQLite and
PostgreSQL: sealed presence batches through ingest, the live worker and the dry run. Only
customers' wearables, only where a partner merchant's beacon was heard; anything else is
counted, never stored."""

from __future__ import annotations

import datetime as dt

import pytest
from apiflask import APIFlask
from sqlalchemy import select

from bankiot_core.address import mac_from_str
from bankiot_core.presence import PresenceEvent
from cloud.events.library import RuleLibrary
from cloud.events.models import RuleDecision
from cloud.events.worker import EventWorker, dry_run
from cloud.fleet import beacons
from cloud.ingest.models import DeviceEvent
from tests.cloud.customer_actions import database_of
from tests.cloud.dashboard_actions import Branch, add_customer, withdraw
from tests.cloud.fleet_actions import add_branches, add_devices

ANNA, BEN = "C0:FF:EE:00:01:0A", "C0:FF:EE:00:01:0B"
SHOP_BEACON = "C3:00:00:0A:1B:2C"  # a partner café's beacon, near the branch
LOBBY_BEACON = "C3:00:00:0A:1B:2D"  # the branch's own beacon
STRANGER = "5A:11:22:33:44:55"  # a passer-by's phone, no customer's
ALL = ("activity", "presence_branch", "presence_partner")
RULE = "partner-shopping"


@pytest.fixture
def town(cloud_app: APIFlask) -> dict[str, int]:
    """Branch north with gateway gw-p1, its lobby beacon and a partner café's beacon;
    Anna and Ben consent to everything."""
    ids = add_branches(cloud_app, "north")
    add_devices(
        cloud_app,
        {"uid": "gw-p1", "kind": "gateway", "branch_id": ids["north"], "status": "active"},
    )
    now = dt.datetime.now(dt.UTC)
    with database_of(cloud_app).sessions() as session:
        cafe = beacons.add_merchant(session, "Café Nord", "5814", actor="test", now=now)
        places: list[tuple[int | None, int | None, str, int]] = [
            (None, cafe.id, SHOP_BEACON, 1),
            (ids["north"], None, LOBBY_BEACON, 2),
        ]
        for branch_id, merchant_id, address, minor in places:
            beacons.add_beacon(
                session,
                kind="ibeacon",
                branch_id=branch_id,
                merchant_id=merchant_id,
                uuid="f7826da6-4fa2-4e98-8024-bc5b71e0893e",
                major=7,
                minor=minor,
                address=address,
                actor="test",
                now=now,
            )
        session.commit()
    return {
        "north": ids["north"],
        "anna": add_customer(cloud_app, "anna@example.com", ANNA, ids["north"], ALL),
        "ben": add_customer(cloud_app, "ben@example.com", BEN, ids["north"], ALL),
    }


def heard(gateway: Branch, *addresses: str) -> None:
    """One batch from gw-p1: each address entered now."""
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    gateway.send(
        "gw-p1", [PresenceEvent("enter", mac_from_str(a), now_ms, -60, 90) for a in addresses]
    )


def rule_decisions(app: APIFlask) -> list[tuple[str, str]]:
    with database_of(app).sessions() as session:
        rows = session.execute(
            select(RuleDecision.subject, RuleDecision.reason)
            .where(RuleDecision.rule_id == RULE)
            .order_by(RuleDecision.id)
        )
        return [(row.subject, row.reason) for row in rows]


def test_partner_shopping_acts_for_customers_at_partners_and_stores_nothing_else(
    cloud_app: APIFlask, town: dict[str, int]
) -> None:
    database = database_of(cloud_app)
    worker = EventWorker(database, RuleLibrary(None))
    worker.run_once()  # the cursor starts at the newest event
    gateway = Branch(cloud_app, "gw-p1")

    heard(gateway, ANNA, STRANGER, LOBBY_BEACON)  # in the branch: no partner's beacon
    heard(gateway, ANNA, BEN, STRANGER, SHOP_BEACON)  # near the café
    withdraw(cloud_app, town["ben"], "presence_partner")  # after ingest stored his presence
    summary = worker.run_once()

    # Anna at the café acts; Ben's refusal is kept for the DPO; the stranger, the beacons
    # and Anna's visit to the branch leave nothing behind.
    assert rule_decisions(cloud_app) == [(ANNA, "acted"), (BEN, "no_consent")]
    assert summary.not_customer == {RULE: 2}  # the stranger and the café's beacon
    assert worker.stats.not_customer(RULE) == 2
    assert worker.stats.snapshot()["decisions:acted"] == 1
    with database.sessions() as session:
        subjects = set(session.scalars(select(RuleDecision.subject)))
    assert not subjects & {STRANGER, SHOP_BEACON, LOBBY_BEACON}

    # The dry run decides the same (consent read as it is now).
    with database.sessions() as session:
        replayed = dry_run(session, RuleLibrary(None).current())
    assert [(d.subject, d.reason) for d in replayed if d.rule == RULE] == [
        (ANNA, "acted"),
        (BEN, "no_consent"),
    ]


def test_the_worker_counters_reach_prometheus(cloud_app: APIFlask, town: dict[str, int]) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    worker = EventWorker(database_of(cloud_app), RuleLibrary(None))
    registry = CollectorRegistry()
    worker.stats.register(registry)
    worker.run_once()
    heard(Branch(cloud_app, "gw-p1"), STRANGER, SHOP_BEACON)
    worker.run_once()
    text = generate_latest(registry).decode()
    assert 'bankiot_events_not_customer_total{rule="partner-shopping"} 2.0' in text
    assert "bankiot_events_action_failures_total 0.0" in text


def test_a_partner_beacon_present_at_the_gateway_places_its_later_batches(
    cloud_app: APIFlask, town: dict[str, int]
) -> None:
    """A gateway sends each presence event in a small batch of its own, so a wearable's
    enter near the café seldom shares a batch with the café's beacon: the beacon's own
    enter, earlier, makes it present at that gateway until its leave."""
    database = database_of(cloud_app)
    worker = EventWorker(database, RuleLibrary(None))
    worker.run_once()
    gateway = Branch(cloud_app, "gw-p1")
    withdraw(cloud_app, town["ben"], "presence_partner")

    heard(gateway, BEN)  # no partner's beacon present yet: presence in the branch
    heard(gateway, SHOP_BEACON)  # the café's beacon enters, alone in its batch
    heard(gateway, ANNA)  # then Anna, alone in hers
    heard(gateway, BEN)  # and Ben, who does not consent to presence at partner shops
    worker.run_once()
    assert rule_decisions(cloud_app) == [(ANNA, "acted")]
    with database.sessions() as session:
        bens = session.scalars(select(DeviceEvent.id).where(DeviceEvent.device == BEN)).all()
    assert len(bens) == 1  # his enter near the café was withheld by ingest

    # Once the beacon has left, nothing the gateway hears is at the café.
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    gateway.send("gw-p1", [PresenceEvent("leave", mac_from_str(SHOP_BEACON), now_ms, -90, 0)])
    heard(gateway, ANNA, BEN)
    worker.run_once()
    assert rule_decisions(cloud_app) == [(ANNA, "acted")]  # not even a cooldown refusal
    with database.sessions() as session:
        bens = session.scalars(select(DeviceEvent.id).where(DeviceEvent.device == BEN)).all()
    assert len(bens) == 2
