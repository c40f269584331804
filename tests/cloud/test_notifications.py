"""The customer's inbox, on SQLite and PostgreSQL: notifications written in the transaction of
the decision that caused them (the rule worker's ``notify`` and ``offer`` actions, holding
alerts, risk-aware shopping), app campaigns sent to their audience once per cap window,
consent refusals logged without a notification, offers accepted and declined on the
customer pages (CSRF, object-level authorization), and the inbox in the customer's data
export, erasure and retention.

Events travel as a kiosk or gateway sends them (sealed batches through the real ingest);
customers act through the customer pages (a Flask test client that fills in the forms).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from bankiot_core.address import mac_from_str
from bankiot_core.presence import PresenceEvent
from cloud.apps.shopping import ShoppingApp
from cloud.customers import erasure
from cloud.customers.data import export
from cloud.customers.models import Customer as CustomerRow
from cloud.events.actions import Executor
from cloud.events.library import RuleLibrary
from cloud.events.models import RuleDecision
from cloud.events.worker import EventWorker
from cloud.ingest.retention import NOTIFICATIONS, purge_records
from cloud.notifications.models import CampaignSend, Notification
from cloud.notifications.push import EXTENSION, LoggingChannel
from cloud.offers.models import OfferDecision, OfferResult
from tests.cloud.apps_actions import SHOP_BEACON, add_history, history, partner_cafe
from tests.cloud.customer_actions import Customer, database_of
from tests.cloud.dashboard_actions import Branch, add_customer
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers, body

ANNA, BEN = "C0:FF:EE:00:00:0A", "C0:FF:EE:00:00:0B"
ALL = ("activity", "presence_branch", "presence_partner", "offers")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    callers = Callers(cloud_app)
    callers.as_operations()
    return callers


@pytest.fixture
def people(cloud_app: APIFlask) -> dict[str, int]:
    """Branch north with gateway gw-n1 and kiosk-n1; Anna consents to everything, Ben
    to activity and presence in branches (enough for a kiosk's offers) but not to
    personalised offers, which offers in the inbox need."""
    ids = add_branches(cloud_app, "north")
    add_devices(
        cloud_app,
        {"uid": "gw-n1", "kind": "gateway", "branch_id": ids["north"], "status": "active"},
        {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": ids["north"], "status": "active"},
    )
    return {
        "north": ids["north"],
        "anna": add_customer(cloud_app, "anna@example.com", ANNA, ids["north"], ALL),
        "ben": add_customer(
            cloud_app, "ben@example.com", BEN, ids["north"], ("activity", "presence_branch")
        ),
    }


def inbox_rows(app: APIFlask) -> list[Notification]:
    with database_of(app).sessions() as session:
        rows = list(session.scalars(select(Notification).order_by(Notification.id)))
        session.expunge_all()
        return rows


def write_rules(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.toml").write_text(text, encoding="utf-8")
    return folder


def app_campaign(client: FlaskClient, name: str, **changes: Any) -> int:
    values = {
        "name": name,
        "audience": True,
        "title": "Travel card",
        "text": "No fees abroad for a year",
        "channel": "app",
        "cap_count": 1,
        "cap_days": 7,
        "starts_at": (now() - dt.timedelta(days=1)).isoformat(),
        "ends_at": (now() + dt.timedelta(days=30)).isoformat(),
        "status": "active",
        **changes,
    }
    made = client.post("/api/offers/campaigns", json=values)
    assert made.status_code == 201, made.json
    return body(made)["id"]


def send(client: FlaskClient, campaign: int) -> Any:
    return client.post("/api/offers/campaigns/%d/send" % campaign)


# ---- rules: notify, in the worker's transaction ------------------------------------------------

NOTIFY_ON_BUTTON = (
    '[[rule]]\nid = "hello"\nversion = 1\npurpose = "activity"\non = "button"\n'
    '[[rule.actions]]\ndo = "notify"\nchannel = "wearable"\nmessage = "We saw you press"\n'
)


class FailsAfterStaging(Executor):
    """An executor whose pass fails after it staged its actions (a database that goes away
    before the commit)."""

    def stage(self, *args: Any, **kwargs: Any) -> Any:
        super().stage(*args, **kwargs)
        raise RuntimeError("the database went away before the commit")


def press(gateway: Branch, wearable: str) -> None:
    from bankiot_core.batch import BatchReading
    from bankiot_core.decoded import EVENT_UNIT

    at = int(now().timestamp() * 1000)
    gateway.send("gw-n1", [BatchReading(mac_from_str(wearable), at, "button", 1, EVENT_UNIT)])


def test_a_rules_notify_is_one_inbox_row_stored_with_its_decision_and_pushed_after(
    cloud_app: APIFlask, people: dict[str, int], tmp_path: Path
) -> None:
    folder = write_rules(tmp_path, NOTIFY_ON_BUTTON)
    database = database_of(cloud_app)
    channel = LoggingChannel()
    failing = EventWorker(database, RuleLibrary(folder), FailsAfterStaging(channel))
    failing.run_once()  # the cursor starts at the newest event
    gateway = Branch(cloud_app, "gw-n1")
    press(gateway, ANNA)
    with pytest.raises(RuntimeError, match="went away"):
        failing.run_once()
    # Rolled back: no decision, no notification, nothing pushed.
    assert inbox_rows(cloud_app) == [] and channel.sent == []
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RuleDecision)) == 0

    # The same cursor, a working executor: the press is decided again, notified once.
    worker = EventWorker(database, RuleLibrary(folder), Executor(channel))
    worker.run_once()
    worker.run_once()  # nothing new: nothing more
    (row,) = inbox_rows(cloud_app)
    assert (row.customer_id, row.channel, row.source) == (people["anna"], "wearable", "rule:hello")
    assert (row.title, row.text, row.read_at, row.campaign_id) == (
        "A message from your bank",
        "We saw you press",
        None,
        None,
    )
    assert channel.sent == [
        {
            "notification_id": row.id,
            "customer_id": people["anna"],
            "channel": "wearable",
            "source": "rule:hello",
            "message": "We saw you press",
        }
    ]
    press(gateway, BEN)  # Ben's consent to activity lets the rule act for him too
    worker.run_once()
    assert [r.customer_id for r in inbox_rows(cloud_app)] == [people["anna"], people["ben"]]


def test_a_rules_app_offer_goes_to_the_inbox_decided_like_a_kiosks(
    cloud_app: APIFlask,
    client: FlaskClient,
    callers: Callers,
    people: dict[str, int],
    tmp_path: Path,
) -> None:
    travel = app_campaign(client, "travel")
    folder = write_rules(
        tmp_path,
        '[[rule]]\nid = "travel-on-button"\nversion = 1\npurpose = "activity"\n'
        'on = "button"\n[[rule.actions]]\ndo = "offer"\noffer = "travel"\n',
    )
    channel = LoggingChannel()
    worker = EventWorker(database_of(cloud_app), RuleLibrary(folder), Executor(channel))
    worker.run_once()
    gateway = Branch(cloud_app, "gw-n1")
    press(gateway, ANNA)
    worker.run_once()
    (row,) = inbox_rows(cloud_app)  # no kiosk, no downlink: the app needs neither
    assert (row.customer_id, row.campaign_id, row.source) == (people["anna"], travel, "offers")
    assert (row.channel, row.title, row.text) == ("app", "Travel card", "No fees abroad for a year")
    with database_of(cloud_app).sessions() as session:
        rule = session.scalar(
            select(RuleDecision).where(RuleDecision.rule_id == "travel-on-button")
        )
        assert rule is not None
        decision = session.scalar(select(OfferDecision))
        assert decision is not None and decision.id == row.offer_decision_id
        assert (decision.gateway, decision.event_id, decision.offered) == (
            "gw-n1",
            -rule.id,
            [travel],
        )
        assert (decision.inputs["channel"], decision.inputs["rule"]) == ("app", "travel-on-button")
        shown = session.scalars(select(OfferResult)).all()
        assert [(r.outcome, r.channel, r.gateway, r.event_id) for r in shown] == [
            ("shown", "app", "inbox", row.id)
        ]
    assert [s["notification_id"] for s in channel.sent] == [row.id]

    # Ben presses: the rule acts (he consents to activity), but offers in the inbox need
    # consent to personalised offers: a decision logged, no notification, nothing more read.
    press(gateway, BEN)
    worker.run_once()
    assert len(inbox_rows(cloud_app)) == 1 and len(channel.sent) == 1
    with database_of(cloud_app).sessions() as session:
        refused = session.scalars(select(OfferDecision).order_by(OfferDecision.id)).all()[-1]
        assert (refused.customer_id, refused.outcome, refused.offered) == (
            people["ben"],
            "none",
            [],
        )
        assert refused.reasons == ["no consent to personalised offers: no offers decided"]
        assert refused.inputs["attributes"] == {}


# ---- holdings and shopping ---------------------------------------------------------------------


def test_holding_alerts_and_shopping_reach_the_inbox(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, people: dict[str, int]
) -> None:
    channel = LoggingChannel()
    cloud_app.extensions[EXTENSION] = channel
    alert = {"customer": people["anna"], "instrument": "ACME", "direction": "above"}
    made = client.post("/api/apps/holdings/alerts", json={**alert, "threshold": "120"})
    assert made.status_code == 201, made.json
    for price in ("110", "121", "125"):
        pushed = client.post(
            "/api/apps/holdings/prices", json={"instrument": "ACME", "price": price}
        )
        assert pushed.status_code == 200, pushed.json
    (held,) = inbox_rows(cloud_app)  # once per crossing
    assert (held.customer_id, held.source, held.channel, held.title) == (
        people["anna"],
        "holdings",
        "app",
        "Price alert: ACME",
    )
    assert held.text == "ACME is up at 121 (your alert: above 120)"
    assert [s["notification_id"] for s in channel.sent] == [held.id]

    # Risk-aware shopping: Anna at a partner café, with a comfortable bank history.
    partner_cafe(client)
    add_history(cloud_app, people["anna"], history(now().date(), 3000, 1000, 28, 20))
    database = database_of(cloud_app)
    worker = EventWorker(database, RuleLibrary(None))
    worker.run_once()
    at = int(now().timestamp() * 1000)
    Branch(cloud_app, "gw-n1").send(
        "gw-n1",
        [
            PresenceEvent("enter", mac_from_str(ANNA), at, -60, 90),
            PresenceEvent("enter", mac_from_str(SHOP_BEACON), at, -55, 95),
        ],
    )
    worker.run_once()
    shopping = ShoppingApp(database, channel)
    (decided,) = shopping.run_once()
    assert decided.outcome == "cashback"
    assert shopping.run_once() == []  # handled once: no second notification
    bought = inbox_rows(cloud_app)[1:]
    assert [(r.customer_id, r.source, r.channel, r.title) for r in bought] == [
        (people["anna"], "shopping", "app", "An offer where you shop")
    ]
    assert bought[0].text.startswith("Café Nord: 2% cashback")
    assert [s["notification_id"] for s in channel.sent] == [held.id, bought[0].id]


# ---- app campaigns sent to their audience --------------------------------------------------------


def test_an_app_campaign_sent_twice_notifies_once_and_logs_every_decision(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, people: dict[str, int]
) -> None:
    travel = app_campaign(client, "travel")
    first = send(client, travel)
    assert first.status_code == 200, first.json
    times = ("at", "updated_at", "finished_at")
    assert {k: v for k, v in body(first).items() if k not in ("id", *times)} == {
        "campaign_id": travel,
        "campaign_version": 1,
        "actor": "operator:ops",
        "status": "done",
        "last_customer_id": people["ben"],
        "resumed_after": None,
        "decided": 2,
        "notified": 1,
        "no_consent": 1,
        "not_offered": 0,
    }
    assert len({body(first)[k] for k in times}) == 1  # one page: begun, updated, finished
    again = send(client, travel)
    assert again.status_code == 200
    assert (body(again)["notified"], body(again)["not_offered"]) == (0, 1)
    (row,) = inbox_rows(cloud_app)
    assert (row.customer_id, row.campaign_id) == (people["anna"], travel)

    with database_of(cloud_app).sessions() as session:
        logged = session.scalars(select(OfferDecision).order_by(OfferDecision.id)).all()
        sends = [s.id for s in session.scalars(select(CampaignSend).order_by(CampaignSend.id))]
    assert [(d.gateway, d.event_id, d.customer_id, d.outcome) for d in logged] == [
        ("send:%d" % sends[0], 1, people["anna"], "offered"),
        ("send:%d" % sends[0], 2, people["ben"], "none"),
        ("send:%d" % sends[1], 1, people["anna"], "none"),
        ("send:%d" % sends[1], 2, people["ben"], "none"),
    ]
    no_consent = "no consent to personalised offers: no offers decided"
    assert logged[1].reasons == logged[3].reasons == [no_consent]
    assert logged[1].inputs["attributes"] == {}  # nothing more about Ben was read
    assert logged[2].reasons == [
        "travel (campaign %d): capped: shown 1 times in 7 days (at most 1)" % travel
    ]

    # A cap of three still sends once per cap window: a retried send doubles nothing.
    roomy = app_campaign(client, "roomy", cap_count=3, channel="wearable")
    assert body(send(client, roomy))["notified"] == 1
    assert body(send(client, roomy))["notified"] == 0
    with database_of(cloud_app).sessions() as session:
        last = session.scalars(select(OfferDecision).order_by(OfferDecision.id.desc())).all()[1]
        assert last.customer_id == people["anna"] and last.offered == []
        assert "in the inbox already since" in last.reasons[0]
    assert [(r.campaign_id, r.channel) for r in inbox_rows(cloud_app)] == [
        (travel, "app"),
        (roomy, "wearable"),
    ]


def test_sends_refuse_kiosk_draft_and_unknown_campaigns_in_one_line(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, people: dict[str, int]
) -> None:
    kiosk = app_campaign(client, "kiosk-only", channel="kiosk")
    draft = app_campaign(client, "later", status="draft")
    refused = send(client, kiosk)
    assert refused.status_code == 422
    assert body(refused)["message"] == (
        "campaign %d is for the kiosk channel: only app and wearable campaigns are sent" % kiosk
    )
    assert send(client, draft).status_code == 409
    assert body(send(client, draft))["message"] == "campaign %d is draft: activate it first" % draft
    assert send(client, 999).status_code == 404
    callers.as_manager(people["north"])
    assert send(client, draft).status_code == 403
    assert inbox_rows(cloud_app) == []


def test_the_offers_command_sends_an_app_campaign(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cloud.offers.cli import offers

    runner = CliRunner()
    where = ["--data-dir", str(tmp_path)]
    start = (now() - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    end = (now() + dt.timedelta(days=9)).strftime("%Y-%m-%d")
    dates = ["--start", start, "--end", end, "--active"]
    for name, channel in (("Phone", "app"), ("Desk", "kiosk")):
        made = runner.invoke(
            offers, ["create", name, "--title", name, "--channel", channel, *dates, *where]
        )
        assert made.exit_code == 0, made.output
    sent = runner.invoke(offers, ["send", "Phone", *where])
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith("send 1 of campaign 1 (v1): 0 customers decided, 0 notified")
    kiosk = runner.invoke(offers, ["send", "2", *where])
    assert kiosk.exit_code == 1
    assert kiosk.output.strip() == (
        "Error: campaign 2 is for the kiosk channel: only app and wearable campaigns are sent"
    )
    assert runner.invoke(offers, ["send", "nope", *where]).output.strip() == (
        "Error: no campaign 'nope'"
    )


# ---- the customer's inbox: answers, and only their own ------------------------------------------


def inbox_json(customer: Customer) -> Any:
    answer = customer.client.get("/customer/notifications.json")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json


def test_customers_accept_and_decline_offers_in_their_own_inbox_only(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, people: dict[str, int]
) -> None:
    travel = app_campaign(client, "travel")
    savings = app_campaign(client, "savings", title="Savings boost", text="")
    send(client, travel)
    send(client, savings)
    anna, ben = Customer(cloud_app), Customer(cloud_app)
    assert anna.client.get("/customer/notifications.json").status_code == 401  # signed out
    anna.sign_in("anna@example.com")
    ben.sign_in("ben@example.com")
    listed = inbox_json(anna)
    assert listed["unread"] == 2
    items = {item["title"]: item for item in listed["notifications"]}
    assert [i["title"] for i in listed["notifications"]] == ["Savings boost", "Travel card"]
    first, second = items["Travel card"], items["Savings boost"]
    assert (first["offer"], first["answer"], first["read"], first["label"]) == (
        True,
        None,
        False,
        "Offer",
    )
    assert 'Notifications<span class="badge" id="unread-badge">2</span>' in anna.page()

    # Ben sees nothing of Anna's and can neither mark nor answer her notifications.
    seen = inbox_json(ben)
    assert (seen["unread"], seen["notifications"]) == (0, [])
    token = ben.csrf("/customer/notifications")
    path = "/customer/notifications/%d" % first["id"]
    assert ben.post(path + "/read", {}, token).status_code == 404
    assert ben.post(path + "/answer", {"outcome": "accepted"}, token).status_code == 404
    assert inbox_json(anna)["unread"] == 2

    # A form without its token changes nothing.
    forged = anna.client.post(path + "/answer", data={"outcome": "accepted"})
    assert forged.status_code == 403
    token = anna.csrf("/customer/notifications")
    assert anna.post(path + "/answer", {"outcome": "accepted"}, token).status_code == 302
    again = anna.post(path + "/answer", {"outcome": "declined"}, token)
    assert again.status_code == 409 and "answered this offer already" in again.get_data(
        as_text=True
    )
    other = "/customer/notifications/%d" % second["id"]
    assert anna.post(other + "/answer", {"outcome": "declined"}, token).status_code == 302
    after = {item["id"]: item for item in inbox_json(anna)["notifications"]}
    assert (after[first["id"]]["answer"], after[first["id"]]["read"]) == ("accepted", True)
    assert after[second["id"]]["answer"] == "declined"

    results = body(client.get("/api/offers/campaigns/%d" % travel))["results"]
    assert results == {"shown": 1, "accepted": 1, "declined": 0, "customers": 1}
    results = body(client.get("/api/offers/campaigns/%d" % savings))["results"]
    assert results == {"shown": 1, "accepted": 0, "declined": 1, "customers": 1}


def test_marking_read_one_or_all(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, people: dict[str, int]
) -> None:
    for name in ("one", "two", "three"):
        send(client, app_campaign(client, name))
    anna = Customer(cloud_app)
    anna.sign_in("anna@example.com")
    items = inbox_json(anna)["notifications"]
    token = anna.csrf("/customer/notifications")
    marked = anna.post("/customer/notifications/%d/read" % items[0]["id"], {}, token)
    assert marked.status_code == 302
    assert [i["read"] for i in inbox_json(anna)["notifications"]] == [True, False, False]
    assert anna.post("/customer/notifications/read", {}, token).status_code == 302
    assert inbox_json(anna)["unread"] == 0
    page = anna.page("/customer/notifications")
    assert "mark-read" not in page and "Accept" in page


def test_the_phone_app_says_it_relayed_a_wearable_notification_once(
    cloud_app: APIFlask, people: dict[str, int]
) -> None:
    from cloud.notifications import inbox

    with database_of(cloud_app).sessions() as session:
        watch, phone = (
            inbox.add(
                session,
                customer_id=people["anna"],
                channel=channel,
                source="holdings",
                title="Price alert: ACME",
                text="",
                now=now(),
            ).id
            for channel in ("wearable", "app")
        )
        session.commit()
    anna, ben = Customer(cloud_app), Customer(cloud_app)
    relayed = "/customer/notifications/%d/relayed"
    signed_out = anna.post(relayed % watch, {}, anna.csrf("/customer/signin"))
    assert (signed_out.status_code, signed_out.json) == (401, {"error": "signed out"})
    anna.sign_in("anna@example.com")
    ben.sign_in("ben@example.com")
    assert anna.client.post(relayed % watch).status_code == 403  # no CSRF token
    token = anna.csrf("/customer/notifications")
    (before,) = [i for i in inbox_json(anna)["notifications"] if i["id"] == watch]
    assert (before["relay_to_wearable"], before["relayed_at"]) == (True, None)

    first = anna.post(relayed % watch, {}, token)
    assert first.status_code == 200 and first.json is not None
    assert first.json["id"] == watch and first.json["relayed_at"] is not None
    again = anna.post(relayed % watch, {}, token)  # the app retries: the first time counts
    assert (again.status_code, again.json) == (200, first.json)
    other = ben.post(relayed % watch, {}, ben.csrf("/customer/notifications"))
    assert (other.status_code, other.json) == (404, {"error": "You have no such notification."})
    not_for_watch = anna.post(relayed % phone, {}, token)
    assert (not_for_watch.status_code, not_for_watch.json) == (
        409,
        {"error": "This notification is not for a wearable."},
    )

    items = {i["id"]: i for i in inbox_json(anna)["notifications"]}
    assert (items[watch]["relayed_at"], items[phone]["relayed_at"]) == (
        first.json["relayed_at"],
        None,
    )
    assert "sent to your watch" in anna.page("/customer/notifications")
    exported = anna.client.get("/customer/data/export").json
    assert exported is not None
    assert [n["relayed_at"] is not None for n in exported["notifications"]] == [True, False]


# ---- the customer's data: export, erasure, retention ---------------------------------------------


def test_the_inbox_is_exported_erased_and_purged_by_its_class(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, people: dict[str, int]
) -> None:
    travel = app_campaign(client, "travel")
    send(client, travel)
    anna = Customer(cloud_app)
    anna.sign_in("anna@example.com")
    downloaded = anna.client.get("/customer/data/export").json
    assert downloaded is not None
    (item,) = downloaded["notifications"]
    assert item["campaign"] == {"id": travel, "title": "Travel card"}
    assert (item["channel"], item["source"], item["title"], item["read_at"]) == (
        "app",
        "offers",
        "Travel card",
        None,
    )
    decision = downloaded["offer_decisions"][0]
    assert decision["gateway"].startswith("send:") and decision["inputs"]["channel"] == "app"
    assert "offers in the app (offers-1)" in anna.page("/customer/data")

    database = database_of(cloud_app)
    with database.sessions() as session:  # an old notification of Ben's, for retention
        from cloud.notifications import inbox

        old = now() - dt.timedelta(days=181)
        inbox.add(
            session,
            customer_id=people["ben"],
            channel="app",
            source="holdings",
            title="Old news",
            text="",
            now=old,
        )
        inbox.add(
            session,
            customer_id=people["ben"],
            channel="app",
            source="holdings",
            title="Recent news",
            text="",
            now=now() - dt.timedelta(days=179),
        )
        session.commit()
        customer = session.get(CustomerRow, people["anna"])
        assert customer is not None
        receipt = erasure.erase(session, customer, now())
        session.commit()
        assert receipt.deleted["notifications"] == 1
    assert [(r.customer_id, r.title) for r in inbox_rows(cloud_app)] == [
        (people["ben"], "Old news"),
        (people["ben"], "Recent news"),
    ]
    with database.sessions() as session:
        assert purge_records(session, now())[NOTIFICATIONS] == 1
        session.commit()
        ben = session.get(CustomerRow, people["ben"])
        assert ben is not None
        assert [n["title"] for n in export(session, ben, now())["notifications"]] == ["Recent news"]
