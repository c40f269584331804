"""A customer's consents gate what ingest stores; the data page shows, exports and erases
what the bank holds; pairing offers are purged. On SQLite and PostgreSQL.

Batches arrive as gateways send them (sealed, through the real ingest); customers use the
real pages through Flask's test client. What gateways would receive is checked on the KEYS
messages the fleet's delivery would seal, decoded with the portable core.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import func, select, text

from bankiot_core import cose, downlink
from bankiot_core.batch import (
    CLOCK_UNIX_MS,
    KIOSK_CHECKIN,
    KIOSK_OFFER_SHOWN,
    BatchReading,
    KioskEvent,
    encode_batch,
)
from bankiot_core.presence import PresenceEvent
from cloud.analytics.models import LifeEventEpisode
from cloud.apps.models import AppDecision, HoldingAlert, LoanApplication
from cloud.customers.models import CustomerErasure, CustomerWearable, PairingOffer
from cloud.db import Base
from cloud.events.library import RuleLibrary
from cloud.events.models import CLOSED, OPEN, RuleDecision, ServiceRequest
from cloud.events.worker import EventWorker
from cloud.fleet import beacons
from cloud.fleet.models import Device
from cloud.ingest import service
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import DeviceEvent, Reading, ThresholdState
from cloud.ingest.pipeline import Result
from cloud.ingest.retention import RetentionError
from cloud.offers.kiosk import KioskOffers
from cloud.offers.models import OfferDecision, OfferResult
from tests.cloud.customer_actions import (
    PASSWORD,
    WEARABLE,
    Customer,
    Kiosks,
    active_campaign,
    customer_id_of,
    database_of,
    error_of,
    gateway_keys,
    kiosk_fleet,
)
from tests.cloud.fleet_actions import add_devices

OTHER = "A4:C1:38:00:00:01"  # bob's wearable
SENSOR = "C0:FF:EE:00:00:02"  # the branch's own sensor: no customer's
BEACON = "C3:00:00:0A:1B:2C"  # a partner merchant's beacon
DATA = "/customer/data"
STORE_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


def mac(address: str) -> bytes:
    return bytes.fromhex(address.replace(":", ""))


@pytest.fixture
def fleet(cloud_app: APIFlask) -> dict[str, int]:
    return kiosk_fleet(cloud_app)


@pytest.fixture
def kiosks(cloud_app: APIFlask, fleet: dict[str, int]) -> Kiosks:
    return Kiosks(cloud_app, "kiosk-n1", "gw-n1", "kiosk-s1")


class Sender:
    """Gateways' batches through the real ingest, with the verdicts."""

    def __init__(self, kiosks: Kiosks) -> None:
        self.kiosks = kiosks
        self.event_ids = iter(range(100, 10_000))

    def at_ms(self, seconds_ago: float = 0) -> int:
        return int((dt.datetime.now(dt.UTC).timestamp() - seconds_ago) * 1000)

    def batch(self, uid: str, records: list[Any]) -> tuple[Result, bytes]:
        gateway = self.kiosks.gateways[uid]
        envelope = cose.seal_with(
            gateway.ring, next(self.kiosks.seqs), encode_batch(records, CLOCK_UNIX_MS), gateway.aad
        )
        return self.kiosks.ingest.handle(envelope, gateway.aad, "mqtt", uid), envelope

    def again(self, uid: str, envelope: bytes) -> Result:
        gateway = self.kiosks.gateways[uid]
        return self.kiosks.ingest.handle(envelope, gateway.aad, "mqtt", uid)

    def heart_rate(self, address: str, bpm: int) -> BatchReading:
        return BatchReading(mac(address), self.at_ms(), "heart_rate", bpm, "bpm")

    def enter(self, address: str) -> PresenceEvent:
        return PresenceEvent("enter", mac(address), self.at_ms(), -60, 80)

    def checkin(self, address: str) -> KioskEvent:
        return KioskEvent(self.at_ms(), KIOSK_CHECKIN, next(self.event_ids), mac(address), "")

    def offer_shown(self, address: str, campaign: int) -> KioskEvent:
        event_id = next(self.event_ids)
        return KioskEvent(self.at_ms(), KIOSK_OFFER_SHOWN, event_id, mac(address), str(campaign))


