"""Authentication at the HTTP layer: CSRF, cookie flags, headers, and which credential may
do what. None of it depends on the database, so these run on SQLite only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiflask import APIFlask
from sqlalchemy.engine import URL

from tests.cloud.people_actions import (
    PASSWORD,
    add_operator,
    bearer,
    body,
    login,
    make_token,
    sign_in,
)
from tests.support.cloud import make_app


@pytest.fixture
def http_app(sqlite_url: URL, tmp_path: Path) -> Iterator[APIFlask]:
    app = make_app(sqlite_url, tmp_path / "data")
    yield app
    app.extensions["bankiot.db"].dispose()


def test_wrong_password_and_unknown_name_look_the_same(http_app: APIFlask) -> None:
    add_operator(http_app, "ops", "operations")
    client = http_app.test_client()
    wrong = login(client, "ops", "wrong password here")
    unknown = login(client, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json == {"detail": {}, "message": "wrong name or password"}
    assert "Set-Cookie" not in wrong.headers and "Set-Cookie" not in unknown.headers
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/auth/session").status_code == 401


def test_state_changing_requests_need_the_csrf_token(http_app: APIFlask) -> None:
    add_operator(http_app, "ops", "operations")
    user = sign_in(http_app, "ops")
    other = sign_in(http_app, "ops")  # a second session has its own token
    assert user.csrf != other.csrf
    new_token = {"name": "ci", "expires_in_days": 1}
    missing = user.client.post("/api/tokens", json=new_token)
    assert missing.status_code == 403 and "CSRF" in body(missing)["message"]
    wrong = user.client.post("/api/tokens", json=new_token, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    assert user.client.post("/api/tokens", json=new_token, headers=other.csrf).status_code == 403
    assert user.client.get("/api/tokens").json == {"tokens": []}  # reads need no token
    assert user.client.post("/api/tokens", json=new_token, headers=user.csrf).status_code == 201
    # a form post may carry it as a field instead
    form = user.client.post("/api/auth/logout", data={"csrf_token": user.csrf["X-CSRF-Token"]})
    assert form.status_code == 204


def test_api_tokens_need_no_csrf_token(http_app: APIFlask) -> None:
    add_operator(http_app, "ops", "operations")
    token = make_token(sign_in(http_app, "ops"))
    client = http_app.test_client()
    response = client.post(
        "/api/branches", json={"code": "b1", "name": "B1"}, headers=bearer(token)
    )
    assert response.status_code == 201


def test_api_tokens_cannot_change_passwords_or_sign_out(http_app: APIFlask) -> None:
    add_operator(http_app, "ops", "operations")
    headers = bearer(make_token(sign_in(http_app, "ops")))
    client = http_app.test_client()
    payload = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    assert client.post("/api/auth/password", json=payload, headers=headers).status_code == 403
    assert client.post("/api/auth/logout", headers=headers).status_code == 400
    assert body(client.get("/api/auth/session", headers=headers))["method"] == "token"


SECURE_FLAG = [
    ("https://cloud.example.org", True),
    ("http://cloud.example.org", True),  # the browser will refuse it: no silent downgrade
    ("http://127.0.0.1:5000", False),  # the development server
    ("http://localhost", False),
    ("http://[::1]:5000", False),
]


def test_secure_flag_outside_tests(http_app: APIFlask) -> None:
    app = http_app
    app.config["TESTING"] = False
    add_operator(app, "ops", "operations")
    for base_url, secure in SECURE_FLAG:
        response = login(app.test_client(), "ops", base_url=base_url)
        assert response.status_code == 200
        assert ("; Secure" in response.headers["Set-Cookie"]) is secure, base_url
    for forced, secure in ((True, True), ("true", True), ("false", False), ("auto", False)):
        app.config["OPERATOR_COOKIE_SECURE"] = forced  # e.g. on behind a TLS proxy
        response = login(app.test_client(), "ops", base_url="http://127.0.0.1:5000")
        assert ("; Secure" in response.headers["Set-Cookie"]) is secure, forced


def test_a_bad_authorization_header_is_not_rescued_by_the_cookie(http_app: APIFlask) -> None:
    add_operator(http_app, "ops", "operations")
    user = sign_in(http_app, "ops")
    headers = {"Authorization": "Bearer bkt_not-a-token"}
    assert user.client.get("/api/auth/session", headers=headers).status_code == 401


def test_tokens_are_made_from_a_session_only(http_app: APIFlask) -> None:
    add_operator(http_app, "ops", "operations")
    user = sign_in(http_app, "ops")
    secret = make_token(user)
    minted = http_app.test_client().post(
        "/api/tokens", json={"name": "child"}, headers=bearer(secret)
    )
    assert minted.status_code == 403
    for days in (0, 366):
        payload = {"name": "x", "expires_in_days": days}
        response = user.client.post("/api/tokens", json=payload, headers=user.csrf)
        assert response.status_code == 422
    assert len(body(user.client.get("/api/tokens"))["tokens"]) == 1
