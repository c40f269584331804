"""``bankiot fleet beacons`` and ``bankiot fleet merchants`` over real HTTP with a bearer
token, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from apiflask import APIFlask

from provisioning.cli import main
from tests.cloud.fleet_actions import add_branches
from tests.cloud.people_actions import add_operator, make_token, sign_in

UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


@pytest.fixture
def fleet_env(cloud_app: APIFlask, served: str, monkeypatch) -> dict[str, str]:
    ids = add_branches(cloud_app, "north", "south")
    add_operator(cloud_app, "olga", "operations")
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    monkeypatch.setenv("BANKIOT_URL", served)
    return {
        "north": str(ids["north"]),
        "south": str(ids["south"]),
        "olga": make_token(sign_in(cloud_app, "olga")),
        "maria": make_token(sign_in(cloud_app, "maria")),
    }


def bankiot(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["fleet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_operations_and_a_branch_manager_register_beacons(fleet_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BANKIOT_TOKEN", fleet_env["olga"])
    code, out, err = bankiot(capsys, "merchants", "add", "Café Nord", "--category", "5814")
    assert (code, out) == (0, "merchant 1: Café Nord (5814)\n"), err
    code, out, err = bankiot(
        capsys,
        "beacons",
        "add",
        "--merchant",
        "1",
        "--eddystone",
        "edd1ebeac04e5defa017",
        "0badc0ffee01",
    )
    assert code == 0, err
    assert (
        out == "beacon 1: eddystone:edd1ebeac04e5defa017:0badc0ffee01 at merchant 1 (Café Nord)\n"
    )

    monkeypatch.setenv("BANKIOT_TOKEN", fleet_env["maria"])
    argv = ("beacons", "add", "--branch", fleet_env["north"], "--ibeacon", UUID, "7", "1")
    code, out, err = bankiot(capsys, *argv, "--address", "c3:00:00:0a:1b:2c", "--label", "door")
    assert code == 0, err
    assert out == (
        "beacon 2: ibeacon:%s:7:1 at branch %s (Branch north), its gateways listen for "
        "C3:00:00:0A:1B:2C\n" % (UUID, fleet_env["north"])
    )
    code, out, _ = bankiot(capsys, "beacons", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["id", "kind", "identifier", "address", "place", "label"]
    assert len(lines) == 2 and lines[1].split()[:4] == [
        "2",
        "ibeacon",
        "ibeacon:%s:7:1" % UUID,
        "C3:00:00:0A:1B:2C",
    ]
    code, out, _ = bankiot(capsys, "beacons", "list", "--json")
    assert [b["label"] for b in json.loads(out)] == ["door"]

    refusals = [
        (argv, "HTTP 409"),
        (("beacons", "add", "--branch", fleet_env["south"], "--ibeacon", UUID, "7", "9"), "404"),
        (
            ("beacons", "add", "--branch", fleet_env["north"], "--ibeacon", UUID, "x", "1"),
            "numbers",
        ),
        (("beacons", "add", "--ibeacon", UUID, "7", "9"), "give --branch or --merchant"),
        (("beacons", "remove", "1"), "HTTP 404"),
        (("merchants", "add", "Shop", "--category", "5411"), "HTTP 403"),
    ]
    for given, says in refusals:
        code, out, err = bankiot(capsys, *given)
        assert code != 0 and out == ""
        assert says in err and len(err.strip().splitlines()) == 1, err

    code, out, err = bankiot(capsys, "beacons", "remove", "2")
    assert (code, out) == (0, "beacon 2 removed\n"), err
    code, out, _ = bankiot(capsys, "beacons", "list")
    assert out == "no beacons\n"
