"""Event processing end to end, on SQLite and PostgreSQL: sealed kiosk batches through ingest,
the live worker's decisions and service requests (the shipped button -> call-back and
check-in -> ticket rules), consent refusals logged, the dry run (function, CLI and API)
deciding what the live worker decided, and a bad rules file leaving the old rules running.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from click.testing import CliRunner
from sqlalchemy import select

from bankiot_core import cose, downlink
from bankiot_core.batch import (
    CLOCK_UNIX_MS,
    KIOSK_CHECKIN,
    BatchReading,
    KioskEvent,
    encode_batch,
)
from bankiot_core.decoded import EVENT_UNIT
from cloud.customers import consent
from cloud.customers.models import Customer, CustomerWearable
from cloud.db import Database
from cloud.events import EXTENSION
from cloud.events.actions import Executor, LoggingChannel, SealedDownlink
from cloud.events.cli import events as events_cli
from cloud.events.engine import ACTED, NO_CONSENT
from cloud.events.library import RuleLibrary, load_folder
from cloud.events.models import RuleCursor, RuleDecision, ServiceRequest
from cloud.events.worker import EventWorker, dry_run
from cloud.fleet.delivery import Outgoing
from cloud.ingest.models import utc
from cloud.ingest.pipeline import Ingest
from cloud.offers.models import OfferDecision, OfferResult
from tests.cloud.customer_actions import active_campaign, customer_id_of
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers
from tests.cloud.ingest_support import SimGateway

NOW = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
ANNA = bytes.fromhex("C0FFEE000002")  # consents to activity and presence in branches
BEN = bytes.fromhex("C0FFEE000003")  # consents to activity only
ANNA_TEXT, BEN_TEXT = "C0:FF:EE:00:00:02", "C0:FF:EE:00:00:03"
DOOR = bytes.fromhex("A4C138000001")


def database_of(app: APIFlask) -> Database:
    return app.extensions["bankiot.db"]


@pytest.fixture
def branch(cloud_app: APIFlask) -> int:
    """Branch north with kiosk-n1, and the customers Anna and Ben with their wearables."""
    ids = add_branches(cloud_app, "north", "south")
    add_devices(
        cloud_app,
        {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": ids["north"], "status": "active"},
    )
    with database_of(cloud_app).sessions() as session:
        for email, address, purposes in (
            ("anna@example.com", ANNA_TEXT, ("activity", "presence_branch")),
            ("ben@example.com", BEN_TEXT, ("activity",)),
        ):
            customer = Customer(email=email, password_hash="-", active=True)
            session.add(customer)
            session.flush()
            session.add(
                CustomerWearable(
                    customer_id=customer.id,
                    address=address,
                    paired_at=NOW - dt.timedelta(days=1),
                    branch_id=ids["north"],
                )
            )
            for purpose in purposes:
                consent.record(session, customer.id, purpose, True, "web", NOW - dt.timedelta(1))
        session.commit()
    return ids["north"]


class Kiosk:
    """kiosk-n1 as the core seals its batches, and the cloud's ingest of them."""

    def __init__(self, app: APIFlask) -> None:
        self.gateway = SimGateway("kiosk-n1")
        self.ingest = Ingest(database_of(app), self.gateway.keys(), clock=lambda: NOW)
        self.seq = 0

    def send(self, *records: Any) -> None:
        payload = encode_batch(list(records), CLOCK_UNIX_MS)
        envelope = cose.seal_with(self.gateway.ring, self.seq, payload, self.gateway.aad)
        self.seq += 1
        result = self.ingest.handle(envelope, self.gateway.aad, "mqtt", "kiosk-n1")
        assert result.status == "accepted", result


def at_ms(seconds: float) -> int:
    return NOW_MS - 600_000 + int(seconds * 1000)  # ten minutes before NOW, plus seconds


def travel_campaign(app: APIFlask, now: dt.datetime) -> int:
    """The active kiosk campaign "travel", from ten days before ``now`` to ten days after;
    its id."""
    ten_days = dt.timedelta(days=10)
    with database_of(app).sessions() as session:
        made = active_campaign(
            session, now, since=ten_days, until=ten_days, created_at=now - 2 * ten_days
        )
        session.commit()
        return made