def decisions_on(app: APIFlask, kiosks: Kiosks) -> tuple[EventWorker, int]:
    """Decisions made as the cloud makes them: the offers application decides at each
    check-in (one active campaign, "Travel card"), the rule engine's live worker (the
    shipped rules: a check-in makes a ticket) from now on. The worker and the campaign."""
    kiosks.ingest.kiosk_offers = KioskOffers()
    now = dt.datetime.now(dt.UTC)
    with database_of(app).sessions() as session:
        campaign = active_campaign(session, now, cap_count=3)
        session.commit()
    worker = EventWorker(database_of(app), RuleLibrary(None))
    worker.run_once()  # the cursor starts at the newest event
    return worker, campaign


def pair(cloud_app: APIFlask, kiosks: Kiosks, email: str, code: str, address: str, *purposes):
    customer = Customer(cloud_app)
    customer.sign_up(email)
    kiosks.show_code("kiosk-n1", code)
    response = customer.pair(code, address, consents=purposes)
    assert response.status_code == 302, error_of(response)
    return customer


def stored(app: APIFlask) -> dict[str, Any]:
    """What the tables hold, by kind: readings (device, metric), events (device, kind),
    kiosk actions (wearable, kind)."""
    with database_of(app).sessions() as session:
        return {
            "readings": sorted(
                (d, m) for d, m in session.execute(select(Reading.device, Reading.metric))
            ),
            "events": sorted(
                (d, k)
                for d, k in session.execute(select(DeviceEvent.device, DeviceEvent.kind))
                if k not in ("kiosk_pairing",)
            ),
            "kiosk": sorted(
                (w or "", k)
                for w, k in session.execute(
                    select(KioskEventRow.wearable, KioskEventRow.kind).where(
                        KioskEventRow.kind != "pairing"
                    )
                )
            ),
        }


# ---- consent enforced in ingest ---------------------------------------------------------------


def test_ingest_stores_a_customers_records_only_for_consented_purposes(
    cloud_app: APIFlask, kiosks: Kiosks
) -> None:
    alice = pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "presence_branch")
    send = Sender(kiosks)

    # Presence in branches given, activity not: the heart rate is withheld, counted.
    result, first = send.batch(
        "gw-n1",
        [send.heart_rate(WEARABLE, 71), send.enter(WEARABLE), send.heart_rate(SENSOR, 99)],
    )
    assert (result.status, result.readings, result.withheld) == ("accepted", 1, {"activity": 1})
    assert stored(cloud_app)["readings"] == [(SENSOR, "heart_rate")]
    assert stored(cloud_app)["events"] == [(WEARABLE, "enter")]
    assert kiosks.ingest.stats.withheld("activity") == 1

    # Given now: stored from the next batch on.
    alice.consent("activity", True)
    result, _ = send.batch("gw-n1", [send.heart_rate(WEARABLE, 72)])
    assert (result.readings, result.withheld) == (1, None)
    assert stored(cloud_app)["readings"] == sorted(
        [(SENSOR, "heart_rate"), (WEARABLE, "heart_rate")]
    )

    # A kiosk check-in naming the wearable is presence in a branch.
    result, _ = send.batch("kiosk-n1", [send.checkin(WEARABLE)])
    assert result.withheld is None
    assert stored(cloud_app)["kiosk"] == [(WEARABLE, "checkin")]

    # Withdrawn: presence and check-ins stop at once, activity goes on.
    alice.consent("presence_branch", False)
    before = stored(cloud_app)
    result, withdrawn = send.batch("gw-n1", [send.enter(WEARABLE), send.heart_rate(WEARABLE, 73)])
    assert (result.readings, result.withheld) == (1, {"presence_branch": 1})
    result, _ = send.batch("kiosk-n1", [send.checkin(WEARABLE)])
    assert (result.status, result.withheld) == ("accepted", {"presence_branch": 1})
    after = stored(cloud_app)
    assert after["events"] == before["events"]  # no enter, no kiosk_checkin twin
    assert after["kiosk"] == before["kiosk"]
    assert after["readings"] == sorted(before["readings"] + [(WEARABLE, "heart_rate")])
    assert kiosks.ingest.stats.withheld("presence_branch") == 2
    assert kiosks.ingest.stats.snapshot()["withheld"] == 3

    # Resent batches (a gateway that missed its acknowledgement) store nothing new.
    assert send.again("gw-n1", first).status == "duplicate"
    assert send.again("gw-n1", withdrawn).status == "duplicate"
    assert stored(cloud_app) == after


