"""Roles and branch scoping on real rows: object-level authorization (OWASP API1/API5).

A branch manager or technician sees only their branches; another branch's branch or device
is 404 (its existence is not confirmed); operations-only actions are 403 for them.
"""

from __future__ import annotations

from apiflask import APIFlask

from tests.cloud.people_actions import bearer, make_token, seed, sign_in


def codes(response) -> list[str]:
    assert response.status_code == 200, response.json
    return [branch["code"] for branch in response.json["branches"]]


def test_listings_show_only_visible_branches(cloud_app: APIFlask) -> None:
    seed(cloud_app)
    assert codes(sign_in(cloud_app, "ops").client.get("/api/branches")) == ["north", "south"]
    assert codes(sign_in(cloud_app, "maria").client.get("/api/branches")) == ["north"]
    assert codes(sign_in(cloud_app, "tom").client.get("/api/branches")) == ["south"]


def test_another_branchs_objects_are_not_found(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    maria = sign_in(cloud_app, "maria").client
    own = maria.get("/api/branches/%d" % fleet.north)
    assert own.status_code == 200 and own.json is not None and own.json["code"] == "north"
    device = maria.get("/api/devices/%d" % fleet.north_device)
    assert device.status_code == 200 and device.json is not None
    assert device.json["uid"] == "gw-n1" and device.json["branch_id"] == fleet.north
    other = maria.get("/api/branches/%d" % fleet.south)
    missing = maria.get("/api/branches/%d" % (fleet.south + 100))
    assert other.status_code == missing.status_code == 404
    assert other.json == missing.json  # the same answer as for nothing at all
    assert maria.get("/api/devices/%d" % fleet.south_device).status_code == 404
    assert maria.get("/api/devices/99999999999").status_code == 404
    ops = sign_in(cloud_app, "ops").client
    assert ops.get("/api/devices/%d" % fleet.south_device).status_code == 200
    assert ops.get("/api/branches/%d" % fleet.south).status_code == 200


def test_api_tokens_carry_the_same_scope(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    token = bearer(make_token(sign_in(cloud_app, "tom")))
    client = cloud_app.test_client()
    assert client.get("/api/devices/%d" % fleet.south_device, headers=token).status_code == 200
    assert client.get("/api/devices/%d" % fleet.north_device, headers=token).status_code == 404
    assert codes(client.get("/api/branches", headers=token)) == ["south"]


def test_operations_only_actions_are_forbidden_to_others(cloud_app: APIFlask) -> None:
    seed(cloud_app)
    new_branch = {"code": "east", "name": "East"}
    for name in ("tom", "maria"):
        user = sign_in(cloud_app, name)
        created = user.client.post("/api/branches", json=new_branch, headers=user.csrf)
        assert created.status_code == 403, name
        assert user.client.get("/api/operators").status_code == 403
        assert user.client.get("/api/audit").status_code == 403
    ops = sign_in(cloud_app, "ops")
    assert ops.client.post("/api/branches", json=new_branch, headers=ops.csrf).status_code == 201
    again = ops.client.post("/api/branches", json=new_branch, headers=ops.csrf)
    assert again.status_code == 409
    assert codes(ops.client.get("/api/branches")) == ["east", "north", "south"]


def test_nobody_signed_in_gets_401(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    client = cloud_app.test_client()
    for url in ("/api/branches", "/api/branches/%d" % fleet.north, "/api/operators"):
        assert client.get(url).status_code == 401, url
    assert client.post("/api/branches", json={"code": "x", "name": "X"}).status_code == 401


def test_a_new_assignment_applies_to_the_running_session(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    maria = sign_in(cloud_app, "maria")
    assert maria.client.get("/api/devices/%d" % fleet.south_device).status_code == 404
    ops = sign_in(cloud_app, "ops")
    listing = ops.client.get("/api/operators").json
    assert listing is not None
    operators = {o["name"]: o for o in listing["operators"]}
    url = "/api/operators/%d" % operators["maria"]["id"]
    moved = ops.client.patch(url, json={"branches": ["south"]}, headers=ops.csrf)
    assert moved.status_code == 200 and moved.json is not None
    assert moved.json["branches"] == ["south"]
    assert maria.client.get("/api/devices/%d" % fleet.south_device).status_code == 200
    assert maria.client.get("/api/devices/%d" % fleet.north_device).status_code == 404
    assert codes(maria.client.get("/api/branches")) == ["south"]
