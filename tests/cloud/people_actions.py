"""Actions the people and access tests share: seed rows, sign in, make tokens.

Like the Flask tutorial's ``AuthActions``: small verbs over the real app and database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from cloud.db import database
from cloud.fleet.models import Branch, Device
from cloud.people.operators import create_operator

PASSWORD = "correct horse battery staple"


@dataclass
class Fleet:
    """Two branches with one device each, and one operator of each role."""

    north: int
    south: int
    north_device: int
    south_device: int


def add_branch(app: APIFlask, code: str) -> int:
    with app.app_context(), database().sessions() as db:
        branch = Branch(code=code, name="Branch %s" % code)
        db.add(branch)
        db.commit()
        return branch.id


def add_device(app: APIFlask, uid: str, branch_id: int) -> int:
    with app.app_context(), database().sessions() as db:
        device = Device(uid=uid, kind="gateway", branch_id=branch_id)
        db.add(device)
        db.commit()
        return device.id


def add_operator(
    app: APIFlask, name: str, role: str, branches: tuple[str, ...] = (), password: str = PASSWORD
) -> int:
    with app.app_context(), database().sessions() as db:
        operator = create_operator(db, "test", name, role, branches, password)
        db.commit()
        return operator.id


def seed(app: APIFlask) -> Fleet:
    """Branches north and south with a device each; ops (operations), maria (branch manager
    of north), tom (technician in south)."""
    north, south = add_branch(app, "north"), add_branch(app, "south")
    fleet = Fleet(north, south, add_device(app, "gw-n1", north), add_device(app, "gw-s1", south))
    add_operator(app, "ops", "operations")
    add_operator(app, "maria", "branch_manager", ("north",))
    add_operator(app, "tom", "technician", ("south",))
    return fleet


@dataclass
class SignedIn:
    """A client with a session, and the CSRF header that goes with it."""

    client: FlaskClient
    csrf: dict[str, str]


def sign_in(app: APIFlask, name: str, password: str = PASSWORD) -> SignedIn:
    """A fresh client signed in as ``name``."""
    client = app.test_client()
    response = client.post("/api/auth/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.json
    assert response.json is not None
    return SignedIn(client, {"X-CSRF-Token": response.json["csrf_token"]})


def make_token(user: SignedIn, name: str = "ci", days: int = 30) -> str:
    """A new API token of the signed-in operator (the secret)."""
    response = user.client.post(
        "/api/tokens", json={"name": name, "expires_in_days": days}, headers=user.csrf
    )
    assert response.status_code == 201, response.json
    assert response.json is not None
    return response.json["token"]


def body(response: TestResponse) -> dict:
    """The JSON body of ``response`` (which must have one)."""
    assert response.json is not None
    return response.json


def login(client: FlaskClient, name: str, password: str = PASSWORD, **kwargs: Any) -> TestResponse:
    """POST /api/auth/login; ``kwargs`` go to the test client (``base_url``, ``environ_base``)."""
    return client.post("/api/auth/login", json={"name": name, "password": password}, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer %s" % token}
