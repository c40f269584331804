"""The configuration and command API: shadows, commands to devices, branches and cohorts,
roles and object-level authorization (a branch's staff never reach another branch)."""

from __future__ import annotations

from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select

from cloud.audit import AuditEvent
from cloud.db import database
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers
from tests.cloud.people_actions import body

IRK = "ec0234a357c8ad05341010a60a397d9b"  # Bluetooth Core spec's sample IRK (a secret here)


@pytest.fixture
def fleet(cloud_app: APIFlask) -> dict[str, Any]:
    """North: two gateways, a kiosk, a beacon, a revoked gateway; south: one gateway."""
    branches = add_branches(cloud_app, "north", "south")
    n1, n2, kiosk, beacon, revoked, s1 = add_devices(
        cloud_app,
        {"uid": "gw-n1", "branch_id": branches["north"], "status": "active"},
        {"uid": "gw-n2", "branch_id": branches["north"], "status": "active"},
        {"uid": "kiosk-n", "branch_id": branches["north"], "kind": "kiosk", "status": "active"},
        {"uid": "bcn-n", "branch_id": branches["north"], "kind": "beacon"},
        {"uid": "gw-old", "branch_id": branches["north"], "status": "revoked"},
        {"uid": "gw-s1", "branch_id": branches["south"], "status": "active"},
    )
    return {
        "branches": branches,
        "n1": n1,
        "n2": n2,
        "kiosk": kiosk,
        "beacon": beacon,
        "revoked": revoked,
        "s1": s1,
    }


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    return Callers(cloud_app)


def config_url(device: int) -> str:
    return "/api/fleet/devices/%d/config" % device


def put_config(client: FlaskClient, device: int, settings: dict[str, Any], status: int = 200):
    response = client.put(config_url(device), json={"settings": settings})
    assert response.status_code == status, response.json
    return body(response)


def audit(app: APIFlask, action: str) -> list[dict[str, Any]]:
    with app.app_context(), database().sessions() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == action))
        return [dict(row.details) | {"actor": row.actor, "target": row.target} for row in rows]


# ---- configuration -------------------------------------------------------------------------


def test_a_new_device_has_no_desired_configuration(client, callers, fleet) -> None:
    callers.as_operations()
    config = body(client.get(config_url(fleet["n1"])))
    assert config["revision"] is None and config["settings"] == {} and config["in_sync"]


def test_each_change_is_a_new_revision_and_the_same_settings_are_none(
    cloud_app, client, callers, fleet
) -> None:
    callers.as_manager(fleet["branches"]["north"])
    first = put_config(client, fleet["n1"], {"rate_per_min": 30})
    assert (first["revision"], first["settings"]) == (1, {"rate_per_min": 30})
    assert first["updated_by"] == "operator:maria"
    assert first["reported_revision"] is None and not first["in_sync"]
    again = put_config(client, fleet["n1"], {"rate_per_min": 30})
    assert again["revision"] == 1 and again["updated_at"] == first["updated_at"]
    second = put_config(client, fleet["n1"], {"rate_per_min": 60, "uplink": "coap"})
    assert second["revision"] == 2
    assert body(client.get(config_url(fleet["n1"])))["settings"] == {
        "rate_per_min": 60,
        "uplink": "coap",
    }
    # The audit log names the keys that changed; two changes, two events.
    changes = audit(cloud_app, "config.set")
    assert [(c["revision"], c["keys"]) for c in changes] == [
        (1, ["rate_per_min"]),
        (2, ["rate_per_min", "uplink"]),
    ]