def test_devices_no_customer_paired_are_stored_as_before(
    cloud_app: APIFlask, kiosks: Kiosks, fleet: dict[str, int]
) -> None:
    # a staff badge registered as a wearable, a bank's sensor, and a paired wearable whose
    # customer consented to nothing that this batch needs
    add_devices(cloud_app, {"uid": OTHER, "kind": "wearable", "branch_id": fleet["north"]})
    pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "presence_partner")
    send = Sender(kiosks)
    records = [send.heart_rate(OTHER, 80), send.enter(OTHER), send.heart_rate(SENSOR, 60)]
    result, _ = send.batch("gw-n1", [*records, send.enter(WEARABLE)])
    assert result.withheld == {"presence_branch": 1}
    assert stored(cloud_app)["readings"] == sorted([(SENSOR, "heart_rate"), (OTHER, "heart_rate")])
    assert stored(cloud_app)["events"] == [(OTHER, "enter")]
    with database_of(cloud_app).sessions() as session:
        classes = {d: c for d, c in session.execute(select(Reading.device, Reading.data_class))}
    assert classes[OTHER] == "health"  # still a wearable's: health data, kept 7 days


def test_presence_near_a_partner_shop_needs_that_consent_too(
    cloud_app: APIFlask, kiosks: Kiosks
) -> None:
    with database_of(cloud_app).sessions() as session:
        now = dt.datetime.now(dt.UTC)
        merchant = beacons.add_merchant(session, "Café Nord", "5814", actor="test", now=now)
        beacons.add_beacon(
            session,
            kind="ibeacon",
            merchant_id=merchant.id,
            uuid=STORE_UUID,
            major=9,
            minor=1,
            actor="test",
            now=now,
        )
        session.commit()
    alice = pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "presence_branch")
    send = Sender(kiosks)
    at = send.at_ms()
    shop = [
        BatchReading(mac(BEACON), at, "uuid", STORE_UUID, ""),
        BatchReading(mac(BEACON), at, "major", 9, ""),
        BatchReading(mac(BEACON), at, "minor", 1, ""),
    ]
    # The gateway hears the merchant's beacon (by its identifiers) with the wearable.
    result, _ = send.batch("gw-n1", [*shop, send.enter(WEARABLE)])
    assert result.withheld == {"presence_partner": 1}
    assert stored(cloud_app)["events"] == []
    assert {device for device, _ in stored(cloud_app)["readings"]} == {BEACON}

    # Without the beacon in the batch it is presence in the branch: stored.
    result, _ = send.batch("gw-n1", [send.enter(WEARABLE)])
    assert result.withheld is None
    alice.consent("presence_partner", True)
    result, _ = send.batch("gw-n1", [*shop, send.enter(WEARABLE)])
    assert result.withheld is None
    assert stored(cloud_app)["events"] == [(WEARABLE, "enter"), (WEARABLE, "enter")]


# ---- see and export ---------------------------------------------------------------------------


AT = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
AT_ISO = "2026-11-20T09:30:00+00:00"


