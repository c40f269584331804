"""Sign-in sessions kept on the server: the cookie's digest, sign-out, expiry, passwords."""

from __future__ import annotations

import datetime as dt
import hashlib

from apiflask import APIFlask
from sqlalchemy import select, update

from cloud.db import database
from cloud.people.models import OperatorSession
from cloud.people.sessions import COOKIE_NAME
from tests.cloud.people_actions import PASSWORD, add_operator, body, login, sign_in


def test_sign_in_sets_a_safe_cookie_and_keeps_only_its_digest(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    client = cloud_app.test_client()
    response = login(client, "OPS")  # names are not case-sensitive
    assert response.status_code == 200
    assert body(response)["name"] == "ops" and body(response)["role"] == "operations"
    assert body(response)["method"] == "session" and body(response)["all_branches"] is True
    header = response.headers["Set-Cookie"]
    assert header.startswith(COOKIE_NAME + "=bks_")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Max-Age=28800" in header
    assert "Secure" not in header  # TESTING over plain http
    cookie = client.get_cookie(COOKIE_NAME)
    assert cookie is not None
    with cloud_app.app_context(), database().sessions() as db:
        stored = db.scalars(select(OperatorSession.token_hash)).one()
    assert stored == hashlib.sha256(cookie.value.encode()).hexdigest() != cookie.value
    assert body(client.get("/api/auth/session"))["name"] == "ops"


def test_sign_out_ends_the_session_on_the_server(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    user = sign_in(cloud_app, "ops")
    cookie = user.client.get_cookie(COOKIE_NAME)
    assert cookie is not None
    response = user.client.post("/api/auth/logout", headers=user.csrf)
    assert response.status_code == 204
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert user.client.get_cookie(COOKIE_NAME) is None
    replay = cloud_app.test_client()
    replay.set_cookie(COOKIE_NAME, cookie.value)  # a copy of the cookie is worthless now
    assert replay.get("/api/auth/session").status_code == 401


def test_signing_in_again_replaces_the_old_session(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    user = sign_in(cloud_app, "ops")
    old = user.client.get_cookie(COOKIE_NAME)
    assert old is not None
    assert login(user.client, "ops").status_code == 200
    replay = cloud_app.test_client()
    replay.set_cookie(COOKIE_NAME, old.value)
    assert replay.get("/api/auth/session").status_code == 401
    assert user.client.get("/api/auth/session").status_code == 200


def test_expired_sessions_are_refused(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    user = sign_in(cloud_app, "ops")
    assert user.client.get("/api/auth/session").status_code == 200
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with cloud_app.app_context(), database().sessions() as db:
        db.execute(update(OperatorSession).values(expires_at=past))
        db.commit()
    assert user.client.get("/api/auth/session").status_code == 401
    sign_in(cloud_app, "ops")  # a new sign-in clears the ended ones away
    with cloud_app.app_context(), database().sessions() as db:
        assert len(db.scalars(select(OperatorSession)).all()) == 1


def test_changing_my_password_ends_my_other_sessions(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    user, elsewhere = sign_in(cloud_app, "ops"), sign_in(cloud_app, "ops")
    new = "a brand new passphrase"

    def change(current: str, password: str, headers=user.csrf):
        payload = {"current_password": current, "new_password": password}
        return user.client.post("/api/auth/password", json=payload, headers=headers)

    assert change("not my password", new).status_code == 403
    weak = change(PASSWORD, "short")
    assert weak.status_code == 422 and "at least 12" in body(weak)["message"]
    assert change(PASSWORD, new).status_code == 204
    assert user.client.get("/api/auth/session").status_code == 200  # this one stays
    assert elsewhere.client.get("/api/auth/session").status_code == 401
    assert login(cloud_app.test_client(), "ops", PASSWORD).status_code == 401
    assert login(cloud_app.test_client(), "ops", new).status_code == 200
