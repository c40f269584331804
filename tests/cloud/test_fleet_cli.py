"""``bankiot fleet devices``: the inventory over real HTTP with a bearer token."""

from __future__ import annotations

import json

import pytest
from apiflask import APIFlask
from click.testing import CliRunner

from cloud.fleet import client as fleet_client
from cloud.fleet.cli import fleet
from tests.cloud.fleet_actions import add_branches, add_devices, add_health
from tests.cloud.people_actions import add_operator, make_token, sign_in


@pytest.fixture
def fleet_ids(cloud_app: APIFlask) -> dict[str, int]:
    ids = add_branches(cloud_app, "north", "south")
    add_devices(
        cloud_app,
        *({"uid": "gw-n%d" % n, "branch_id": ids["north"]} for n in range(7)),
        {"uid": "kiosk-n", "branch_id": ids["north"], "kind": "kiosk"},
        {"uid": "gw-s1", "branch_id": ids["south"]},
    )
    add_health(cloud_app, "gw-n0", {"depth": 42})
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    return ids


def run(url: str, token: str | None, *args: str) -> tuple[int, str]:
    env = {"BANKIOT_URL": url, "BANKIOT_TOKEN": token}
    result = CliRunner().invoke(fleet, ["devices", *args], env=env)
    return result.exit_code, result.output


def test_devices_as_json_follow_every_page(served, cloud_app, fleet_ids, monkeypatch) -> None:
    monkeypatch.setattr(fleet_client, "PAGE", 3)  # several pages from a small fleet
    token = make_token(sign_in(cloud_app, "maria"))
    code, output = run(served, token, "--json")
    assert code == 0, output
    devices = json.loads(output)
    assert [d["uid"] for d in devices] == ["gw-n%d" % n for n in range(7)] + ["kiosk-n"]
    assert devices[0]["health"]["queue_depth"] == 42


def test_devices_table_with_filters(served, cloud_app, fleet_ids) -> None:
    token = make_token(sign_in(cloud_app, "maria"))
    code, output = run(served, token, "--kind", "kiosk", "--branch", str(fleet_ids["north"]))
    assert code == 0, output
    header, row = output.splitlines()
    assert header.split()[:3] == ["id", "uid", "kind"]
    assert row.split()[1:5] == ["kiosk-n", "kiosk", "north", "registered"]
    code, output = run(served, token, "--branch", str(fleet_ids["south"]))
    assert (code, output) == (0, "no devices\n")


def test_errors_are_one_line(served, cloud_app, fleet_ids) -> None:
    code, output = run(served, None)
    assert code == 1 and output.startswith("Error: no API token: set BANKIOT_TOKEN")
    code, output = run(served, "bkt_not-a-token")
    assert code == 1 and output.startswith("Error: GET /api/fleet/devices: HTTP 401")
    assert output.count("\n") == 1
    code, output = run("ftp://example.org", "x")
    assert code == 1 and "is not an http(s) URL" in output
    code, output = run("http://127.0.0.1:1", "x")  # nothing listens on port 1
    assert code == 1 and output.startswith("Error: cannot reach http://127.0.0.1:1")
