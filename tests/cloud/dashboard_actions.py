"""What the dashboard tests share: staff on the pages (a Flask test client that signs in
through the sign-in form and sends forms with their CSRF token), a ready release, and
branch activity planted the way gateways send it (sealed batches through the real ingest)."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bankiot_core import cose
from bankiot_core.address import mac_from_str
from bankiot_core.batch import CLOCK_UNIX_MS, KIOSK_CHECKIN, KioskEvent, encode_batch
from bankiot_core.presence import PresenceEvent
from cloud.customers import accounts, consent
from cloud.customers.models import CustomerWearable
from cloud.db import database
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import Ingest
from tests.cloud.customer_actions import database_of
from tests.cloud.ingest_support import SimGateway
from tests.cloud.people_actions import PASSWORD, bearer, make_token, sign_in
from tests.cloud.release_actions import Releases, signed_bundle, upload_body
from tests.cloud.test_fleet_releases import put_files

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


class Staff:
    """A member of staff's browser on the dashboards (cookies kept)."""

    def __init__(self, app: APIFlask) -> None:
        self.client: FlaskClient = app.test_client()

    def token(self, path: str) -> str:
        """The CSRF token of the first form on ``path``."""
        found = _CSRF.search(self.client.get(path).get_data(as_text=True))
        assert found is not None, "no form on %s" % path
        return found.group(1)

    def sign_in(self, name: str, password: str = PASSWORD, next_path: str = "") -> TestResponse:
        form = {"name": name, "password": password, "next": next_path}
        return self.post("/dashboard/signin", form)

    def post(self, path: str, form: dict[str, str], token: str | None = None) -> TestResponse:
        """POST ``form`` to ``path`` with the token of the form on ``path`` (or ``token``);
        the form's page is the POST's path with a GET, or the fleet page for actions."""
        if token is None:
            page = path if path == "/dashboard/signin" else "/dashboard/fleet"
            token = self.token(page)
        return self.client.post(path, data={"csrf_token": token, **form})

    def page(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return response.get_data(as_text=True)


def signed_in(app: APIFlask, name: str) -> Staff:
    staff = Staff(app)
    response = staff.sign_in(name)
    assert response.status_code == 302, response.get_data(as_text=True)
    return staff


def ready_release(rel: Releases, version: str = "1.5.0") -> int:
    """A signed release uploaded and completed through the API by an operations user
    (``ops`` must exist); its id."""
    ops = bearer(make_token(sign_in(rel.app, "ops")))
    bundle = signed_bundle(rel, "b%s" % version.replace(".", ""), version=version)
    release = (
        rel.app.test_client()
        .post("/api/fleet/releases", json=upload_body(bundle), headers=ops)
        .json
    )
    assert release is not None
    assert put_files(rel, ops, release["id"], bundle)["status"] == "ready"
    return release["id"]


class Branch:
    """Gateways and kiosks of a branch sending sealed batches through the real ingest."""

    def __init__(self, app: APIFlask, *uids: str) -> None:
        self.gateways = {uid: SimGateway(uid) for uid in uids}
        keys = MemoryKeySource()
        for gateway in self.gateways.values():
            gateway.keys(keys)
        self.ingest = Ingest(database_of(app), keys)
        self.seqs = itertools.count()
        self.event_ids = itertools.count(1)

    def send(self, uid: str, records: list[Any]) -> None:
        """One sealed batch of ``records`` from ``uid``, accepted by ingest."""
        gateway = self.gateways[uid]
        payload = encode_batch(records, CLOCK_UNIX_MS)
        envelope = cose.seal_with(gateway.ring, next(self.seqs), payload, gateway.aad)
        assert self.ingest.handle(envelope, gateway.aad, "mqtt", uid).status == "accepted"

    def check_in(self, kiosk: str, wearable: str | None, detail: str = "") -> None:
        """A customer checked in at ``kiosk`` now (with a paired wearable, or none)."""
        address = mac_from_str(wearable) if wearable else None
        event = KioskEvent(_now_ms(), KIOSK_CHECKIN, next(self.event_ids), address, detail)
        self.send(kiosk, [event])

    def presence(self, gateway: str, wearable: str, kind: str) -> None:
        """``gateway`` noticed ``wearable`` arrive (``enter``) or leave now."""
        self.send(gateway, [PresenceEvent(kind, mac_from_str(wearable), _now_ms(), -60, 90)])


def _now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def add_customer(
    app: APIFlask, email: str, wearable: str, branch_id: int, purposes: tuple[str, ...]
) -> int:
    """A customer with ``wearable`` paired at ``branch_id``, consenting to ``purposes``
    (as pairing leaves them, without the kiosk code); their id."""
    now = dt.datetime.now(dt.UTC)
    with app.app_context(), database().sessions() as db:
        customer = accounts.sign_up(db, email, PASSWORD)
        db.add(
            CustomerWearable(
                customer_id=customer.id, address=wearable, paired_at=now, branch_id=branch_id
            )
        )
        for purpose in purposes:
            consent.record(db, customer.id, purpose, True, "web", now)
        db.commit()
        return customer.id


def withdraw(app: APIFlask, customer_id: int, purpose: str) -> None:
    with app.app_context(), database().sessions() as db:
        consent.record(db, customer_id, purpose, False, "web", dt.datetime.now(dt.UTC))
        db.commit()
