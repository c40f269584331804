"""The audit log of sign-ins, tokens and operator changes, and ``GET /api/audit``."""

from __future__ import annotations

import json

from apiflask import APIFlask
from sqlalchemy import select

from cloud.audit import AuditEvent
from cloud.db import database
from tests.cloud.people_actions import PASSWORD, add_operator, make_token, sign_in


def events(app: APIFlask) -> list[dict]:
    with app.app_context(), database().sessions() as db:
        rows = db.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [
            {"actor": e.actor, "action": e.action, "target": e.target, "details": e.details}
            for e in rows
        ]


def test_sign_ins_are_audited_without_passwords(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    client = cloud_app.test_client()
    attempts = [
        ("ops", "a wrong guess at it"),
        ("Tr0ub4dor.and.3", PASSWORD),  # a password typed into the name field
        ("ops", PASSWORD),
    ]
    for name, password in attempts:
        client.post("/api/auth/login", json={"name": name, "password": password})
    logged = [e for e in events(cloud_app) if e["action"].startswith("login.")]
    summary = [(e["action"], e["target"], e["details"].get("reason", "")) for e in logged]
    assert summary == [
        ("login.failure", "operator:ops", "wrong password"),
        ("login.failure", "", "unknown name"),
        ("login.success", "operator:ops", ""),
    ]
    assert logged[2]["actor"] == "operator:ops" and logged[0]["actor"] == "anonymous"
    text = json.dumps(events(cloud_app))
    for secret in (PASSWORD, "a wrong guess at it", "Tr0ub4dor.and.3"):
        assert secret not in text


def test_token_and_operator_changes_are_audited(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    ops = sign_in(cloud_app, "ops")
    secret = make_token(ops, "grafana")
    listing = ops.client.get("/api/tokens").json
    assert listing is not None
    token_id = listing["tokens"][0]["id"]
    ops.client.delete("/api/tokens/%d" % token_id, headers=ops.csrf)
    new = {"name": "ann", "role": "operations", "password": PASSWORD}
    ann = ops.client.post("/api/operators", json=new, headers=ops.csrf).json
    assert ann is not None
    ops.client.patch("/api/operators/%d" % ann["id"], json={"active": False}, headers=ops.csrf)
    mine = [e for e in events(cloud_app) if e["actor"] == "operator:ops"]
    assert [(e["action"], e["target"]) for e in mine] == [
        ("login.success", "operator:ops"),
        ("token.create", "token:%d" % token_id),
        ("token.revoke", "token:%d" % token_id),
        ("operator.create", "operator:ann"),
        ("operator.update", "operator:ann"),
    ]
    assert mine[1]["details"]["name"] == "grafana" and mine[1]["details"]["prefix"]
    assert mine[4]["details"] == {"active": [True, False]}
    assert secret not in json.dumps(events(cloud_app))


def test_the_audit_api_pages_and_filters(cloud_app: APIFlask) -> None:
    add_operator(cloud_app, "ops", "operations")
    client = cloud_app.test_client()
    for _ in range(3):
        client.post("/api/auth/login", json={"name": "ops", "password": "wrong password!"})
    ops = sign_in(cloud_app, "ops")
    first = ops.client.get("/api/audit?limit=2").json
    assert first is not None
    assert [e["action"] for e in first["events"]] == ["login.success", "login.failure"]
    assert first["next_before"] == first["events"][-1]["id"]
    rest = ops.client.get("/api/audit?limit=10&before=%d" % first["next_before"]).json
    assert rest is not None and rest["next_before"] is None
    assert [e["action"] for e in rest["events"]] == [
        "login.failure",
        "login.failure",
        "operator.create",
    ]
    failures = ops.client.get("/api/audit?action=login.failure").json
    assert failures is not None and len(failures["events"]) == 3
    assert all(e["at"].endswith("+00:00") for e in failures["events"])
    by_actor = ops.client.get("/api/audit?actor=operator:ops").json
    assert by_actor is not None
    assert [e["action"] for e in by_actor["events"]] == ["login.success"]
    for bad in ("limit=0", "limit=501", "before=0", "action=DROP%20TABLE"):
        assert ops.client.get("/api/audit?" + bad).status_code == 422, bad