def morning(kiosk: Kiosk) -> None:
    """Anna presses her button twice (the second in the cooldown) and checks in; Ben
    presses his; a walk-in checks in."""
    kiosk.send(
        BatchReading(ANNA, at_ms(0), "button", 1, EVENT_UNIT),
        BatchReading(BEN, at_ms(5), "button", 1, EVENT_UNIT),
        KioskEvent(at_ms(10), KIOSK_CHECKIN, 1, ANNA, ""),
    )
    kiosk.send(
        BatchReading(ANNA, at_ms(60), "button", 1, EVENT_UNIT),
        KioskEvent(at_ms(70), KIOSK_CHECKIN, 2, None, ""),
    )


def stored_decisions(app: APIFlask) -> list[RuleDecision]:
    with database_of(app).sessions() as session:
        rows = list(session.scalars(select(RuleDecision).order_by(RuleDecision.id)))
        session.expunge_all()
        return rows


def requests(app: APIFlask) -> list[tuple[str, str, int | None, str, int | None]]:
    with database_of(app).sessions() as session:
        rows = session.scalars(select(ServiceRequest).order_by(ServiceRequest.id)).all()
        return [(r.kind, r.subject, r.customer_id, r.rule_id, r.branch_id) for r in rows]


def worker_for(app: APIFlask, folder: Path | None = None) -> EventWorker:
    return EventWorker(database_of(app), RuleLibrary(folder))


def test_button_and_checkin_become_requests_branch_staff_see(
    cloud_app: APIFlask, branch: int
) -> None:
    worker = worker_for(cloud_app)
    assert worker.run_once(NOW).events == 0  # the cursor starts at the newest event
    kiosk = Kiosk(cloud_app)
    morning(kiosk)
    summary = worker.run_once(NOW + dt.timedelta(seconds=1))
    assert summary.events == 5 and summary.acted == 3

    anna = customer_id_of(cloud_app, ANNA_TEXT)
    assert requests(cloud_app) == [
        ("callback", ANNA_TEXT, anna, "inbound-callback", branch),
        ("ticket", ANNA_TEXT, anna, "checkin-ticket", branch),
        ("ticket", "kiosk-n1", None, "checkin-ticket", branch),
    ]
    got = [(d.rule_id, d.subject, d.reason, d.acted) for d in stored_decisions(cloud_app)]
    assert got == [
        ("inbound-callback", ANNA_TEXT, ACTED, True),
        ("inbound-callback", BEN_TEXT, NO_CONSENT, False),
        ("checkin-ticket", ANNA_TEXT, ACTED, True),
        ("inbound-callback", ANNA_TEXT, "rate_limited", False),
        ("checkin-ticket", "kiosk-n1", ACTED, True),
    ]
    refusal = stored_decisions(cloud_app)[1]
    assert refusal.reasons == ["no consent to presence_branch"]
    assert refusal.inputs["granted"] == ["activity"] and "profile" not in refusal.inputs
    assert refusal.inputs["event"]["kind"] == "button"

    # Nothing twice: a further pass finds no new events.
    assert worker.run_once(NOW + dt.timedelta(seconds=2)).events == 0
    assert len(requests(cloud_app)) == 3

    callers = Callers(cloud_app)
    client = cloud_app.test_client()
    callers.as_manager(branch)
    body = client.get("/api/events/service-requests").get_json()
    assert [(i["kind"], i["subject"], i["customer_id"]) for i in body["items"]] == [
        ("callback", ANNA_TEXT, anna),
        ("ticket", ANNA_TEXT, anna),
        ("ticket", "kiosk-n1", None),
    ]
    callers.as_operations()
    body = client.get("/api/events/service-requests?kind=callback").get_json()
    assert [(i["kind"], i["subject"]) for i in body["items"]] == [("callback", None)]
    others = add_branches(cloud_app, "east")["east"]
    callers.as_manager(others)
    assert client.get("/api/events/service-requests").get_json()["items"] == []
    assert client.get("/api/events/service-requests?branch=%d" % branch).status_code == 404

    callers.as_manager(branch)
    first = body["items"][0]["id"]
    closed = client.post("/api/events/service-requests/%d/close" % first).get_json()
    assert closed["state"] == "closed" and closed["closed_by"]
    assert len(client.get("/api/events/service-requests").get_json()["items"]) == 2
    decisions = client.get("/api/events/decisions?acted=false").get_json()["items"]
    assert [d["reason"] for d in decisions] == ["rate_limited", NO_CONSENT]


