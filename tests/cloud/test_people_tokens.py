"""API tokens: shown once, stored as digests, expiring, revocable, owned."""

from __future__ import annotations

import datetime as dt
import hashlib

from apiflask import APIFlask
from sqlalchemy import select, update

from cloud.db import database
from cloud.people.models import ApiToken
from tests.cloud.people_actions import add_operator, bearer, body, make_token, sign_in


def whoami(app: APIFlask, headers: dict[str, str]):
    return app.test_client().get("/api/auth/session", headers=headers)


def test_a_token_is_shown_once_and_kept_as_a_digest(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    user = sign_in(cloud_app, "ops")
    created = user.client.post(
        "/api/tokens", json={"name": "grafana", "expires_in_days": 30}, headers=user.csrf
    )
    assert created.status_code == 201
    secret = body(created)["token"]
    assert secret.startswith("bkt_") and len(secret) >= 4 + 43
    assert body(created)["prefix"] == secret[:10] and body(created)["status"] == "active"
    lifetime = dt.datetime.fromisoformat(body(created)["expires_at"]) - dt.datetime.fromisoformat(
        body(created)["created_at"]
    )
    assert abs(lifetime - dt.timedelta(days=30)) < dt.timedelta(minutes=5)
    listed = body(user.client.get("/api/tokens"))["tokens"]
    assert [t["name"] for t in listed] == ["grafana"] and "token" not in listed[0]
    with cloud_app.app_context(), database().sessions() as db:
        row = db.scalars(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (row.token_hash, row.prefix, row.name)


def test_a_bearer_token_acts_as_its_operator(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    secret = make_token(sign_in(cloud_app, "ops"))
    response = whoami(cloud_app, bearer(secret))
    assert response.status_code == 200
    assert body(response)["name"] == "ops" and body(response)["method"] == "token"
    assert body(response)["csrf_token"] is None
    for header in ("Basic b3BzOnBhc3M=", "Bearer", "Bearer bkt_" + "A" * 43, secret):
        assert whoami(cloud_app, {"Authorization": header}).status_code == 401, header


def test_expired_tokens_are_refused(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    user = sign_in(cloud_app, "ops")
    secret = make_token(user)
    assert whoami(cloud_app, bearer(secret)).status_code == 200
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with cloud_app.app_context(), database().sessions() as db:
        db.execute(update(ApiToken).values(expires_at=past))
        db.commit()
    assert whoami(cloud_app, bearer(secret)).status_code == 401
    assert body(user.client.get("/api/tokens"))["tokens"][0]["status"] == "expired"


def test_revoked_tokens_are_refused(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    user = sign_in(cloud_app, "ops")
    keep, drop = make_token(user, "keep"), make_token(user, "drop")
    tokens = {t["name"]: t for t in body(user.client.get("/api/tokens"))["tokens"]}
    url = "/api/tokens/%d" % tokens["drop"]["id"]
    assert user.client.delete(url).status_code == 403  # a cookie needs its CSRF token
    assert user.client.delete(url, headers=user.csrf).status_code == 204
    assert whoami(cloud_app, bearer(drop)).status_code == 401
    assert whoami(cloud_app, bearer(keep)).status_code == 200
    tokens = {t["name"]: t for t in body(user.client.get("/api/tokens"))["tokens"]}
    assert tokens["drop"]["status"] == "revoked" and tokens["drop"]["revoked_at"]
    assert tokens["keep"]["status"] == "active"
    # a token may revoke itself (a client that knows it leaked)
    client = cloud_app.test_client()
    own = client.delete("/api/tokens/%d" % tokens["keep"]["id"], headers=bearer(keep))
    assert own.status_code == 204
    assert whoami(cloud_app, bearer(keep)).status_code == 401


def test_tokens_belong_to_their_operator(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    add_operator(cloud_app, "other", "operations")
    mine = sign_in(cloud_app, "ops")
    make_token(mine)
    token_id = body(mine.client.get("/api/tokens"))["tokens"][0]["id"]
    theirs = sign_in(cloud_app, "other")
    assert body(theirs.client.get("/api/tokens")) == {"tokens": []}
    url = "/api/tokens/%d" % token_id
    assert theirs.client.delete(url, headers=theirs.csrf).status_code == 404
    assert theirs.client.delete("/api/tokens/99999999999", headers=theirs.csrf).status_code == 404
    assert body(mine.client.get("/api/tokens"))["tokens"][0]["status"] == "active"


def test_a_token_follows_its_operator(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    add_operator(cloud_app, "ann", "operations")
    secret = make_token(sign_in(cloud_app, "ann"))
    admin = sign_in(cloud_app, "ops")
    ann = body(admin.client.get("/api/operators"))["operators"][0]
    assert ann["name"] == "ann"
    url = "/api/operators/%d" % ann["id"]
    assert admin.client.patch(url, json={"active": False}, headers=admin.csrf).status_code == 200
    assert whoami(cloud_app, bearer(secret)).status_code == 401
    assert admin.client.patch(url, json={"active": True}, headers=admin.csrf).status_code == 200
    assert whoami(cloud_app, bearer(secret)).status_code == 401  # disabling revoked it for good
