"""What the customer tests share: a kiosk's pairing code planted the way a kiosk sends it
(a sealed batch through the real ingest), and a customer's browser as a Flask test client
that fills in the forms, CSRF token included."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import re
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from bankiot_core import cose, downlink
from bankiot_core.batch import CLOCK_UNIX_MS, KIOSK_PAIRING, KioskEvent, encode_batch
from cloud.customers import codes, consent
from cloud.customers.models import Customer as CustomerRow
from cloud.customers.models import CustomerWearable
from cloud.customers.pairing import Ciphers
from cloud.db import Database
from cloud.fleet import bindings
from cloud.fleet.bindings_models import GatewayKeys
from cloud.fleet.models import Branch, Device
from cloud.identity.keys import load_wrapper
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import Ingest
from cloud.notifications import offers as inbox_offers
from cloud.offers import campaigns
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.ingest_support import SimGateway

PASSWORD = "correct horse battery staple"
WEARABLE = "54:48:E6:8F:80:A5"  # bthome.io's encryption example
KEY_HEX = "231d39c1d7cc1ab1aee224cd096db932"  # its bind key
IRK_HEX = "ec0234a357c8ad05341010a60a397d9b"  # the Core spec's sample IRK
ALL = ("presence_branch", "presence_partner", "activity")
OPERATIONS = "operator:ops"  # the actor of what cloud operations do
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
_ERROR = re.compile(r'<p class="error" id="error" role="alert">([^<]*)</p>')


def database_of(app: APIFlask) -> Database:
    return app.extensions["bankiot.db"]


def customer_id_of(app: APIFlask, address: str) -> int:
    """The id of the customer whose paired wearable is ``address`` (there must be one)."""
    with database_of(app).sessions() as session:
        found = session.scalar(
            select(CustomerWearable.customer_id).where(CustomerWearable.address == address)
        )
    assert found is not None, address
    return found


def ciphers_of(app: APIFlask) -> Ciphers:
    """The ciphers the app derives from its KEK (the same key file)."""
    return Ciphers.from_wrapper(load_wrapper(Path(app.config["DATA_DIR"]), {}))


def kiosk_fleet(app: APIFlask) -> dict[str, int]:
    """Branches north and south, kiosks kiosk-n1 and kiosk-s1 and gateway gw-n1 in them, all
    active; their ids by branch code and device uid."""
    ids = add_branches(app, "north", "south")
    devices = add_devices(
        app,
        {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": ids["north"], "status": "active"},
        {"uid": "gw-n1", "branch_id": ids["north"], "status": "active"},
        {"uid": "kiosk-s1", "kind": "kiosk", "branch_id": ids["south"], "status": "active"},
    )
    return {**ids, **dict(zip(("kiosk-n1", "gw-n1", "kiosk-s1"), devices, strict=True))}


def gateway_keys(app: APIFlask, device_id: int) -> tuple[int, list[downlink.Binding]] | None:
    """What gateway ``device_id`` would get now: its KEYS revision, synced, and the bindings
    its messages hold, decoded; None when no set was ever bound at its branch."""
    with database_of(app).sessions() as session:
        bindings.sync(session, dt.datetime.now(dt.UTC), device_id)
        session.commit()
        row = session.get(GatewayKeys, device_id)
        if row is None:
            return None
        pages = bindings.messages(session, ciphers_of(app).bindings, row)
        revision = row.revision
    found = []
    for page in pages:
        message = downlink.decode_message(page)
        assert isinstance(message, downlink.Keys)
        found += message.bindings
    return revision, found


def kiosk_customer(
    session: Session,
    kiosk: str,
    branch: tuple[str, str],
    email: str,
    address: str,
    now: dt.datetime,
) -> int:
    """Branch ``branch`` (code, name) with active kiosk ``kiosk``, and a customer ``email``
    whose wearable ``address`` is paired and who consents to presence in branches; the
    customer's id. The caller commits."""
    row = Branch(code=branch[0], name=branch[1])
    session.add(row)
    session.flush()
    session.add(Device(uid=kiosk, kind="kiosk", branch_id=row.id, status="active"))
    customer = CustomerRow(email=email, password_hash="x")
    session.add(customer)
    session.flush()
    session.add(CustomerWearable(customer_id=customer.id, address=address, paired_at=now))
    consent.record(session, customer.id, "presence_branch", True, "web", now)
    return customer.id


def active_campaign(
    session: Session,
    now: dt.datetime,
    *,
    name: str = "travel",
    title: str = "Travel card",
    text: str = "No fees abroad",
    channel: str = "kiosk",
    audience: Any = True,
    cap_count: int = 1,
    since: dt.timedelta = dt.timedelta(days=1),
    until: dt.timedelta = dt.timedelta(days=30),
    actor: str = "test",
    created_at: dt.datetime | None = None,
) -> int:
    """An active campaign on ``channel`` for ``audience``, at most ``cap_count`` offers a
    customer in 7 days, running from ``now - since`` to ``now + until``, created by ``actor``
    at ``created_at`` (``now`` when None); its id. The caller commits."""
    values = {
        "name": name,
        "audience": audience,
        "title": title,
        "text": text,
        "channel": channel,
        "cap_count": cap_count,
        "cap_days": 7,
        "starts_at": now - since,
        "ends_at": now + until,
        "status": "active",
    }
    return campaigns.create(session, values, actor, now if created_at is None else created_at).id


