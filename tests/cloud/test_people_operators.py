"""Operator accounts through the API: create, change, disable; the rules that guard them."""

from __future__ import annotations

from apiflask import APIFlask

from tests.cloud.people_actions import (
    PASSWORD,
    SignedIn,
    add_branch,
    add_operator,
    bearer,
    make_token,
    sign_in,
)


def body(response) -> dict:
    assert response.json is not None
    return response.json


def operator_ids(user: SignedIn) -> dict[str, int]:
    return {o["name"]: o["id"] for o in body(user.client.get("/api/operators"))["operators"]}


def test_operations_create_operators_who_can_sign_in(cloud_app: APIFlask) -> None:
    add_branch(cloud_app, "north")
    add_operator(cloud_app, "ops", "operations")
    ops = sign_in(cloud_app, "ops")
    new = {"name": "maria", "role": "branch_manager", "branches": ["north"], "password": PASSWORD}
    created = ops.client.post("/api/operators", json=new, headers=ops.csrf)
    assert created.status_code == 201
    assert body(created)["branches"] == ["north"] and body(created)["active"] is True
    assert "password" not in body(created)
    shown = ops.client.get("/api/operators/%d" % body(created)["id"])
    assert body(shown) == body(created)
    maria = body(sign_in(cloud_app, "maria").client.get("/api/auth/session"))
    assert maria["role"] == "branch_manager" and maria["branches"] == ["north"]
    assert maria["all_branches"] is False
    assert ops.client.get("/api/operators/99999999999").status_code == 404


def test_bad_operator_changes_name_the_problem(cloud_app: APIFlask) -> None:
    add_branch(cloud_app, "north")
    add_operator(cloud_app, "ops", "operations")
    ops = sign_in(cloud_app, "ops")

    def create(**fields):
        new = {"name": "sam", "role": "technician", "branches": ["north"], "password": PASSWORD}
        new.update(fields)
        return ops.client.post("/api/operators", json=new, headers=ops.csrf)

    cases = [
        ({"name": "ops"}, 409, "exists"),
        ({"branches": ["nowhere"]}, 422, "no such branch: nowhere"),
        ({"branches": []}, 422, "needs at least one branch"),
        ({"role": "operations"}, 422, "give no branches"),
        ({"password": "short"}, 422, "at least 12"),
        ({"name": "Sam Smith"}, 422, ""),
        ({"role": "root"}, 422, ""),
    ]
    for fields, status, needle in cases:
        response = create(**fields)
        assert response.status_code == status, fields
        assert needle in body(response)["message"], fields
    assert sorted(operator_ids(ops)) == ["ops"]


def test_the_last_operations_account_stays(cloud_app: APIFlask) -> None:
    add_branch(cloud_app, "north")
    add_operator(cloud_app, "ops", "operations")
    ops = sign_in(cloud_app, "ops")
    url = "/api/operators/%d" % operator_ids(ops)["ops"]
    demote = {"role": "technician", "branches": ["north"]}
    for change in (demote, {"active": False}):
        response = ops.client.patch(url, json=change, headers=ops.csrf)
        assert response.status_code == 409
        assert "last active operations account" in body(response)["message"]
    add_operator(cloud_app, "ann", "operations")
    assert ops.client.patch(url, json=demote, headers=ops.csrf).status_code == 200
    assert ops.client.get("/api/operators").status_code == 403  # effective at once


def test_promotion_to_operations_drops_branches(cloud_app: APIFlask) -> None:
    add_branch(cloud_app, "north")
    add_operator(cloud_app, "ops", "operations")
    add_operator(cloud_app, "tom", "technician", ("north",))
    ops = sign_in(cloud_app, "ops")
    url = "/api/operators/%d" % operator_ids(ops)["tom"]
    promoted = ops.client.patch(url, json={"role": "operations"}, headers=ops.csrf)
    assert promoted.status_code == 200
    assert body(promoted)["role"] == "operations" and body(promoted)["branches"] == []


def test_disabling_ends_sessions_and_tokens(cloud_app: APIFlask) -> None:
    add_branch(cloud_app, "north")
    add_operator(cloud_app, "ops", "operations")
    add_operator(cloud_app, "tom", "technician", ("north",))
    tom = sign_in(cloud_app, "tom")
    token = bearer(make_token(tom))
    ops = sign_in(cloud_app, "ops")
    url = "/api/operators/%d" % operator_ids(ops)["tom"]
    assert ops.client.patch(url, json={"active": False}, headers=ops.csrf).status_code == 200
    assert tom.client.get("/api/auth/session").status_code == 401
    assert cloud_app.test_client().get("/api/auth/session", headers=token).status_code == 401
    login = {"name": "tom", "password": PASSWORD}
    assert cloud_app.test_client().post("/api/auth/login", json=login).status_code == 401
    assert ops.client.patch(url, json={"active": True}, headers=ops.csrf).status_code == 200
    assert tom.client.get("/api/auth/session").status_code == 401  # ended, not paused
    assert sign_in(cloud_app, "tom").client.get("/api/auth/session").status_code == 200