def test_secret_settings_never_reach_the_audit_log(cloud_app, client, callers, fleet) -> None:
    callers.as_operations()
    put_config(client, fleet["n1"], {"irks": {"C0:00:00:00:00:01": IRK}})
    (event,) = audit(cloud_app, "config.set")
    assert event["keys"] == ["irks"] and IRK not in repr(event)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"rate_per_minute": 30}, "'rate_per_minute'"),
        ({"uplink": "http"}, "'uplink'"),
        ({"scan_interval_ms": 50, "scan_window_ms": 60}, "'scan_window_ms'"),
        ({"irks": {"C0:00:00:00:00:01": "00" * 16}}, "all zeros"),
    ],
)
def test_settings_a_gateway_would_refuse_are_refused_at_once(
    client, callers, fleet, settings, named
) -> None:
    callers.as_operations()
    refused = put_config(client, fleet["n1"], settings, status=422)
    assert named in refused["message"] and "\n" not in refused["message"]
    assert body(client.get(config_url(fleet["n1"])))["revision"] is None


def test_only_gateways_and_kiosks_in_service_take_configuration(client, callers, fleet) -> None:
    callers.as_operations()
    assert put_config(client, fleet["kiosk"], {"presence": False})["revision"] == 1
    for device in ("beacon", "revoked"):
        refused = put_config(client, fleet[device], {"presence": False}, status=422)
        assert "take" in refused["message"]


def test_roles_and_branches_bound_who_configures(client, callers, fleet) -> None:
    north, south = fleet["branches"]["north"], fleet["branches"]["south"]
    callers.as_manager(north)
    put_config(client, fleet["s1"], {"presence": False}, status=404)
    assert client.get(config_url(fleet["s1"])).status_code == 404
    callers.as_technician(south)
    assert client.get(config_url(fleet["s1"])).status_code == 200
    put_config(client, fleet["s1"], {"presence": False}, status=403)


def test_a_branch_configuration_reaches_every_gateway_and_kiosk_in_service(
    client, callers, fleet
) -> None:
    callers.as_manager(fleet["branches"]["north"])
    response = client.put(
        "/api/fleet/config",
        json={"branch": fleet["branches"]["north"], "settings": {"presence_timeout_ms": 30000}},
    )
    assert response.status_code == 200, response.json
    reached = {c["device_id"]: c["revision"] for c in body(response)["configs"]}
    assert reached == {fleet["n1"]: 1, fleet["n2"]: 1, fleet["kiosk"]: 1}
    only_kiosks = client.put(
        "/api/fleet/config",
        json={
            "branch": fleet["branches"]["north"],
            "kind": "kiosk",
            "settings": {"presence": False},
        },
    )
    assert [c["device_id"] for c in body(only_kiosks)["configs"]] == [fleet["kiosk"]]
    # Another branch, or a cohort with a device of another branch: not found, nothing set.
    for target in ({"branch": fleet["branches"]["south"]}, {"devices": [fleet["n1"], fleet["s1"]]}):
        refused = client.put("/api/fleet/config", json={**target, "settings": {"presence": True}})
        assert refused.status_code == 404
    assert body(client.get(config_url(fleet["n1"])))["revision"] == 1


# ---- commands --------------------------------------------------------------------------------


def send(client: FlaskClient, status: int = 201, **request: Any) -> dict[str, Any]:
    response = client.post("/api/fleet/commands", json=request)
    assert response.status_code == status, response.json
    return body(response)


def test_a_branch_command_is_one_command_per_member(client, callers, fleet) -> None:
    callers.as_technician(fleet["branches"]["north"])
    group = send(client, branch=fleet["branches"]["north"], name="reboot")
    assert sorted(c["device_id"] for c in group["commands"]) == sorted(
        [fleet["n1"], fleet["n2"], fleet["kiosk"]]
    )
    assert group["counts"] == {"pending": 3}
    assert {c["status"] for c in group["commands"]} == {"pending"}
    assert group["target"] == {"branch": fleet["branches"]["north"]}
    assert body(client.get("/api/fleet/command-groups/%d" % group["id"])) == group


def test_destructive_commands_are_for_cloud_operations(client, callers, fleet) -> None:
    callers.as_manager(fleet["branches"]["north"])
    refused = send(client, 403, devices=[fleet["n1"]], name="factory_reset")
    assert "may not send 'factory_reset'" in refused["message"]
    callers.as_operations()
    assert send(client, devices=[fleet["n1"]], name="factory_reset")["counts"] == {"pending": 1}