def sent_app_campaign(session: Session, now: dt.datetime, **values: Any) -> int:
    """An active app campaign (``active_campaign``'s ``values``) that cloud operations
    created and sent to its audience at ``now``, as ``POST .../send`` does: offered
    customers get it in their inbox. Its id; the send commits (with what the session had
    staged before)."""
    campaign = active_campaign(session, now, channel="app", actor=OPERATIONS, **values)
    inbox_offers.send(session, campaign, OPERATIONS, now)
    return campaign


class Kiosks:
    """Kiosks that send pairing events through the real ingest, as sealed batches."""

    def __init__(self, app: APIFlask, *uids: str) -> None:
        self.gateways = {uid: SimGateway(uid) for uid in uids}
        keys = MemoryKeySource()
        for gateway in self.gateways.values():
            gateway.keys(keys)
        self.now = dt.datetime.now(dt.UTC)
        code_key = codes.key_from(load_wrapper(Path(app.config["DATA_DIR"]), {}))
        self.ingest = Ingest(database_of(app), keys, clock=lambda: self.now, code_key=code_key)
        self.seqs = itertools.count()
        self.event_ids = itertools.count(1)

    def show_code(self, uid: str, code: str, ago: dt.timedelta = dt.timedelta(0)) -> bytes:
        """Kiosk ``uid`` showed ``code`` ``ago`` before now; the sealed batch it sent (and
        that ingest accepted)."""
        self.now = dt.datetime.now(dt.UTC)
        at_ms = int((self.now - ago).timestamp() * 1000)
        event = KioskEvent(at_ms, KIOSK_PAIRING, next(self.event_ids), None, code)
        return self.send(uid, encode_batch([event], CLOCK_UNIX_MS))

    def send(self, uid: str, payload: bytes, seq: int | None = None) -> bytes:
        gateway = self.gateways[uid]
        seq = next(self.seqs) if seq is None else seq
        envelope = cose.seal_with(gateway.ring, seq, payload, gateway.aad)
        assert self.resend(uid, envelope) == "accepted"
        return envelope

    def resend(self, uid: str, envelope: bytes) -> str:
        """Ingest's verdict on ``envelope`` from ``uid``: accepted, duplicate, ..."""
        gateway = self.gateways[uid]
        return self.ingest.handle(envelope, gateway.aad, "mqtt", uid).status


class Customer:
    """A customer's browser on the customer pages (a Flask test client with cookies)."""

    def __init__(self, app: APIFlask) -> None:
        self.client: FlaskClient = app.test_client()
        self.last: TestResponse | None = None

    def csrf(self, path: str) -> str:
        page = self.client.get(path)
        found = _CSRF.search(page.get_data(as_text=True))
        assert found is not None, "no form on %s" % path
        return found.group(1)

    def post(self, path: str, form: dict[str, str], token: str | None = None) -> TestResponse:
        data = {"csrf_token": self.csrf(path) if token is None else token, **form}
        self.last = self.client.post(path, data=data)
        return self.last

    def sign_up(self, email: str, password: str = PASSWORD) -> TestResponse:
        return self.post("/customer/signup", {"email": email, "password": password})

    def sign_in(self, email: str, password: str = PASSWORD) -> TestResponse:
        return self.post("/customer/signin", {"email": email, "password": password})

    def sign_out(self) -> TestResponse:
        return self.post("/customer/signout", {}, self.csrf("/customer/"))

    def pair(
        self, code: str, wearable: str = WEARABLE, key: str = KEY_HEX, consents=ALL, **extra: str
    ) -> TestResponse:
        form = {"code": code, "wearable": wearable, "bind_key": key, **extra}
        form.update({"consent_" + purpose: "1" for purpose in consents})
        return self.post("/customer/pair", form)

    def consent(self, purpose: str, granted: bool) -> TestResponse:
        form = {"purpose": purpose, "granted": "1" if granted else "0"}
        return self.post("/customer/consents", form)

    def unpair(self, address: str = WEARABLE) -> TestResponse:
        return self.post("/customer/unpair", {"address": address}, self.csrf("/customer/"))

    def page(self, path: str = "/customer/") -> str:
        return self.client.get(path).get_data(as_text=True)


def error_of(response: TestResponse) -> str | None:
    """The one-line error a page shows, or None."""
    found = _ERROR.search(response.get_data(as_text=True))
    return None if found is None else html.unescape(found.group(1))