def plant_applications(app: APIFlask, customer_id: int, mark: str, branch_id: int) -> int:
    """What the applications and analytics keep about a customer, each row carrying
    ``mark``: a shopping decision, a loan application reviewed by a branch manager and its
    decision, a price alert, a life-event episode. The loan's id."""
    with database_of(app).sessions() as session:
        loan = LoanApplication(
            customer_id=customer_id,
            branch_id=branch_id,
            amount=Decimal("5000"),
            currency="GBP",
            term_months=24,
            purpose="%s boiler" % mark,
            evidence=[],
            outcome="referred",
            reasons=["%s: no account history" % mark],
            review="declined",
            reviewed_by="operator:maria",
            reviewed_at=AT,
            review_note="%s payslips missing" % mark,
            created_at=AT,
            created_by="operator:maria",
        )
        session.add(loan)
        session.flush()
        session.add_all(
            [
                AppDecision(
                    app="shopping",
                    at=AT,
                    customer_id=customer_id,
                    subject="rule_decision:7",
                    outcome="warn",
                    reasons=["%s: a bill is due before payday" % mark],
                    inputs={"merchant": {"name": "%s shop" % mark}},
                    version="affordability-1",
                ),
                AppDecision(
                    app="loan",
                    at=AT,
                    customer_id=customer_id,
                    subject="loan:%d" % loan.id,
                    outcome="declined",
                    reasons=["%s payslips missing" % mark],
                    inputs={"automatic": "referred", "by": "operator:maria"},
                    version="manual-1",
                ),
                HoldingAlert(
                    customer_id=customer_id,
                    instrument=mark.upper()[:16],
                    direction="above",
                    threshold=Decimal("120.5"),
                    channel="app",
                    armed=True,
                    last_price=Decimal("118.25"),
                    created_at=AT,
                ),
                LifeEventEpisode(
                    customer_id=customer_id,
                    kind="job_change",
                    detail="",
                    first_as_of=dt.date(2026, 9, 30),
                    first_detected_at=AT,
                    last_as_of=dt.date(2026, 10, 31),
                    last_seen_at=AT,
                    score=0.7,
                    peak_score=0.8,
                    reasons=["%s salary since 2026-09" % mark],
                    ended_as_of=None,
                    ended_at=None,
                    model_version="profile-1",
                ),
            ]
        )
        session.commit()
        return loan.id