def test_commands_outside_ones_branches_are_not_found(client, callers, fleet) -> None:
    callers.as_operations()
    south_group = send(client, devices=[fleet["s1"]], name="rescan")
    command_id = south_group["commands"][0]["id"]
    callers.as_manager(fleet["branches"]["north"])
    send(client, 404, devices=[fleet["s1"]], name="rescan")
    send(client, 404, branch=fleet["branches"]["south"], name="rescan")
    assert client.get("/api/fleet/commands/%d" % command_id).status_code == 404
    assert client.post("/api/fleet/commands/%d/cancel" % command_id).status_code == 404
    assert client.get("/api/fleet/command-groups/%d" % south_group["id"]).status_code == 404
    assert body(client.get("/api/fleet/commands"))["commands"] == []


@pytest.mark.parametrize(
    "request_body",
    [
        {"name": "reboot"},  # no target
        {"name": "reboot", "branch": 1, "devices": [1]},  # two targets
        {"name": "update", "devices": [1]},  # rollouts only
        {"name": "self_destruct", "devices": [1]},
        {"name": "reboot", "devices": [1], "timeout_s": 0},
    ],
)
def test_malformed_commands_are_refused(client, callers, fleet, request_body) -> None:
    callers.as_operations()
    assert client.post("/api/fleet/commands", json=request_body).status_code == 422


def test_arguments_and_unfit_devices_are_refused_naming_why(client, callers, fleet) -> None:
    callers.as_operations()
    refused = send(client, 422, devices=[fleet["n1"]], name="reboot", args={"delay": 5})
    assert "takes no arguments" in refused["message"]
    refused = send(client, 422, devices=[fleet["n1"], fleet["beacon"]], name="reboot")
    assert "beacon" in refused["message"]
    assert body(client.get("/api/fleet/commands"))["commands"] == []  # nothing half-issued


def test_cancel_an_open_command_once(cloud_app, client, callers, fleet) -> None:
    callers.as_operations()
    command = send(client, devices=[fleet["n1"]], name="rescan")["commands"][0]
    cancelled = client.post("/api/fleet/commands/%d/cancel" % command["id"])
    assert body(cancelled)["status"] == "cancelled" and body(cancelled)["finished_at"]
    again = client.post("/api/fleet/commands/%d/cancel" % command["id"])
    assert again.status_code == 409 and "cancelled already" in body(again)["message"]
    assert [e["target"] for e in audit(cloud_app, "command.cancel")] == [
        "command:%d" % command["id"]
    ]


def test_listing_filters_and_pages_newest_first(client, callers, fleet) -> None:
    callers.as_operations()
    ids = [
        send(client, devices=[fleet[d]], name="rescan")["commands"][0]["id"]
        for d in ("n1", "n2", "s1", "n1")
    ]
    listed = body(client.get("/api/fleet/commands", query_string={"limit": 3}))
    assert [c["id"] for c in listed["commands"]] == ids[::-1][:3]
    rest = body(client.get("/api/fleet/commands", query_string={"after": listed["next"]}))
    assert [c["id"] for c in rest["commands"]] == [ids[0]] and rest["next"] is None
    of_n1 = body(client.get("/api/fleet/commands", query_string={"device": fleet["n1"]}))
    assert [c["id"] for c in of_n1["commands"]] == [ids[3], ids[0]]


def test_the_catalogue_lists_what_operators_may_send(client, callers, fleet) -> None:
    callers.as_technician(fleet["branches"]["north"])
    names = {
        c["name"]: c["roles"] for c in body(client.get("/api/fleet/commands/catalogue"))["commands"]
    }
    assert set(names) == {"reboot", "rescan", "collect_diagnostics", "rotate_key", "factory_reset"}
    assert names["factory_reset"] == ["operations"]
