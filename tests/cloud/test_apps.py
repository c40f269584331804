"""The seed's applications end to end, on SQLite and PostgreSQL: risk-aware shopping from
sealed presence batches through ingest and the event worker to the customer's app; loan
applications with IoT evidence, decisions with reasons and the review queue; holding
alerts notified once per crossing from the price feed; life-event suggestions."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select

from bankiot_core.address import mac_from_str
from bankiot_core.presence import PresenceEvent
from cloud import events
from cloud.apps import finance
from cloud.apps.models import AppDecision
from cloud.apps.shopping import ShoppingApp
from cloud.bank.models import BankAccount, BankStatement
from cloud.events.library import RuleLibrary
from cloud.events.models import RuleDecision, ServiceRequest
from cloud.events.worker import EventWorker
from cloud.notifications.push import EXTENSION, LoggingChannel
from tests.cloud.apps_actions import SHOP_BEACON, add_history, history, partner_cafe
from tests.cloud.customer_actions import database_of
from tests.cloud.dashboard_actions import Branch, add_customer, withdraw
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers, body

TODAY = dt.datetime.now(dt.UTC).date()
ALL = ("activity", "presence_branch", "presence_partner")
ANNA, BEN, CARL, DORA = (
    "C0:FF:EE:00:00:0A",
    "C0:FF:EE:00:00:0B",
    "C0:FF:EE:00:00:0C",
    "C0:FF:EE:00:00:0D",
)


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    return Callers(cloud_app)


@pytest.fixture
def town(cloud_app: APIFlask, client: FlaskClient, callers: Callers) -> dict[str, Any]:
    """Branch north with gateway gw-n1, a partner shop's beacon near it, and customers:
    Anna (comfortable), Ben (overdrawn), Carl (no partner consent), Dora."""
    ids = add_branches(cloud_app, "north", "south")
    add_devices(
        cloud_app,
        {"uid": "gw-n1", "kind": "gateway", "branch_id": ids["north"], "status": "active"},
        {"uid": "safe-1", "kind": "sensor", "branch_id": ids["north"], "status": "active"},
    )
    callers.as_operations()
    partner_cafe(client)
    people = {
        "anna": add_customer(cloud_app, "anna@example.com", ANNA, ids["north"], ALL),
        "ben": add_customer(cloud_app, "ben@example.com", BEN, ids["north"], ALL),
        "carl": add_customer(cloud_app, "carl@example.com", CARL, ids["north"], ALL[:2]),
        "dora": add_customer(cloud_app, "dora@example.com", DORA, ids["north"], ALL),
    }
    add_history(cloud_app, people["anna"], history(TODAY, 3000, 1000, 28, 20))
    add_history(cloud_app, people["ben"], history(TODAY, 1500, 1500, 28, 15))
    add_history(cloud_app, people["dora"], history(TODAY, 2000, 900, 28, 10))
    return {**ids, **people}


def enter(gateway: Branch, *wearables: str, beacon: str | None = SHOP_BEACON) -> None:
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    records = [PresenceEvent("enter", mac_from_str(w), now_ms, -60, 90) for w in wearables]
    if beacon is not None:
        records.append(PresenceEvent("enter", mac_from_str(beacon), now_ms, -55, 95))
    gateway.send("gw-n1", records)


def test_risk_aware_shopping_from_presence_at_a_partner_to_the_app(
    cloud_app: APIFlask, town: dict[str, Any]
) -> None:
    database = database_of(cloud_app)
    worker = EventWorker(database, RuleLibrary(None))
    worker.run_once()  # the cursor starts at the newest event
    channel = LoggingChannel()
    shopping = ShoppingApp(database, channel)
    gateway = Branch(cloud_app, "gw-n1")

    enter(gateway, ANNA, BEN, CARL, DORA)  # at the café, as the beacon in the batch says
    worker.run_once()
    withdraw(cloud_app, town["dora"], "presence_partner")  # after the rule acted for her
    made = {row.customer_id: row for row in shopping.run_once()}

    anna, ben, dora = made[town["anna"]], made[town["ben"]], made[town["dora"]]
    assert (anna.outcome, ben.outcome, dora.outcome) == ("cashback", "warning", "no_consent")
    assert town["carl"] not in made  # ingest withheld his presence at the partner shop
    assert None not in made  # the beacon's own presence is no customer's: not processed
    assert anna.inputs["merchant"]["name"] == "Café Nord"
    assert anna.reasons[0] == "balance £9,800"  # 5 x 3,000 - 5 x 1,000 - 10 x 20
    assert ben.reasons[0] == "balance -£150"  # 5 x 1,500 - 5 x 1,500 - 10 x 15
    assert ben.reasons[3].startswith("-£")
    assert all(len(row.reasons) <= 4 for row in made.values())
    assert [(s["customer_id"], s["channel"]) for s in channel.sent] == [
        (town["anna"], "app"),
        (town["ben"], "app"),
    ]
    assert "cashback" in channel.sent[0]["message"] and "Café Nord" in channel.sent[0]["message"]
    assert "tight" in channel.sent[1]["message"]
    assert shopping.run_once() == []  # each rule decision is handled once

    # Later the gateway no longer hears the café's beacon (its leave: a beacon present at the
    # gateway places what it hears at the café), and Anna is in the branch: not decided.
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    gateway.send("gw-n1", [PresenceEvent("leave", mac_from_str(SHOP_BEACON), now_ms, -90, 0)])
    enter(gateway, ANNA, beacon=None)
    worker.run_once()
    assert shopping.run_once() == []
    with database.sessions() as db:
        reasons = db.scalars(
            select(RuleDecision.reason).where(RuleDecision.rule_id == "partner-shopping")
        ).all()
        assert sorted(reasons) == ["acted"] * 3
        assert db.scalars(select(ServiceRequest)).all() == []  # nothing for staff


def test_presence_without_a_partner_beacon_is_not_processed_by_shopping(
    cloud_app: APIFlask, town: dict[str, Any]
) -> None:
    database = database_of(cloud_app)
    worker = EventWorker(database, RuleLibrary(None))
    worker.run_once()
    channel = LoggingChannel()
    enter(Branch(cloud_app, "gw-n1"), ANNA, beacon=None)
    worker.run_once()
    assert ShoppingApp(database, channel).run_once() == []  # the rule is for partners' places
    assert channel.sent == []


def loan(client: FlaskClient, branch: int, customer: int, **more: Any) -> Any:
    body = {
        "customer": customer,
        "branch": branch,
        "amount": "2000.00",
        "currency": "GBP",
        "term_months": 24,
        "purpose": "a car",
        **more,
    }
    return client.post("/api/apps/loans", json=body)


def test_loans_decide_with_specific_reasons_and_referrals_wait_for_a_manager(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, town: dict[str, Any]
) -> None:
    north, south = town["north"], town["south"]
    callers.as_manager(north)
    anna = loan(client, north, town["anna"])
    assert anna.status_code == 201, anna.json
    assert body(anna)["decision"] == "approved", anna.json
    big = loan(client, north, town["ben"], amount="40000.00")
    assert body(big)["outcome"] == "declined"
    assert body(big)["reasons"][0].startswith("payments of £")
    assert "of income £1,500 (limit 60%)" in body(big)["reasons"][0]
    carl = loan(client, north, town["carl"])  # no bank history
    assert (body(carl)["outcome"], body(carl)["review"]) == ("referred", "pending")
    assert body(carl)["reasons"] == ["no account history with the bank to verify income"]
    # the collateral sensor (a registered device) has sent nothing this week
    evidence = loan(client, north, town["anna"], evidence=["safe-1", "nope"], evidence_consent=True)
    assert body(evidence)["outcome"] == "referred"
    assert body(evidence)["reasons"] == [
        "collateral sensor safe-1 sent no readings in the last 7 days",
        "collateral sensor nope is not a registered device",
    ]
    no_consent = loan(client, north, town["anna"], evidence=["safe-1"])
    assert no_consent.status_code == 422
    assert "consent" in body(no_consent)["message"]
    assert loan(client, south, town["anna"]).status_code == 404  # not my branch

    queue = body(client.get("/api/apps/loans/review"))["items"]
    assert [item["id"] for item in queue] == [body(carl)["id"], body(evidence)["id"]]
    callers.as_manager(south)
    assert body(client.get("/api/apps/loans/review"))["items"] == []
    assert (
        client.post(
            "/api/apps/loans/%d/decide" % body(carl)["id"], json={"outcome": "approved"}
        ).status_code
        == 404
    )
    callers.as_manager(north)
    decided = client.post(
        "/api/apps/loans/%d/decide" % body(carl)["id"],
        json={"outcome": "declined", "note": "no payslips"},
    )
    assert decided.status_code == 200, decided.json
    assert (body(decided)["decision"], body(decided)["reviewed_by"]) == (
        "declined",
        "operator:maria",
    )
    again = client.post(
        "/api/apps/loans/%d/decide" % body(carl)["id"], json={"outcome": "approved"}
    )
    assert again.status_code == 409
    query = {"customer": town["carl"]}
    log = body(client.get("/api/apps/decisions", query_string=query))["items"]
    assert [(d["outcome"], d["version"]) for d in log] == [
        ("declined", "manual-1"),
        ("referred", "loan-1"),
    ]
    assert log[0]["reasons"] == ["no account history with the bank to verify income"]
    callers.as_technician(north)
    assert loan(client, north, town["anna"]).status_code == 403


def test_holding_alerts_notify_once_per_crossing(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, town: dict[str, Any]
) -> None:
    channel = LoggingChannel()
    cloud_app.extensions[EXTENSION] = channel
    callers.as_manager(town["north"])
    up = client.post(
        "/api/apps/holdings/alerts",
        json={
            "customer": town["anna"],
            "instrument": "acme",
            "direction": "above",
            "threshold": "120",
            "channel": "wearable",
        },
    )
    assert up.status_code == 201, up.json
    down = client.post(
        "/api/apps/holdings/alerts",
        json={
            "customer": town["anna"],
            "instrument": "ACME",
            "direction": "below",
            "threshold": "100",
        },
    )
    assert down.status_code == 201
    callers.as_operations()
    notified = []
    for price in ("110", "121", "125", "119", "122", "99.5", "98"):
        answer = client.post(
            "/api/apps/holdings/prices", json={"instrument": "ACME", "price": price}
        )
        assert answer.status_code == 200, answer.json
        notified.append(body(answer)["notified"])
    a, b = body(up)["id"], body(down)["id"]
    assert notified == [[], [a], [], [], [a], [b], []]
    assert [(s["channel"], s["customer_id"]) for s in channel.sent] == [
        ("wearable", town["anna"]),
        ("wearable", town["anna"]),
        ("app", town["anna"]),
    ]
    assert channel.sent[0]["message"] == "ACME is up at 121 (your alert: above 120)"
    bad = client.post("/api/apps/holdings/prices", json={"instrument": "ACME", "price": "-1"})
    assert bad.status_code == 422
    callers.as_manager(town["south"])
    foreign = client.post(
        "/api/apps/holdings/alerts",
        json={"customer": town["anna"], "instrument": "X", "direction": "above", "threshold": 1},
    )
    assert foreign.status_code == 404
    with database_of(cloud_app).sessions() as db:
        rows = db.scalars(select(AppDecision).where(AppDecision.app == "holdings")).all()
        assert [row.outcome for row in rows] == ["notified"] * 3


def test_suggestions_follow_detected_life_events(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, town: dict[str, Any]
) -> None:
    callers.as_manager(town["north"])
    answer = client.get("/api/apps/holdings/suggestions", query_string={"customer": town["ben"]})
    assert answer.status_code == 200, answer.json
    kinds = {item["event"]: item for item in body(answer)["items"]}
    assert "distress" in kinds  # overdrawn before payday
    assert kinds["distress"]["suggestion"].startswith("Money may be tight")
    assert 1 <= len(kinds["distress"]["reasons"]) <= 4
    calm = client.get("/api/apps/holdings/suggestions", query_string={"customer": town["anna"]})
    assert body(calm)["items"] == []


def test_the_applications_profile_starts_from_the_opening_balance(
    cloud_app: APIFlask, town: dict[str, Any]
) -> None:
    """The balance the applications judge is the first statement's opening balance plus
    the booked transactions, as the stored profile's (here Anna's history from the town)."""
    with database_of(cloud_app).sessions() as db:
        statement = db.scalars(
            select(BankStatement)
            .join(BankAccount, BankAccount.id == BankStatement.account_id)
            .where(BankAccount.customer_id == town["anna"])
        ).one()
        statement.opening_balance = Decimal("1234.50")
        db.commit()
        profile = finance.customer_profile(db, town["anna"], TODAY)
    assert profile is not None
    moved = sum((t.amount for t in history(TODAY, 3000, 1000, 28, 20)), Decimal(0))
    assert profile.balance == Decimal("1234.50") + moved


def test_the_event_worker_on_its_own_runs_the_shopping_pass(
    cloud_app: APIFlask, town: dict[str, Any]
) -> None:
    """At scale the rules run in ``bankiot events run`` with no ``cloud up``: the shopping
    pass runs in that process too, and decides a customer at the partner shop once."""
    database = database_of(cloud_app)
    EventWorker(database, RuleLibrary(None)).run_once()  # the cursor starts here
    gateway = Branch(cloud_app, "gw-n1")
    enter(gateway, ANNA)

    def decided() -> list[tuple[int | None, str]]:
        with database.sessions() as db:
            rows = db.scalars(select(AppDecision)).all()
            return [(row.customer_id, row.outcome) for row in rows]

    async def run_until_decided() -> None:
        stop = asyncio.Event()
        worker = asyncio.ensure_future(
            events.standalone(database, RuleLibrary(None), gateway.ingest.key_source, None, stop)
        )
        try:
            for _ in range(600):  # up to a minute under load; a pass every second
                if decided() or worker.done():
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await worker

    asyncio.run(run_until_decided())
    assert decided() == [(town["anna"], "cashback")]