def test_the_data_page_and_the_export_hold_everything_and_nothing_of_another_customer(
    cloud_app: APIFlask, kiosks: Kiosks, fleet: dict[str, int]
) -> None:
    alice = pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "presence_branch")
    alice.consent("activity", True)
    bob = pair(cloud_app, kiosks, "bob@example.com", "M9XD7KQ2", OTHER, "presence_branch")
    bob.consent("activity", True)
    send = Sender(kiosks)
    send.batch("gw-n1", [send.heart_rate(WEARABLE, 70), send.heart_rate(WEARABLE, 75)])
    send.batch("gw-n1", [send.enter(WEARABLE), send.heart_rate(OTHER, 90), send.enter(OTHER)])
    send.batch("kiosk-n1", [send.checkin(WEARABLE), send.checkin(OTHER)])
    loan = plant_applications(
        cloud_app, customer_id_of(cloud_app, WEARABLE), "alyx", fleet["north"]
    )
    plant_applications(cloud_app, customer_id_of(cloud_app, OTHER), "bobco", fleet["north"])

    page = alice.page("/customer/data")
    assert "alice@example.com" in page and WEARABLE in page
    assert 'id="reading-heart_rate"' in page and '<td class="count">2</td>' in page
    assert OTHER not in page and "bob@" not in page
    assert 'id="data-loan-%d"' % loan in page and "alyx boiler" in page and "5000.00 GBP" in page
    assert "declined on 2026-11-20: alyx payslips missing" in page
    assert "ALYX" in page and "above 120.5" in page  # the price alert
    assert "alyx salary since 2026-09" in page and "ongoing" in page  # the life event
    assert "shopping application (affordability-1), about rule_decision:7" in page
    assert "alyx: a bill is due before payday" in page
    assert "bobco" not in page.lower() and "operator:maria" not in page

    response = alice.client.get("/customer/data/export")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    body = response.get_data(as_text=True)
    document = json.loads(body)
    assert document["format"] == "bankiot-customer-data/1"
    assert document["account"]["email"] == "alice@example.com"
    (wearable,) = document["wearables"]
    assert wearable["address"] == WEARABLE and wearable["bind_key_held"] is True
    assert [b["code"] for b in wearable["bound_at_branches"]] == ["north"]
    assert [
        (r["purpose"], r["granted"], r["channel"]) for r in document["consents"]["history"]
    ] == [
        ("presence_branch", True, "kiosk_code"),
        ("activity", True, "web"),
    ]
    assert sorted(r["value"] for r in document["readings"]) == [70, 75]
    assert {r["wearable"] for r in document["readings"]} == {WEARABLE}
    assert {(e["wearable"], e["kind"]) for e in document["events"]} == {
        (WEARABLE, "enter"),
        (WEARABLE, "kiosk_checkin"),
    }
    assert [(k["wearable"], k["kind"], k["branch"]["code"]) for k in document["kiosk_events"]] == [
        (WEARABLE, "checkin", "north")
    ]
    assert [c["branch"]["code"] for c in document["pairing_codes_used"]] == ["north"]
    assert document["app_decisions"] == [
        {
            "app": "shopping",
            "at": AT_ISO,
            "subject": "rule_decision:7",
            "outcome": "warn",
            "reasons": ["alyx: a bill is due before payday"],
            "inputs": {"merchant": {"name": "alyx shop"}},
            "version": "affordability-1",
        },
        {
            "app": "loan",
            "at": AT_ISO,
            "subject": "loan:%d" % loan,
            "outcome": "declined",
            "reasons": ["alyx payslips missing"],
            "inputs": {"automatic": "referred"},  # who reviewed it is the staff's data
            "version": "manual-1",
        },
    ]
    assert document["loan_applications"] == [
        {
            "id": loan,
            "created_at": AT_ISO,
            "branch": {"id": fleet["north"], "code": "north", "name": "Branch north"},
            "amount": "5000.00",
            "currency": "GBP",
            "term_months": 24,
            "purpose": "alyx boiler",
            "evidence": [],
            "outcome": "referred",
            "reasons": ["alyx: no account history"],
            "review": "declined",
            "reviewed_at": AT_ISO,
            "review_note": "alyx payslips missing",
        }
    ]
    assert document["holding_alerts"] == [
        {
            "instrument": "ALYX",
            "direction": "above",
            "threshold": "120.5",
            "channel": "app",
            "armed": True,
            "last_price": "118.25",
            "created_at": AT_ISO,
        }
    ]
    (history,) = document["analytics"]["life_event_history"]
    assert (history["kind"], history["first_as_of"], history["peak_score"]) == (
        "job_change",
        "2026-09-30",
        0.8,
    )
    assert (history["ended_as_of"], history["reasons"]) == (None, ["alyx salary since 2026-09"])
    # nothing of bob, and no secret
    # (the readings' values were checked above: 90 is bob's; a string search for "90" would
    # also find it in a timestamp)
    assert OTHER not in body and "bob@" not in body
    assert "bobco" not in body.lower() and "operator:maria" not in body
    key_hex = "231d39c1d7cc1ab1aee224cd096db932"
    assert key_hex not in body.lower()

    alice.sign_out()
    assert alice.client.get("/customer/data/export").status_code == 302  # to sign-in


def test_the_data_page_and_the_export_explain_the_decisions_about_the_customer(
    cloud_app: APIFlask, kiosks: Kiosks
) -> None:
    alice = pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "presence_branch")
    pair(cloud_app, kiosks, "bob@example.com", "M9XD7KQ2", OTHER, "presence_branch")
    worker, travel = decisions_on(cloud_app, kiosks)
    send = Sender(kiosks)
    send.batch("kiosk-n1", [send.checkin(WEARABLE), send.checkin(OTHER)])
    send.batch("kiosk-n1", [send.offer_shown(WEARABLE, travel), send.offer_shown(OTHER, travel)])
    assert worker.run_once().acted == 2  # a ticket each

    page = alice.page(DATA)
    assert 'id="data-decisions"' in page and "rule checkin-ticket (version 1)" in page
    assert "travel (campaign %d): offered (everyone)" % travel in page
    assert 'id="data-requests"' in page and 'id="data-offers"' in page and "Travel card" in page
    document = json.loads(alice.client.get("/customer/data/export").get_data(as_text=True))
    (rule,) = document["rule_decisions"]
    assert (rule["wearable"], rule["rule"], rule["acted"], rule["reason"]) == (
        WEARABLE,
        "checkin-ticket",
        True,
        "acted",
    )
    assert rule["reasons"] and rule["inputs"]["event"]["kind"] == "kiosk_checkin"
    assert rule["branch"]["code"] == "north"
    (request,) = document["service_requests"]
    assert (request["wearable"], request["kind"], request["state"]) == (WEARABLE, "ticket", "open")
    (offer,) = document["offer_decisions"]
    assert (offer["outcome"], offer["offered"]) == (
        "offered",
        [{"id": travel, "title": "Travel card"}],
    )
    assert offer["reasons"] == ["travel (campaign %d): offered (everyone)" % travel]
    assert offer["inputs"]["consented"] is True and offer["branch"]["code"] == "north"
    (result,) = document["offer_results"]
    assert (result["campaign"], result["outcome"], result["channel"]) == (
        {"id": travel, "title": "Travel card"},
        "shown",
        "kiosk",
    )
    # bob had the same: none of it is alice's
    body = json.dumps(document)
    assert OTHER not in body and "bob@" not in body
    with database_of(cloud_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(OfferResult)) == 2


