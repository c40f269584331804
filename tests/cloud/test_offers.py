"""Campaigns and offers: audience rules, the decision, and the decision made by ingest for a
kiosk check-in, logged with its reasons and sent as a sealed OFFERS message; results stored
from the kiosk's offer events; the API. Database tests run on SQLite and PostgreSQL.

The gateway is the portable core's batcher and sealer (``tests.cloud.ingest_support``), so
the check-in travels as a kiosk's does; the OFFERS message is opened with the core as the
kiosk's engine opens it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from bankiot_core import batch, downlink
from bankiot_core.replay import ReplayWindow
from cloud.customers import consent
from cloud.customers.models import Customer, CustomerWearable
from cloud.db import Database
from cloud.fleet.models import Branch, Device
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.pipeline import Envelope, Ingest
from cloud.offers import audience, campaigns
from cloud.offers.eligibility import CampaignView, decide
from cloud.offers.kiosk import KioskOffers
from cloud.offers.models import Campaign, OfferDecision, OfferResult
from tests.cloud.identity_actions import Callers
from tests.cloud.ingest_support import SimGateway, migrated

NOW = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
KIOSK = "kiosk-north"
WEARABLE = bytes.fromhex("C0FFEE000002")
ADDRESS = "C0:FF:EE:00:00:02"
OTHER = bytes.fromhex("C0FFEE000003")  # paired, but no consent to presence in branches
OTHER_ADDRESS = "C0:FF:EE:00:00:03"


# ---- audience rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{", "not JSON"),
        (False, "a rule is true or an object"),
        ({"attr": "salary", "op": "eq", "value": 1}, "unknown attribute 'salary'"),
        ({"attr": "branch", "op": "gt", "value": "B1"}, "gt compares numbers"),
        ({"attr": "wearables", "op": "eq", "value": "2"}, "is not a value of wearables"),
        ({"attr": "branch", "op": "in", "value": []}, "in needs a non-empty list"),
        ({"attr": "purposes", "op": "eq", "value": "x"}, "has is for list attributes only"),
        ({"all": []}, r"rule.all must be a non-empty list"),
        ({"any": [True, {"nor": 1}]}, r"rule.any\[1\]: expected all, any, not"),
        ({"attr": "wearables", "op": "~", "value": 1}, "unknown operator"),
        ({"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": True}}}}}}}}, "deep"),
        ({"any": [True] * 64}, "more than 64 parts"),
    ],
)
def test_audience_rules_that_are_not_rules_are_refused_with_the_place(
    rule: Any, message: str
) -> None:
    with pytest.raises(audience.AudienceError, match=message):
        audience.parse(rule)


def test_audience_rules_evaluate_with_the_deciding_test_in_words() -> None:
    rule = audience.parse(
        '{"all": [{"attr": "relationship_days", "op": "ge", "value": 365},'
        ' {"attr": "purposes", "op": "has", "value": "presence_branch"}]}'
    )
    loyal = {"relationship_days": 400, "purposes": ["presence_branch"]}
    assert audience.evaluate(rule, loyal) == (True, "all of 2 tests")
    assert audience.evaluate(rule, {**loyal, "relationship_days": 30}) == (
        False,
        "relationship_days >= 365 (is 30)",
    )
    # an unknown attribute (not profiled yet) never matches, not even "ne"
    other = audience.parse({"attr": "segment", "op": "ne", "value": "student"})
    assert audience.evaluate(other, {"segment": None}) == (
        False,
        'segment != "student" (is unknown)',
    )
    assert audience.evaluate(True, {}) == (True, "everyone")
    branch = audience.parse({"not": {"attr": "branch", "op": "in", "value": ["B1", "B2"]}})
    assert audience.evaluate(branch, {"branch": "B3"})[0] is True
    assert audience.evaluate(branch, {"branch": "B2"}) == (False, 'not (branch in ["B1", "B2"])')


# ---- the decision, pure --------------------------------------------------------------------


def view(cid: int, **changes: Any) -> CampaignView:
    values: dict[str, Any] = {
        "id": cid,
        "name": "C%d" % cid,
        "version": 1,
        "channel": "kiosk",
        "status": "active",
        "starts_at": NOW - DAY,
        "ends_at": NOW + 30 * DAY,
        "cap_count": 1,
        "cap_days": 7,
        "audience": True,
        "title": "Offer %d" % cid,
    }
    values.update(changes)
    return CampaignView(**values)


def test_the_decision_offers_the_eligible_and_says_why_not_the_others() -> None:
    found = [
        view(1),
        view(2),  # shown once two days ago: capped at 1 per 7 days
        view(3, ends_at=NOW - DAY),
        view(4, starts_at=NOW + DAY),
        view(5, channel="app"),
        view(6, cap_count=2),  # shown once: one more allowed
        view(7, audience={"attr": "relationship_days", "op": "ge", "value": 365}),
        view(8, status="paused"),
        view(9, cap_days=1),  # shown two days ago: outside its one-day window
    ]
    shown = [(2, NOW - 2 * DAY), (6, NOW - DAY), (9, NOW - 2 * DAY)]
    decision = decide(found, {"relationship_days": 10}, shown, NOW, consented=True)
    assert [c.id for c in decision.offered] == [1, 6, 9]
    why = {v.campaign: v.reason for v in decision.verdicts}
    assert why[2] == "C2 (campaign 2): capped: shown 1 times in 7 days (at most 1)"
    assert why[3] == "C3 (campaign 3): ended 2026-11-28"
    assert why[4] == "C4 (campaign 4): starts 2026-11-30"
    assert why[5] == "C5 (campaign 5): for the app channel, not kiosk"
    assert why[7].endswith("not in the audience: relationship_days >= 365 (is 10)")
    assert why[8] == "C8 (campaign 8): campaign is paused"
    assert why[1] == "C1 (campaign 1): offered (everyone)"
    # four reasons at most: the offers first, then how many more
    assert len(decision.reasons) == 4
    assert decision.reasons[:3] == (why[1], why[6], why[9])
    assert decision.reasons[3] == "and 6 more campaigns (see the inputs)"


def test_without_consent_nothing_is_read_or_decided() -> None:
    decision = decide([view(1)], {}, [], NOW, consented=False)
    assert decision.offered == () and decision.verdicts == ()
    assert decision.reasons == ("no consent to presence in branches: no offers decided",)
    assert decide([], {}, [], NOW, consented=True).reasons == ("no campaign is running",)


def test_at_most_eight_offers_go_at_once() -> None:
    decision = decide([view(i) for i in range(1, 11)], {}, [], NOW, consented=True)
    assert [c.id for c in decision.offered] == list(range(1, 9))
    assert decision.verdicts[9].reason.endswith("not offered: 8 offers at most at once")


# ---- decided by ingest, for a kiosk check-in ----------------------------------------------


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def seed(db: Database) -> dict[str, int]:
    """A branch with the kiosk; a customer of three years who consents to presence in
    branches, with WEARABLE; one without that consent, with OTHER; four campaigns."""
    with db.sessions() as session:
        branch = Branch(code="N1", name="North")
        session.add(branch)
        session.flush()
        session.add(Device(uid=KIOSK, kind="kiosk", branch_id=branch.id, status="active"))
        loyal = Customer(email="ada@example.org", password_hash="x", created_at=NOW - 1100 * DAY)
        other = Customer(email="bob@example.org", password_hash="x", created_at=NOW - 10 * DAY)
        session.add_all([loyal, other])
        session.flush()
        for customer, address in ((loyal, ADDRESS), (other, OTHER_ADDRESS)):
            session.add(CustomerWearable(customer_id=customer.id, address=address, paired_at=NOW))
        consent.record(session, loyal.id, "presence_branch", True, "web", NOW - DAY)
        consent.record(session, other.id, "activity", True, "web", NOW - DAY)
        common = {"starts_at": NOW - 10 * DAY, "ends_at": NOW + 10 * DAY, "status": "active"}
        made = {}
        for name, extra in (
            ("travel", {"audience": True, "title": "Travel card", "text": "No fees abroad"}),
            ("capped", {"audience": True, "title": "Savings", "text": "2 % more"}),
            ("ended", {"audience": True, "title": "Old", "ends_at": NOW - DAY}),
            (
                "loyal",
                {
                    "audience": {"attr": "relationship_days", "op": "ge", "value": 1000},
                    "title": "Thank you",
                    "text": "A loyalty bonus",
                },
            ),
        ):
            values = {"name": name, "text": "", "channel": "kiosk", "cap_count": 1, "cap_days": 7}
            values.update(common)
            values.update(extra)
            made[name] = campaigns.create(session, values, "test", NOW - 20 * DAY).id
        session.add(
            OfferResult(
                campaign_id=made["capped"],
                customer_id=loyal.id,
                channel="kiosk",
                outcome="shown",
                at=NOW - 2 * DAY,
                gateway=KIOSK,
                event_id=999,
            )
        )
        session.commit()
        made["branch"] = branch.id
        made["loyal_customer"] = loyal.id
        made["other_customer"] = other.id
        return made


def kiosk_batches(gw: SimGateway, *events: tuple[int, int, bytes | None, str]) -> list[Envelope]:
    """Kiosk events ``(kind, id, wearable, detail)`` as the kiosk sends them: each urgent,
    in a sealed batch of its own, on its MQTT uplink topic."""
    for kind, event_id, wearable, detail in events:
        gw.now_ms += 10
        gw._queue(gw.batcher.add_kiosk(kind, event_id, wearable, detail, gw.now_ms))
    topic = "devices/%s/up" % KIOSK
    return [Envelope(data, topic, "mqtt", KIOSK) for _, data in gw.outbox()]


def decisions_of(db: Database) -> list[OfferDecision]:
    with db.sessions() as session:
        return list(session.scalars(select(OfferDecision).order_by(OfferDecision.event_id)))


def test_a_check_in_gets_its_offers_decided_logged_and_sealed_for_the_kiosk(
    database: Database,
) -> None:
    made = seed(database)
    gw = SimGateway(KIOSK)
    ingest = Ingest(database, gw.keys(), kiosk_offers=KioskOffers(), clock=lambda: NOW)
    envelopes = kiosk_batches(
        gw, (batch.KIOSK_CHECKIN, 1, WEARABLE, ""), (batch.KIOSK_CHECKIN, 2, OTHER, "")
    )
    result, quiet = ingest.handle_many(envelopes)  # one group, one transaction
    assert (result.status, quiet.status) == ("accepted", "accepted")
    assert gw.receive(result.ack or b"") == 1 and quiet.downlinks == ()
    # one OFFERS message (the consenting customer's), sealed for the kiosk's topic, after
    # the ack in its replay window
    assert len(result.downlinks) == 1
    window = ReplayWindow(size=64)
    opened = downlink.open_downlink(
        result.downlinks[0], gw.ring, window, downlink.downlink_topic(KIOSK)
    )
    assert opened.kind == downlink.KIND_OFFERS
    offers = opened.message
    assert offers.wearable == WEARABLE
    assert offers.expires == int((NOW + dt.timedelta(minutes=30)).timestamp())
    assert [(o.id, o.title, o.text) for o in offers.items] == [
        (made["travel"], "Travel card", "No fees abroad"),
        (made["loyal"], "Thank you", "A loyalty bonus"),
    ]
    first, second = decisions_of(database)
    assert (first.event_id, first.customer_id, first.outcome) == (
        1,
        made["loyal_customer"],
        "offered",
    )
    assert first.offered == [made["travel"], made["loyal"]]
    assert first.branch_id == made["branch"] and first.version == "offers-1"
    assert first.reasons[0] == "travel (campaign %d): offered (everyone)" % made["travel"]
    assert first.reasons[1].endswith("offered (relationship_days >= 1000)")
    assert "capped: shown 1 times in 7 days (at most 1)" in first.reasons[2]
    assert first.reasons[3].endswith("ended 2026-11-28")
    assert first.inputs["consented"] is True
    assert first.inputs["attributes"]["relationship_days"] == 1100
    assert first.inputs["attributes"]["branch"] == "N1"
    assert first.inputs["campaign_versions"] == {
        str(made[n]): 1 for n in ("travel", "capped", "ended", "loyal")
    }
    # the customer without consent: logged, nothing read about them, nothing sent
    assert (second.event_id, second.customer_id) == (2, made["other_customer"])
    assert (second.outcome, second.offered) == ("none", [])
    assert second.reasons == ["no consent to presence in branches: no offers decided"]
    assert second.inputs == {
        "consented": False,
        "attributes": {},
        "verdicts": [],
        "campaign_versions": {},
    }
    with database.sessions() as session:  # and ingest did not store that check-in
        kinds = session.execute(select(KioskEventRow.event_id)).scalars().all()
    assert kinds == [1]
    # a resent copy is a duplicate: acknowledged again, decided no more, nothing sent
    again = ingest.handle_many(envelopes[:1])[0]
    assert (again.status, again.downlinks) == ("duplicate", ())
    assert len(decisions_of(database)) == 2


def test_what_became_of_the_offers_is_stored_once_with_the_kiosk_events(
    database: Database,
) -> None:
    made = seed(database)
    gw = SimGateway(KIOSK)
    ingest = Ingest(database, gw.keys(), kiosk_offers=KioskOffers(), clock=lambda: NOW)
    travel, loyal = "%d" % made["travel"], "%d" % made["loyal"]
    envelopes = kiosk_batches(
        gw,
        (batch.KIOSK_OFFER_SHOWN, 3, WEARABLE, travel),
        (batch.KIOSK_OFFER_SHOWN, 4, WEARABLE, loyal),
        (batch.KIOSK_OFFER_ACCEPTED, 5, WEARABLE, travel),
        (batch.KIOSK_OFFER_DECLINED, 6, WEARABLE, loyal),
        (batch.KIOSK_OFFER_SHOWN, 7, WEARABLE, "424242"),  # no such campaign: no result
        (batch.KIOSK_OFFER_ACCEPTED, 8, OTHER, travel),  # no consent: withheld by ingest
    )
    results = ingest.handle_many(envelopes)
    assert [r.status for r in results] == ["accepted"] * 6
    assert all(r.downlinks == () for r in results)
    assert results[-1].withheld == {"presence_branch": 1}
    assert {r.status for r in ingest.handle_many(envelopes)} == {"duplicate"}
    with database.sessions() as session:
        rows = session.execute(
            select(
                OfferResult.event_id,
                OfferResult.campaign_id,
                OfferResult.customer_id,
                OfferResult.outcome,
                OfferResult.channel,
                OfferResult.branch_id,
            )
            .where(OfferResult.event_id != 999)
            .order_by(OfferResult.event_id)
        ).all()
        summary = campaigns.results(session, made["travel"])
    customer, branch = made["loyal_customer"], made["branch"]
    assert [tuple(r) for r in rows] == [
        (3, made["travel"], customer, "shown", "kiosk", branch),
        (4, made["loyal"], customer, "shown", "kiosk", branch),
        (5, made["travel"], customer, "accepted", "kiosk", branch),
        (6, made["loyal"], customer, "declined", "kiosk", branch),
    ]
    assert summary == {"shown": 1, "accepted": 1, "declined": 0, "customers": 1}
    # the next check-in: "travel" was shown now, so it is capped (1 per 7 days)
    (checkin,) = ingest.handle_many(kiosk_batches(gw, (batch.KIOSK_CHECKIN, 9, WEARABLE, "")))
    (decision,) = decisions_of(database)
    assert decision.offered == []  # both shown just now: capped, 1 per 7 days
    assert decision.reasons[0].startswith("travel (campaign %s): capped: shown 1" % travel)
    assert decision.reasons[3].startswith("loyal (campaign %s): capped: shown 1" % loyal)
    (offers,) = checkin.downlinks  # "nothing today" is an answer too
    opened = downlink.open_downlink(offers, gw.ring, gw.window, downlink.downlink_topic(KIOSK))
    assert opened.message.items == ()


def test_offers_that_fail_cost_the_batch_nothing(database: Database) -> None:
    seed(database)
    gw = SimGateway(KIOSK)

    class Broken(KioskOffers):
        def after(self, *args: Any, **kwargs: Any) -> list[bytes]:
            raise RuntimeError("a bug in the offers")

    ingest = Ingest(database, gw.keys(), kiosk_offers=Broken(), clock=lambda: NOW)
    (result,) = ingest.handle_many(kiosk_batches(gw, (batch.KIOSK_CHECKIN, 1, WEARABLE, "")))
    assert result.status == "accepted" and result.downlinks == ()
    assert gw.receive(result.ack or b"") == 1
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(KioskEventRow)) == 1


# ---- the API ---------------------------------------------------------------------------------


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    callers = Callers(cloud_app)
    callers.as_operations()
    return callers


CAMPAIGN = {
    "name": "Travel card",
    "audience": {"attr": "purposes", "op": "has", "value": "presence_branch"},
    "title": "Travel card",
    "text": "No fees abroad for a year",
    "cap_count": 1,
    "cap_days": 7,
    "starts_at": "2026-11-01T00:00:00+00:00",
    "ends_at": "2027-01-01T00:00:00+00:00",
}


def test_operations_create_change_and_list_campaigns(
    client: FlaskClient, callers: Callers, cloud_app: APIFlask
) -> None:
    created = client.post("/api/offers/campaigns", json=CAMPAIGN)
    assert created.status_code == 201, created.json
    body = created.json
    assert body is not None
    assert (body["status"], body["version"], body["created_by"]) == ("draft", 1, "operator:ops")
    assert body["results"] == {"shown": 0, "accepted": 0, "declined": 0, "customers": 0}
    again = client.post("/api/offers/campaigns", json=CAMPAIGN)
    assert again.status_code == 409
    bad = client.post("/api/offers/campaigns", json={**CAMPAIGN, "name": "x", "audience": 3})
    assert bad.status_code == 422 and "a rule is true or an object" in bad.get_data(as_text=True)
    long = client.post(
        "/api/offers/campaigns", json={**CAMPAIGN, "name": "y", "title": "\u20ac" * 14}
    )
    assert long.status_code == 422 and "title must be 1 to 40 bytes" in long.get_data(as_text=True)
    path = "/api/offers/campaigns/%d" % body["id"]
    active = client.patch(path, json={"status": "active"})
    assert active.status_code == 200 and active.json is not None
    assert (active.json["status"], active.json["version"]) == ("active", 2)
    listed = client.get("/api/offers/campaigns?status=active").json
    assert listed is not None and [c["name"] for c in listed["campaigns"]] == ["Travel card"]
    assert client.get("/api/offers/campaigns/999").status_code == 404
    assert client.get("/api/offers/decisions").json == {"decisions": []}
    callers.as_manager(1)
    assert client.get("/api/offers/campaigns").status_code == 403
    with cloud_app.app_context():
        db = cloud_app.extensions["bankiot.db"]
        with db.sessions() as session:
            assert session.scalar(select(Campaign.version).where(Campaign.id == body["id"])) == 2


def test_the_decisions_api_filters_and_leaves_out_who_for_operations(
    client: FlaskClient, callers: Callers, cloud_app: APIFlask
) -> None:
    with cloud_app.app_context():
        db = cloud_app.extensions["bankiot.db"]
        with db.sessions() as session:
            customer = Customer(email="ada@example.org", password_hash="x", created_at=NOW)
            session.add(customer)
            session.flush()
            common = {"at": NOW, "gateway": KIOSK, "customer_id": customer.id, "version": "v"}
            session.add_all(
                [
                    OfferDecision(
                        event_id=1,
                        outcome="offered",
                        offered=[7, 8],
                        reasons=["travel: offered"],
                        inputs={"consented": True, "attributes": {"branch": "N1"}},
                        **common,
                    ),
                    OfferDecision(
                        event_id=2,
                        outcome="none",
                        offered=[],
                        reasons=["nothing today"],
                        inputs={"consented": True, "attributes": {"branch": "N1"}},
                        **common,
                    ),
                ]
            )
            session.commit()

    def events(query: str) -> list[int]:
        body = client.get("/api/offers/decisions" + query).json
        assert body is not None
        return [item["event_id"] for item in body["decisions"]]

    assert events("") == [2, 1]  # newest first
    assert events("?offered=true") == [1]
    assert events("?offered=false") == [2]
    assert events("?campaign=8") == [1]
    assert events("?campaign=9") == []
    assert events("?offered=false&campaign=8") == []
    assert events("?limit=1") == [2]
    # operations see that a customer was involved, not who: no id, no attributes
    body = client.get("/api/offers/decisions?offered=true").json
    assert body is not None
    (item,) = body["decisions"]
    assert (item["customer_id"], item["inputs"]) == (None, {"consented": True})
    assert item["offered"] == [7, 8] and item["reasons"] == ["travel: offered"]


def test_the_offers_command_creates_changes_lists_and_refuses_in_one_line(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from cloud.offers.cli import offers

    runner = CliRunner()
    where = ["--data-dir", str(tmp_path)]
    dates = ["--start", "2026-11-01", "--end", "2027-01-01"]
    made = runner.invoke(offers, ["create", "Travel", "--title", "Travel card", *dates, *where])
    assert made.exit_code == 0, made.output
    assert made.output.startswith("created 1  Travel") and " draft " in made.output
    rule = '{"attr": "salary", "op": "eq", "value": 1}'
    bad = runner.invoke(offers, ["create", "X", "--title", "x", "--audience", rule, *dates, *where])
    assert bad.exit_code == 1 and "unknown attribute 'salary'" in bad.output
    changed = runner.invoke(offers, ["set", "1", "--status", "active", *where])
    assert changed.exit_code == 0 and " active " in changed.output and " v2 " in changed.output
    listed = runner.invoke(offers, ["list", "--json", *where])
    (campaign,) = json.loads(listed.output)
    assert (campaign["status"], campaign["starts_at"]) == ("active", "2026-11-01T00:00:00+00:00")
    assert runner.invoke(offers, ["show", "9", *where]).output.strip() == "Error: no campaign 9"
