"""``bankiot fleet config`` and ``bankiot fleet command`` over real HTTP with a bearer token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apiflask import APIFlask

from provisioning.cli import main
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.people_actions import add_operator, make_token, sign_in


@pytest.fixture
def fleet_env(cloud_app: APIFlask, served: str, monkeypatch) -> dict[str, int]:
    ids = add_branches(cloud_app, "north", "south")
    n1, n2, s1 = add_devices(
        cloud_app,
        {"uid": "gw-n1", "branch_id": ids["north"], "status": "active"},
        {"uid": "gw-n2", "branch_id": ids["north"], "status": "active"},
        {"uid": "gw-s1", "branch_id": ids["south"], "status": "active"},
    )
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    monkeypatch.setenv("BANKIOT_URL", served)
    monkeypatch.setenv("BANKIOT_TOKEN", make_token(sign_in(cloud_app, "maria")))
    return {"north": ids["north"], "south": ids["south"], "n1": n1, "n2": n2, "s1": s1}


def bankiot(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_set_a_branch_configuration_from_a_file_then_show_it(
    fleet_env, tmp_path: Path, capsys
) -> None:
    settings = tmp_path / "north.json"
    settings.write_text(json.dumps({"rate_per_min": 30, "presence": False}))
    code, out, err = bankiot(
        capsys, "fleet", "config", "set", str(settings), "--branch", str(fleet_env["north"])
    )
    assert code == 0, err
    assert out.splitlines() == [
        "device %d: revision 1" % fleet_env["n1"],
        "device %d: revision 1" % fleet_env["n2"],
    ]
    code, out, _ = bankiot(capsys, "fleet", "config", "show", str(fleet_env["n2"]), "--json")
    shown = json.loads(out)
    assert shown["settings"] == {"rate_per_min": 30, "presence": False}
    assert (shown["revision"], shown["in_sync"]) == (1, False)


def test_refusals_are_one_line(fleet_env, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rate_per_min": "fast"}))
    cases = [
        (("config", "set", str(bad), "--device", str(fleet_env["n1"])), "'rate_per_min'"),
        (("config", "set", str(tmp_path / "none.json"), "--branch", "1"), "cannot read"),
        (("config", "show", str(fleet_env["s1"])), "HTTP 404"),
        (("command", "send", "reboot"), "give --device"),
        (("command", "send", "factory_reset", "--device", str(fleet_env["n1"])), "HTTP 403"),
    ]
    for argv, says in cases:
        code, out, err = bankiot(capsys, "fleet", *argv)
        assert code != 0 and out == ""
        assert says in err and len(err.strip().splitlines()) == 1, err


def test_send_list_and_cancel_commands(fleet_env, capsys) -> None:
    code, out, err = bankiot(
        capsys, "fleet", "command", "send", "rescan", "--branch", str(fleet_env["north"]), "--json"
    )
    assert code == 0, err
    group = json.loads(out)
    assert sorted(c["device_id"] for c in group["commands"]) == [fleet_env["n1"], fleet_env["n2"]]
    first = group["commands"][0]["id"]
    code, out, _ = bankiot(capsys, "fleet", "command", "cancel", str(first))
    assert out.strip() == "command %d: cancelled" % first
    code, out, _ = bankiot(capsys, "fleet", "command", "list", "--status", "pending", "--json")
    assert [c["id"] for c in json.loads(out)] == [group["commands"][1]["id"]]
    code, out, _ = bankiot(capsys, "fleet", "command", "list")
    assert out.splitlines()[0].split() == ["id", "device", "name", "status", "sent", "detail"]
    assert len(out.splitlines()) == 3


def test_claims_are_made_listed_without_their_token_and_cancelled(fleet_env, capsys) -> None:
    north = str(fleet_env["north"])
    code, out, err = bankiot(capsys, "fleet", "claims", "create", "--branch", north, "--json")
    assert code == 0, err
    claim = json.loads(out)
    assert claim["token"].startswith("bkc_") and claim["status"] == "pending"
    code, out, _ = bankiot(capsys, "fleet", "claims", "list", "--json")
    listed = json.loads(out)
    assert [c["id"] for c in listed] == [claim["id"]] and "token" not in listed[0]
    code, out, _ = bankiot(capsys, "fleet", "claims", "cancel", str(claim["id"]))
    assert out.strip() == "claim %d cancelled" % claim["id"]
    code, out, _ = bankiot(capsys, "fleet", "claims", "list", "--status", "cancelled")
    assert out.splitlines()[1].split()[:5] == [str(claim["id"]), north, "gateway", "-", "cancelled"]
    code, out, err = bankiot(capsys, "fleet", "claims", "create")
    assert code != 0 and "give --branch" in err
    code, _, err = bankiot(capsys, "fleet", "claims", "create", "--branch", str(fleet_env["south"]))
    assert code != 0 and "HTTP 404" in err


def test_show_one_device_with_its_configuration_and_commands(fleet_env, capsys) -> None:
    device = str(fleet_env["n1"])
    bankiot(capsys, "fleet", "command", "send", "reboot", "--device", device)
    code, out, err = bankiot(capsys, "fleet", "show", device)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(
        "gateway gw-n1 (id %s) in branch %d: active" % (device, fleet_env["north"])
    )
    assert lines[1] == "configuration: desired revision None, reported None"
    assert lines[2].endswith(": reboot pending")
    code, out, _ = bankiot(capsys, "fleet", "show", device, "--json")
    shown = json.loads(out)
    assert set(shown) == {"device", "config", "commands", "alerts"}
    code, _, err = bankiot(capsys, "fleet", "show", str(fleet_env["s1"]))
    assert code != 0 and "HTTP 404" in err