# ---- erase ------------------------------------------------------------------------------------


def every_row_text(app: APIFlask) -> str:
    """Every row of every table, as text (to search for what must be gone)."""
    out = []
    with database_of(app).sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(text("SELECT * FROM %s" % table.name)):
                out.append("%s %r" % (table.name, tuple(row)))
    return "\n".join(out)


def rows_naming_customer(app: APIFlask, customer_id: int) -> list[str]:
    """Rows of any table with a ``customer_id`` column that name ``customer_id``."""
    found = []
    with database_of(app).sessions() as session:
        for table in Base.metadata.sorted_tables:
            if "customer_id" in table.c:
                query = select(func.count()).where(table.c.customer_id == customer_id)
                if session.scalar(query.select_from(table)):
                    found.append(table.name)
    return found


def keys_for(app: APIFlask, device_id: int) -> tuple[int, list[downlink.Binding]]:
    """The gateway's KEYS revision now, and the bindings it holds, decoded."""
    keys = gateway_keys(app, device_id)
    assert keys is not None
    return keys


def test_erasure_needs_the_password_and_a_confirmation_then_removes_everything(
    cloud_app: APIFlask, kiosks: Kiosks, fleet: dict[str, int]
) -> None:
    add_devices(cloud_app, {"uid": WEARABLE, "kind": "wearable", "branch_id": fleet["north"]})
    alice = pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "presence_branch")
    alice.consent("activity", True)
    kiosks.show_code("kiosk-s1", "A4C1A4C1")
    assert alice.pair("A4C1A4C1", WEARABLE).status_code == 302  # bound at south too
    bob = pair(cloud_app, kiosks, "bob@example.com", "M9XD7KQ2", OTHER, "activity")
    send = Sender(kiosks)
    send.batch("gw-n1", [send.heart_rate(WEARABLE, 70), send.enter(WEARABLE)])
    send.batch("gw-n1", [send.heart_rate(OTHER, 90)])
    worker, travel = decisions_on(cloud_app, kiosks)
    send.batch("kiosk-n1", [send.checkin(WEARABLE)])
    send.batch("kiosk-n1", [send.offer_shown(WEARABLE, travel)])
    assert worker.run_once().acted == 1  # alice's ticket
    alice_id = customer_id_of(cloud_app, WEARABLE)
    named = {"offer_decisions", "offer_results", "service_requests"}
    assert named <= set(rows_naming_customer(cloud_app, alice_id))
    with database_of(cloud_app).sessions() as session:
        session.add(
            ThresholdState(
                device=WEARABLE, rule="heart_rate>150", metric="heart_rate", crossed=False
            )
        )
        session.commit()
    revision, held = keys_for(cloud_app, fleet["gw-n1"])
    assert [b.address for b in held] == [mac(WEARABLE), mac(OTHER)]
    assert WEARABLE in every_row_text(cloud_app)

    # Wrong password: refused, nothing erased.
    response = alice.post(
        "/customer/data/erase", {"password": "not the password at all"}, alice.csrf(DATA)
    )
    assert (
        response.status_code == 401 and error_of(response) == "Wrong password: nothing was erased."
    )
    # A forged or stale confirmation: refused.
    response = alice.post(
        "/customer/data/erase/confirm", {"confirm": "9999999999.00"}, alice.csrf("/customer/data")
    )
    assert response.status_code == 403
    assert alice.client.get("/customer/data").status_code == 200

    # The password: the confirm step, which erases nothing yet.
    response = alice.post("/customer/data/erase", {"password": PASSWORD}, alice.csrf(DATA))
    assert response.status_code == 200 and "Erase your data?" in response.get_data(as_text=True)
    assert alice.client.get("/customer/data").status_code == 200
    page = response.get_data(as_text=True)
    token = page.split('name="confirm" value="', 1)[1].split('"', 1)[0]
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = alice.post("/customer/data/erase/confirm", {"confirm": token}, csrf)
    assert response.status_code == 200
    assert "Your data is erased" in response.get_data(as_text=True)

    # Signed out, and the account is gone.
    assert alice.client.get("/customer/").status_code == 302
    assert alice.sign_in("alice@example.com").status_code == 401
    # The gateways get the set without the wearable (a new KEYS revision).
    new_revision, held = keys_for(cloud_app, fleet["gw-n1"])
    assert new_revision > revision and [b.address for b in held] == [mac(OTHER)]
    assert keys_for(cloud_app, fleet["kiosk-s1"])[1] == []
    # No row anywhere names the wearable or the customer.
    everything = every_row_text(cloud_app)
    for gone in (WEARABLE, WEARABLE.lower(), "alice@example.com", "'customer:1'"):
        assert gone not in everything, gone
    assert rows_naming_customer(cloud_app, alice_id) == []
    # Decisions stay for accountability, anonymised: what decided what, when, where.
    with database_of(cloud_app).sessions() as session:
        rules = session.scalars(
            select(RuleDecision).where(RuleDecision.rule_id == "checkin-ticket")
        )
        (rule,) = rules
        assert (rule.subject, rule.acted, rule.inputs, rule.reasons) == ("erased", True, {}, [])
        (offer,) = session.scalars(select(OfferDecision))
        assert (offer.customer_id, offer.outcome, offer.offered) == (None, "offered", [travel])
        assert (offer.inputs, offer.reasons) == ({}, [])
        assert session.scalar(select(func.count()).select_from(ServiceRequest)) == 0
        assert session.scalar(select(func.count()).select_from(OfferResult)) == 0
    # ... and bob's data is whole.
    assert stored(cloud_app)["readings"] == [(OTHER, "heart_rate")]
    assert OTHER in bob.page("/customer/data")
    # The receipt: counts only.
    with database_of(cloud_app).sessions() as session:
        (receipt,) = session.scalars(select(CustomerErasure))
        assert (receipt.wearables, receipt.branches) == (1, 2)
        assert receipt.deleted["readings"] == 1 and receipt.deleted["kiosk_events"] == 2
        assert receipt.deleted["accounts"] == 1 and receipt.deleted["devices"] == 1
        assert (receipt.deleted["service_requests"], receipt.deleted["offer_results"]) == (1, 1)
        assert receipt.deleted["offer_decisions_anonymised"] == 1
        assert receipt.deleted["rule_decisions_anonymised"] == 1
        assert session.scalar(select(Device.id).where(Device.uid == WEARABLE)) is None


