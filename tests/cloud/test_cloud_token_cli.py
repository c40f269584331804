"""``bankiot cloud token create``: an API token made on the database, as the API makes one."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from apiflask import APIFlask
from sqlalchemy import func, select

from cloud.audit import AuditEvent
from cloud.db import database
from cloud.people.models import ApiToken, Operator
from provisioning.cli import main
from tests.cloud.people_actions import add_operator, bearer, body


@pytest.fixture
def app(cloud_app: APIFlask, monkeypatch: pytest.MonkeyPatch) -> APIFlask:
    """The cloud app, its database given to the commands as in production (environment)."""
    monkeypatch.setenv("BANKIOT_DATABASE_URL", cloud_app.config["DATABASE_URL"])
    add_operator(cloud_app, "alice", "operations")
    return cloud_app


def token_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["cloud", "token", "create", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_token_is_printed_once_works_as_its_operator_and_only_its_hash_is_kept(
    app: APIFlask, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = token_cli(capsys, "Alice", "--name", "alice laptop", "--days", "7")
    assert code == 0, err
    first, second = out.splitlines()
    secret = second.removeprefix("token (shown once): ")
    assert secret.startswith("bkt_") and len(secret) > 40
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).date()
    assert first.startswith("token 1 (alice laptop) of alice, operations, expires ")
    assert abs(dt.date.fromisoformat(first.rsplit(" ", 1)[1]) - expires) <= dt.timedelta(days=1)

    client = app.test_client()
    listed = body(client.get("/api/tokens", headers=bearer(secret)))["tokens"]
    assert [(t["name"], t["prefix"], t["status"]) for t in listed] == [
        ("alice laptop", secret[:10], "active")
    ]
    assert client.get("/api/branches", headers=bearer(secret)).status_code == 200
    assert client.get("/api/branches", headers=bearer(secret + "x")).status_code == 401

    with app.app_context(), database().sessions() as db:
        row = db.scalars(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in repr([getattr(row, c.key) for c in ApiToken.__table__.columns])
        event = db.scalars(select(AuditEvent).where(AuditEvent.action == "token.create")).one()
        assert event.actor.startswith("cli:") and event.target == "token:%d" % row.id
        assert event.details["prefix"] == secret[:10] and secret not in repr(event.details)


def test_the_default_name_and_lifetime_are_the_apis(
    app: APIFlask, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = token_cli(capsys, "alice")
    assert code == 0, err
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).date()  # the API's 90 days
    first = out.splitlines()[0]
    assert first.startswith("token 1 (command line) of alice")
    assert abs(dt.date.fromisoformat(first.rsplit(" ", 1)[1]) - expires) <= dt.timedelta(days=1)


def test_refusals_are_one_line_and_write_nothing(
    app: APIFlask, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = add_operator(app, "gone", "operations")
    with app.app_context(), database().sessions() as db:
        operator = db.get(Operator, gone)
        assert operator is not None
        operator.active = False
        db.commit()
    cases = [
        (("bob",), "no operator 'bob'"),
        (("gone",), "operator gone is disabled"),
        (("alice", "--days", "0"), "--days: Must be greater than or equal to 1"),
        (("alice", "--days", "366"), "--days:"),
        (("alice", "--name", ""), "--name: 1 to 64 printable ASCII characters"),
        (("alice", "--name", "tab\there"), "--name: 1 to 64 printable ASCII characters"),
    ]
    for argv, says in cases:
        code, out, err = token_cli(capsys, *argv)
        assert code == 1 and out == "", argv
        assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
        assert says in err, err
    with app.app_context(), database().sessions() as db:
        assert db.scalar(select(func.count()).select_from(ApiToken)) == 0
        assert db.scalar(select(func.count()).where(AuditEvent.action == "token.create")) == 0