def test_dry_run_decides_what_the_live_worker_decided(
    cloud_app: APIFlask, branch: int, tmp_path: Path
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "door.toml").write_text(
        """
[[rule]]
id = "door-forced"
version = 1
purpose = "none"
on = "door"
[rule.window]
type = "count"
at_least = 2
minutes = 1
[[rule.actions]]
do = "alert"
severity = "critical"
message = "The door was opened twice in a minute"
""",
        encoding="utf-8",
    )
    worker = worker_for(cloud_app, folder)
    worker.run_once(NOW)
    kiosk = Kiosk(cloud_app)
    morning(kiosk)
    worker.run_once(NOW + dt.timedelta(seconds=1))
    kiosk.send(
        BatchReading(DOOR, at_ms(100), "door", 1, EVENT_UNIT),
        BatchReading(DOOR, at_ms(130), "door", 1, EVENT_UNIT),
        BatchReading(ANNA, at_ms(900), "button", 1, EVENT_UNIT),
    )
    worker.run_once(NOW + dt.timedelta(seconds=2))
    live = [
        (d.rule_id, d.rule_version, d.event_id, d.subject, utc(d.at), d.reason)
        for d in stored_decisions(cloud_app)
    ]
    assert ("door-forced", 1) in {(row[0], row[1]) for row in live}
    assert ("alert", "A4:C1:38:00:00:01") in {(r[0], r[1]) for r in requests(cloud_app)}

    with database_of(cloud_app).sessions() as session:
        replayed = dry_run(session, load_folder(folder))
    assert [d.summary() for d in replayed] == live

    # The CLI prints the same decisions and stores nothing.
    before = len(stored_decisions(cloud_app))
    env = {"BANKIOT_DATABASE_URL": str(database_of(cloud_app).url)}
    result = CliRunner().invoke(
        events_cli,
        ["dry-run", "--rules", str(folder), "--data-dir", str(tmp_path / "d"), "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.output.splitlines()]
    assert [(p["rule_id"], p["event_id"], p["reason"]) for p in printed] == [
        (row[0], row[2], row[5]) for row in live
    ]
    assert len(stored_decisions(cloud_app)) == before

    # The API too, for cloud operations (subjects hidden from that role).
    callers = Callers(cloud_app)
    callers.as_operations()
    text = (folder / "door.toml").read_text(encoding="utf-8")
    response = cloud_app.test_client().post("/api/events/dry-run", json={"rules": text})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert [(d["rule_id"], d["event_id"], d["reason"]) for d in body["decisions"]] == [
        (row[0], row[2], row[5]) for row in live
    ]
    assert {d["subject"] for d in body["decisions"]} == {None}
    bad = cloud_app.test_client().post("/api/events/dry-run", json={"rules": "[[rule]]\nid = 1"})
    assert bad.status_code == 422 and "request: key 'rule[0].id'" in json.dumps(bad.get_json())
    callers.as_manager(branch)
    assert cloud_app.test_client().post("/api/events/dry-run", json={}).status_code == 403


def test_a_bad_rules_file_leaves_the_previous_rules_running(
    cloud_app: APIFlask, branch: int, tmp_path: Path
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    rule_file = folder / "inbound.toml"
    rule_file.write_text(
        '[[rule]]\nid = "inbound-callback"\nversion = 7\npurpose = "presence_branch"\n'
        'on = "button"\n[[rule.actions]]\ndo = "callback"\nmessage = "v7"\n',
        encoding="utf-8",
    )
    os.utime(rule_file, ns=(1_000_000_000, 1_000_000_000))
    worker = worker_for(cloud_app, folder)
    worker.run_once(NOW)
    rule_file.write_text("[[rule]]\nid = \n", encoding="utf-8")  # an operator's typo
    os.utime(rule_file, ns=(2_000_000_000, 2_000_000_000))
    kiosk = Kiosk(cloud_app)
    kiosk.send(BatchReading(ANNA, at_ms(0), "button", 1, EVENT_UNIT))
    worker.run_once(NOW + dt.timedelta(seconds=1))
    assert worker.library.error is not None and worker.library.error.startswith("inbound.toml: ")
    (decision,) = stored_decisions(cloud_app)
    assert (decision.rule_id, decision.rule_version, decision.reason) == (
        "inbound-callback",
        7,
        ACTED,
    )
    # The app's library reports the same one line through the CLI's check.
    env = {"BANKIOT_DATABASE_URL": str(database_of(cloud_app).url)}
    result = CliRunner().invoke(events_cli, ["check", "--rules", str(folder)], env=env)
    assert result.exit_code == 1 and "inbound.toml: not TOML" in result.output
    assert cloud_app.extensions[EXTENSION] is not None


def test_events_committed_out_of_order_are_picked_up_from_the_gaps(
    cloud_app: APIFlask, branch: int
) -> None:
    worker = worker_for(cloud_app)
    worker.run_once(NOW)
    kiosk = Kiosk(cloud_app)
    kiosk.send(BatchReading(ANNA, at_ms(0), "button", 1, EVENT_UNIT))
    with database_of(cloud_app).sessions() as session:
        cursor = session.get(RuleCursor, "live")
        assert cursor is not None
        # As if a later id had been read while this one's transaction was still open.
        cursor.last_id += 1
        cursor.gaps = {str(cursor.last_id): NOW.isoformat()}
        session.commit()
    summary = worker.run_once(NOW + dt.timedelta(seconds=1))
    assert summary.events == 1 and summary.acted == 1
    with database_of(cloud_app).sessions() as session:
        cursor = session.get(RuleCursor, "live")
        assert cursor is not None and cursor.gaps == {}


def test_notifications_and_offers_follow_the_commit(
    cloud_app: APIFlask, branch: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "welcome.toml").write_text(
        '[[rule]]\nid = "welcome"\nversion = 2\npurpose = "presence_branch"\n'
        'on = "kiosk_checkin"\n[rule.profile]\nhome_branch = %d\n'
        '[[rule.actions]]\ndo = "notify"\nchannel = "wearable"\nmessage = "Welcome back"\n'
        '[[rule.actions]]\ndo = "offer"\noffer = "savings-boost"\n' % branch,
        encoding="utf-8",
    )
    channel = LoggingChannel()
    worker = EventWorker(
        database_of(cloud_app), RuleLibrary(folder), Executor(channel, show_offer=None)
    )
    worker.run_once(NOW)
    Kiosk(cloud_app).send(KioskEvent(at_ms(0), KIOSK_CHECKIN, 1, ANNA, ""))
    with caplog.at_level("INFO", logger="cloud.events.actions"):
        worker.run_once(NOW + dt.timedelta(seconds=1))
    anna = customer_id_of(cloud_app, ANNA_TEXT)
    (sent,) = channel.sent  # pushed after the commit; the inbox row is its notification
    assert {k: v for k, v in sent.items() if k != "notification_id"} == {
        "channel": "wearable",
        "customer_id": anna,
        "message": "Welcome back",
        "source": "rule:welcome",
    }
    assert "offer 'savings-boost' of rule welcome not shown" in caplog.text
    assert ANNA_TEXT not in caplog.text  # logs name the customer by id, never the wearable
    welcome = [d for d in stored_decisions(cloud_app) if d.rule_id == "welcome"]
    assert [(d.rule_version, d.reason, d.inputs["profile"]) for d in welcome] == [
        (2, ACTED, {"home_branch": branch})
    ]
    assert [a["do"] for a in welcome[0].actions] == ["notify", "offer"]


def test_a_rules_offer_is_decided_logged_and_sent_sealed_to_the_kiosk(
    cloud_app: APIFlask, branch: int, tmp_path: Path
) -> None:
    travel = travel_campaign(cloud_app, NOW)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "offer.toml").write_text(
        '[[rule]]\nid = "travel-at-kiosk"\nversion = 1\npurpose = "presence_branch"\n'
        'on = "kiosk_checkin"\n[[rule.actions]]\ndo = "offer"\noffer = "%d"\n'
        # by name, on a button press: a rule Ben's consents let act, but offers need
        # presence in branches
        '[[rule]]\nid = "travel-on-button"\nversion = 1\npurpose = "activity"\n'
        'on = "button"\n[[rule.actions]]\ndo = "offer"\noffer = "travel"\n' % travel,
        encoding="utf-8",
    )
    kiosk = Kiosk(cloud_app)
    sent: list[Outgoing] = []
    offers = SealedDownlink(kiosk.ingest.key_source, sent.append)
    executor = Executor(offers=offers)
    worker = EventWorker(database_of(cloud_app), RuleLibrary(folder), executor)
    worker.run_once(NOW)
    # Anna checks in (presence in branches given); Ben (not given) presses his button.
    kiosk.send(
        KioskEvent(at_ms(0), KIOSK_CHECKIN, 1, ANNA, ""),
        BatchReading(BEN, at_ms(1), "button", 1, EVENT_UNIT),
    )
    worker.run_once(NOW + dt.timedelta(seconds=1))

    # One OFFERS message, for the kiosk's own downlink topic, opened as the kiosk opens it.
    (outgoing,) = sent
    topic = downlink.downlink_topic("kiosk-n1")
    assert outgoing.topic == topic
    opened = downlink.open_downlink(
        outgoing.payload, kiosk.gateway.ring, kiosk.gateway.window, topic
    )
    assert opened.kind == downlink.KIND_OFFERS
    assert opened.message.wearable == ANNA
    assert [(o.id, o.title, o.text) for o in opened.message.items] == [
        (travel, "Travel card", "No fees abroad")
    ]
    offered_at = NOW + dt.timedelta(seconds=1)  # the worker's pass: valid 30 minutes
    assert opened.message.expires == int((offered_at + dt.timedelta(minutes=30)).timestamp())
    # Both rules acted; each offer's decision is logged beside the rule's decision, which
    # it names. Ben's is "no": nothing more about him was read, nothing sent.
    ours = {d.rule_id: d for d in stored_decisions(cloud_app) if d.rule_id.startswith("travel")}
    assert {(d.subject, d.reason) for d in ours.values()} == {
        (ANNA_TEXT, ACTED),
        (BEN_TEXT, ACTED),
    }
    rule_decision = ours["travel-at-kiosk"]
    with database_of(cloud_app).sessions() as session:
        decision, refused = session.scalars(select(OfferDecision).order_by(OfferDecision.id))
        assert (refused.event_id, refused.customer_id) == (
            -ours["travel-on-button"].id,
            customer_id_of(cloud_app, BEN_TEXT),
        )
        assert (refused.outcome, refused.inputs["attributes"]) == ("none", {})
        assert refused.reasons == ["no consent to presence in branches: no offers decided"]
        assert (decision.gateway, decision.event_id) == ("kiosk-n1", -rule_decision.id)
        assert (decision.customer_id, decision.outcome, decision.offered) == (
            customer_id_of(cloud_app, ANNA_TEXT),
            "offered",
            [travel],
        )
        assert decision.branch_id == branch
        assert (decision.inputs["rule"], decision.inputs["consented"]) == ("travel-at-kiosk", True)
        assert decision.reasons == ["travel (campaign %d): offered (everyone)" % travel]
        # Anna saw it on the kiosk: the cap (once in 7 days) is reached.
        session.add(
            OfferResult(
                campaign_id=travel,
                customer_id=customer_id_of(cloud_app, ANNA_TEXT),
                channel="kiosk",
                outcome="shown",
                at=NOW,
                gateway="kiosk-n1",
                event_id=3,
            )
        )
        session.commit()

    # Her next check-in: the rule acts again, the offer is capped, nothing is sent (the
    # kiosk keeps what it has), and the decision says why.
    kiosk.send(KioskEvent(at_ms(120), KIOSK_CHECKIN, 4, ANNA, ""))
    worker.run_once(NOW + dt.timedelta(seconds=2))
    assert len(sent) == 1 and executor.failures == 0
    with database_of(cloud_app).sessions() as session:
        capped = session.scalars(select(OfferDecision).order_by(OfferDecision.id)).all()[-1]
        assert (capped.outcome, capped.offered) == ("none", [])
        assert capped.reasons == [
            "travel (campaign %d): capped: shown 1 times in 7 days (at most 1)" % travel
        ]