def test_wrong_passwords_at_erasure_are_rate_limited(cloud_app: APIFlask, kiosks: Kiosks) -> None:
    alice = pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "activity")
    statuses = [
        alice.post(
            "/customer/data/erase", {"password": "wrong password %d" % i}, alice.csrf(DATA)
        ).status_code
        for i in range(7)
    ]
    assert statuses[0] == 401 and statuses[-1] == 429


# ---- pairing offers' retention ----------------------------------------------------------------


def test_used_and_expired_pairing_offers_are_purged(cloud_app: APIFlask, kiosks: Kiosks) -> None:
    pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "activity")  # used
    kiosks.show_code("kiosk-n1", "M9XD7KQ2", ago=dt.timedelta(minutes=11))  # expired
    kiosks.show_code("kiosk-n1", "A4C1A4C1")  # live
    config = {"DATABASE_URL": database_of(cloud_app).url}
    report = json.loads(service.purge(config, (), True))
    assert report["pairing_offers"] == {"deleted": 2}
    with database_of(cloud_app).sessions() as session:
        assert len(list(session.scalars(select(PairingOffer)))) == 1


# ---- decisions' retention ---------------------------------------------------------------------


def test_decisions_closed_requests_and_offer_results_are_purged_by_their_class(
    cloud_app: APIFlask, kiosks: Kiosks
) -> None:
    pair(cloud_app, kiosks, "alice@example.com", "7KQ2M9XD", WEARABLE, "presence_branch")
    now = dt.datetime.now(dt.UTC)
    _, travel = decisions_on(cloud_app, kiosks)

    def ago(days: int) -> dt.datetime:
        return now - dt.timedelta(days=days)

    with database_of(cloud_app).sessions() as session:
        alice = session.scalar(select(CustomerWearable.customer_id))
        assert alice is not None

        def rule_decision(days: int) -> int:
            row = RuleDecision(
                at=ago(days),
                decided_at=ago(days),
                rule_id="checkin-ticket",
                rule_version=1,
                subject=WEARABLE,
                gateway="kiosk-n1",
                acted=True,
                reason="acted",
                reasons=["kiosk_checkin from kiosk-n1"],
                inputs={},
                actions=[],
            )
            session.add(row)
            session.flush()
            return row.id

        def request(decision: int, state: str, closed_days: int | None) -> None:
            closed = None if closed_days is None else ago(closed_days)
            session.add(
                ServiceRequest(
                    kind="ticket",
                    state=state,
                    gateway="kiosk-n1",
                    subject=WEARABLE,
                    customer_id=alice,
                    decision_id=decision,
                    rule_id="checkin-ticket",
                    rule_version=1,
                    severity="info",
                    message="a ticket",
                    created_at=ago(400),
                    closed_at=closed,
                )
            )

        expired, requested, recent = rule_decision(400), rule_decision(400), rule_decision(10)
        request(requested, OPEN, None)  # never closed: stays, and so does its decision
        request(recent, CLOSED, 100)  # closed 100 days ago: over the 90 days
        for days, event_id in ((400, 1), (10, 2)):
            session.add(
                OfferDecision(
                    at=ago(days),
                    customer_id=alice,
                    gateway="kiosk-n1",
                    event_id=event_id,
                    outcome="none",
                    offered=[],
                    reasons=["no campaign is running"],
                    inputs={},
                    version="offers-1",
                )
            )
            session.add(
                OfferResult(
                    campaign_id=travel,
                    customer_id=alice,
                    channel="kiosk",
                    outcome="shown",
                    at=ago(days),
                    gateway="kiosk-n1",
                    event_id=event_id,
                )
            )
        session.commit()

    config = {"DATABASE_URL": database_of(cloud_app).url}
    report = json.loads(service.purge(config, (), True))
    assert report["decisions"] == {"deleted": 2, "kept_for": "365 days, 0:00:00"}
    assert report["requests"] == {"deleted": 1, "kept_for": "90 days, 0:00:00"}
    assert report["offer_results"] == {"deleted": 1, "kept_for": "365 days, 0:00:00"}
    with database_of(cloud_app).sessions() as session:
        left = set(session.scalars(select(RuleDecision.id)))
        assert expired not in left and {requested, recent} <= left
        assert list(session.scalars(select(ServiceRequest.state))) == [OPEN]
        assert list(session.scalars(select(OfferDecision.event_id))) == [2]
        assert list(session.scalars(select(OfferResult.event_id))) == [2]
    # A shorter retention, asked for: the rest of the decisions go.
    report = json.loads(service.purge(config, ("decisions=5d",), True))
    assert report["decisions"]["deleted"] == 2  # the recent rule and offer decisions
    with pytest.raises(RetentionError, match="unknown data class 'decision'"):
        service.purge(config, ("decision=5d",), True)
