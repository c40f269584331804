"""Customers pair wearables with a kiosk's code and consent per purpose; on SQLite and
PostgreSQL.

A kiosk's pairing code arrives as the kiosk sends it, a ``pairing`` kiosk event in a sealed
batch through the real ingest; customers use the real pages through Flask's test client
(forms with their CSRF tokens). What gateways receive is checked on the KEYS messages the
fleet's delivery would seal, decoded with the portable core.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from bankiot_core import downlink
from cloud.audit import AuditEvent
from cloud.customers import consent
from cloud.customers.models import ConsentEvent, CustomerWearable, PairingOffer
from cloud.customers.pairing import CODE_REFUSED
from cloud.fleet.bindings_models import WearableBinding
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import DeviceEvent
from tests.cloud.customer_actions import (
    IRK_HEX,
    KEY_HEX,
    WEARABLE,
    Customer,
    Kiosks,
    ciphers_of,
    database_of,
    error_of,
    gateway_keys,
    kiosk_fleet,
)
from tests.support.cloud import make_app

CODE = "7KQ2M9XD"
OTHER = "A4:C1:38:00:00:01"


@pytest.fixture
def fleet(cloud_app: APIFlask) -> dict[str, int]:
    """Branches north and south, each with a kiosk and a gateway; ids by code and uid."""
    return kiosk_fleet(cloud_app)


@pytest.fixture
def kiosks(cloud_app: APIFlask, fleet: dict[str, int]) -> Kiosks:
    return Kiosks(cloud_app, "kiosk-n1", "kiosk-s1")


def rows(app: APIFlask, model: Any, *where: Any) -> list[Any]:
    with database_of(app).sessions() as session:
        found = list(session.scalars(select(model).where(*where)))
        session.expunge_all()
        return found


def count(app: APIFlask, model: Any) -> int:
    with database_of(app).sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def bound(app: APIFlask) -> set[tuple[int, str]]:
    return {(row.branch_id, row.address) for row in rows(app, WearableBinding)}


def keys_for(app: APIFlask, device_id: int) -> list[downlink.Binding]:
    """What the gateway would get now: its KEYS revision, synced and decoded."""
    keys = gateway_keys(app, device_id)
    return [] if keys is None else keys[1]  # no set was ever bound: nothing to send


def consented(app: APIFlask, address: str, purpose: str) -> bool:
    with database_of(app).sessions() as session:
        return consent.consented(session, address, purpose)


# ---- offers from kiosks ---------------------------------------------------------------------


def test_a_kiosks_pairing_code_is_kept_once_as_a_digest(cloud_app: APIFlask, kiosks) -> None:
    envelope = kiosks.show_code("kiosk-n1", CODE)
    assert kiosks.resend("kiosk-n1", envelope) == "duplicate"  # acknowledged, nothing stored

    offers = rows(cloud_app, PairingOffer)
    assert len(offers) == 1
    offer = offers[0]
    # a keyed digest (HMAC-SHA256 under the KEK's key for codes), not the plain SHA-256 that
    # 2**40 guesses would reverse
    key = ciphers_of(cloud_app).codes
    assert offer.code_hash == hmac.new(key, CODE.encode(), hashlib.sha256).hexdigest()
    assert offer.code_hash != hashlib.sha256(CODE.encode()).hexdigest()
    assert (offer.gateway, offer.event_id, offer.used_at) == ("kiosk-n1", 1, None)
    assert offer.branch_id == rows(cloud_app, KioskEventRow)[0].branch_id
    occurred = offer.occurred_at.replace(tzinfo=dt.UTC)
    assert offer.expires_at.replace(tzinfo=dt.UTC) - occurred == dt.timedelta(minutes=10)
    # the code itself is nowhere: not in the kiosk events listing's row, not in the events
    (event,) = rows(cloud_app, KioskEventRow)
    assert (event.kind, event.detail, event.wearable) == ("pairing", "", None)
    (device_event,) = rows(cloud_app, DeviceEvent, DeviceEvent.kind == "kiosk_pairing")
    assert device_event.data == {"event_id": 1, "wearable": None, "detail": ""}


# ---- accounts -------------------------------------------------------------------------------


def test_sign_up_sign_out_and_sign_in_again(cloud_app: APIFlask) -> None:
    alice = Customer(cloud_app)
    response = alice.sign_up("Alice@Example.com")
    assert response.status_code == 302 and response.location.endswith("/customer/?m=welcome")
    assert "Your wearables" in alice.page()
    other = Customer(cloud_app)
    taken = other.sign_up("alice@example.com")
    assert taken.status_code == 422 and "exists already" in (error_of(taken) or "")
    weak = other.sign_up("bob@example.com", "short")
    assert weak.status_code == 422 and "at least 12 characters" in (error_of(weak) or "")

    assert alice.sign_out().status_code == 302
    assert alice.client.get("/customer/").status_code == 302  # to the sign-in page
    wrong = alice.sign_in("alice@example.com", "not the password at all")
    assert wrong.status_code == 401 and error_of(wrong) == "Wrong email or password."
    unknown = alice.sign_in("nobody@example.com")
    assert unknown.status_code == 401 and error_of(unknown) == "Wrong email or password."
    assert alice.sign_in("ALICE@example.com").status_code == 302
    assert "Your wearables" in alice.page()


def test_forms_without_the_csrf_token_change_nothing(cloud_app: APIFlask, kiosks) -> None:
    alice = Customer(cloud_app)
    forged = alice.post("/customer/signup", {"email": "a@example.com", "password": "x" * 20}, "0")
    assert forged.status_code == 403
    alice.sign_up("alice@example.com")
    kiosks.show_code("kiosk-n1", CODE)
    form = {"code": CODE, "wearable": WEARABLE, "bind_key": KEY_HEX, "consent_activity": "1"}
    assert alice.post("/customer/pair", form, "00" * 32).status_code == 403
    assert count(cloud_app, CustomerWearable) == 0 and count(cloud_app, WearableBinding) == 0


def test_customers_are_not_staff(cloud_app: APIFlask) -> None:
    alice = Customer(cloud_app)
    alice.sign_up("alice@example.com")
    assert alice.client.get("/api/fleet/devices").status_code == 401
    assert alice.client.get("/api/auth/session").status_code == 401


@pytest.fixture
def strict_app(database_url: URL, tmp_path: Path) -> Iterator[APIFlask]:
    app = make_app(
        database_url,
        tmp_path / "strict",
        customer_signin_rate_limit="2 per minute",
        customer_code_rate_limit="2 per hour",
    )
    yield app
    database_of(app).dispose()


def test_failed_sign_ins_and_refused_codes_are_rate_limited(strict_app: APIFlask) -> None:
    alice = Customer(strict_app)
    alice.sign_up("alice@example.com")
    alice.sign_out()
    assert alice.sign_in("alice@example.com", "wrong wrong wrong").status_code == 401
    assert alice.sign_in("alice@example.com", "wrong wrong wrong").status_code == 401
    limited = alice.sign_in("alice@example.com")  # the right password, too late
    assert limited.status_code == 429 and "Too many tries" in (error_of(limited) or "")

    bob = Customer(strict_app)
    bob.client.environ_base["REMOTE_ADDR"] = "127.0.0.2"  # another address: its own count
    assert bob.sign_up("bob@example.com").status_code == 302
    assert bob.pair("AAAA-AAAA").status_code == 422
    assert bob.pair("BBBB-BBBB").status_code == 422
    assert bob.pair("CCCC-CCCC").status_code == 429


# ---- pairing --------------------------------------------------------------------------------


def test_pairing_with_a_live_code_binds_and_reaches_the_gateways(
    cloud_app: APIFlask, kiosks, fleet: dict[str, int]
) -> None:
    alice = Customer(cloud_app)
    alice.sign_up("alice@example.com")
    assert keys_for(cloud_app, fleet["gw-n1"]) == []
    kiosks.show_code("kiosk-n1", CODE)

    qr = "bthome:%s;key=%s;irk=%s" % (WEARABLE.lower(), KEY_HEX, IRK_HEX)
    response = alice.pair("7kq2-m9xd", qr, key="", consents=("presence_branch", "activity"))
    assert response.status_code == 302 and response.location.endswith("?m=paired")
    assert WEARABLE in alice.page()

    assert bound(cloud_app) == {(fleet["north"], WEARABLE)}
    mac = bytes.fromhex(WEARABLE.replace(":", ""))
    expected = downlink.Binding(mac, bytes.fromhex(IRK_HEX), bytes.fromhex(KEY_HEX))
    assert keys_for(cloud_app, fleet["gw-n1"]) == [expected]
    assert keys_for(cloud_app, fleet["kiosk-n1"]) == [expected]  # the kiosk is a gateway too
    (offer,) = rows(cloud_app, PairingOffer)
    assert offer.used_at is not None and offer.customer_id is not None
    history = [
        (r.purpose, r.granted, r.channel, r.text_version) for r in rows(cloud_app, ConsentEvent)
    ]
    assert history == [
        ("presence_branch", True, "kiosk_code", "1"),
        ("activity", True, "kiosk_code", "1"),
    ]
    assert consented(cloud_app, WEARABLE, "presence_branch")
    assert consented(cloud_app, WEARABLE.lower(), "activity")
    assert not consented(cloud_app, WEARABLE, "presence_partner")
    assert not consented(cloud_app, OTHER, "activity")  # no customer's wearable
    audit = rows(cloud_app, AuditEvent, AuditEvent.action == "wearable.bind")
    assert [event.actor for event in audit] == ["customer:%d" % offer.customer_id]
    assert KEY_HEX not in str([event.details for event in audit])


@pytest.mark.parametrize("case", ["unknown", "expired", "used", "malformed"])
def test_a_code_that_is_not_live_is_refused_and_nothing_is_written(
    cloud_app: APIFlask, kiosks, case: str
) -> None:
    alice, bob = Customer(cloud_app), Customer(cloud_app)
    alice.sign_up("alice@example.com")
    bob.sign_up("bob@example.com")
    code = CODE
    if case == "expired":
        kiosks.show_code("kiosk-n1", CODE, ago=dt.timedelta(minutes=10, seconds=1))
    elif case == "used":
        kiosks.show_code("kiosk-n1", CODE)
        assert bob.pair(CODE, OTHER).status_code == 302
    elif case == "malformed":
        code = "7KQ2-M9X"
    before = (count(cloud_app, WearableBinding), count(cloud_app, ConsentEvent))

    response = alice.pair(code)
    assert response.status_code == 422
    expected = CODE_REFUSED if case != "malformed" else "a pairing code is the 8 letters"
    assert (error_of(response) or "").startswith(expected)
    assert KEY_HEX not in response.get_data(as_text=True)  # the secret is not sent back
    assert (count(cloud_app, WearableBinding), count(cloud_app, ConsentEvent)) == before
    assert rows(cloud_app, CustomerWearable, CustomerWearable.address == WEARABLE) == []


def test_a_wearable_of_another_customer_is_refused(cloud_app: APIFlask, kiosks) -> None:
    alice, mallory = Customer(cloud_app), Customer(cloud_app)
    alice.sign_up("alice@example.com")
    mallory.sign_up("mallory@example.com")
    kiosks.show_code("kiosk-n1", CODE)
    assert alice.pair(CODE).status_code == 302
    kiosks.show_code("kiosk-s1", "M9XD7KQ2")

    response = mallory.pair("M9XD7KQ2", key="00" * 16)
    assert response.status_code == 409
    assert "paired to another account" in (error_of(response) or "")
    assert {row.address for row in rows(cloud_app, WearableBinding)} == {WEARABLE}
    assert [o.used_at is None for o in rows(cloud_app, PairingOffer)] == [False, True]


def test_pairing_needs_a_consent_and_the_wearables_details(cloud_app: APIFlask, kiosks) -> None:
    alice = Customer(cloud_app)
    alice.sign_up("alice@example.com")
    kiosks.show_code("kiosk-n1", CODE)
    none = alice.pair(CODE, consents=())
    assert none.status_code == 422 and "at least one purpose" in (error_of(none) or "")
    # personalised offers use no wearable: alone they are not a reason to pair one
    offers_only = alice.pair(CODE, consents=("offers",))
    assert offers_only.status_code == 422
    assert "at least one purpose for the wearable" in (error_of(offers_only) or "")
    bad = alice.pair(CODE, "bthome:54:48:E6:8F:80;key=%s" % KEY_HEX, key="")
    assert bad.status_code == 422 and "is not a wearable address" in (error_of(bad) or "")
    short = alice.pair(CODE, key="abc")
    assert short.status_code == 422 and "value not shown" in (error_of(short) or "")
    assert count(cloud_app, WearableBinding) == 0
    assert alice.pair(CODE).status_code == 302  # the offer was not used up by the refusals


# ---- consents and unpairing -----------------------------------------------------------------


def test_withdrawing_is_recorded_flips_consented_and_the_last_one_unbinds(
    cloud_app: APIFlask, kiosks, fleet: dict[str, int]
) -> None:
    alice = Customer(cloud_app)
    alice.sign_up("alice@example.com")
    kiosks.show_code("kiosk-n1", CODE)
    alice.pair(CODE, consents=("presence_branch", "activity"))

    assert alice.consent("activity", False).status_code == 302
    assert not consented(cloud_app, WEARABLE, "activity")
    assert consented(cloud_app, WEARABLE, "presence_branch")
    assert bound(cloud_app) == {(fleet["north"], WEARABLE)}  # one purpose left: still bound
    page = alice.page("/customer/consents")
    # presence in branches withdrawable; activity, partner shops and personalised offers given
    assert page.count("Withdraw</button>") == 1 and page.count("Give consent</button>") == 3

    alice.consent("presence_branch", False)
    assert not consented(cloud_app, WEARABLE, "presence_branch")
    assert bound(cloud_app) == set()  # nothing consented: off every gateway
    assert keys_for(cloud_app, fleet["gw-n1"]) == []
    alice.consent("offers", True)  # a purpose that needs no gateway to hear the wearable
    assert bound(cloud_app) == set()

    alice.consent("presence_branch", True)  # given again: bound again, from the kept copy
    assert bound(cloud_app) == {(fleet["north"], WEARABLE)}
    assert [b.key for b in keys_for(cloud_app, fleet["gw-n1"])] == [bytes.fromhex(KEY_HEX)]
    history = [(r.purpose, r.granted, r.channel) for r in rows(cloud_app, ConsentEvent)]
    assert history == [
        ("presence_branch", True, "kiosk_code"),
        ("activity", True, "kiosk_code"),
        ("activity", False, "web"),
        ("presence_branch", False, "web"),
        ("offers", True, "web"),
        ("presence_branch", True, "web"),
    ]


def test_unpairing_unbinds_from_every_branch_at_once(
    cloud_app: APIFlask, kiosks, fleet: dict[str, int]
) -> None:
    alice = Customer(cloud_app)
    alice.sign_up("alice@example.com")
    kiosks.show_code("kiosk-n1", CODE)
    alice.pair(CODE)
    kiosks.show_code("kiosk-s1", "M9XD7KQ2")
    alice.pair("M9XD7KQ2", OTHER, key="")  # a second wearable at another branch
    north, south = fleet["north"], fleet["south"]
    assert bound(cloud_app) == {(b, w) for b in (north, south) for w in (WEARABLE, OTHER)}

    assert alice.unpair(WEARABLE).status_code == 302
    assert bound(cloud_app) == {(north, OTHER), (south, OTHER)}
    assert [b.address.hex() for b in keys_for(cloud_app, fleet["gw-n1"])] == ["a4c138000001"]
    assert not consented(cloud_app, WEARABLE, "activity")
    assert WEARABLE not in alice.page()
    assert alice.unpair(WEARABLE).status_code == 404
