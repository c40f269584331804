"""``bankiot fleet branches`` over real HTTP with a bearer token."""

from __future__ import annotations

import json

import pytest
from apiflask import APIFlask

from provisioning.cli import main
from tests.cloud.fleet_actions import add_branches
from tests.cloud.people_actions import add_operator, bearer, body, make_token, sign_in


@pytest.fixture
def tokens(cloud_app: APIFlask, served: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """API tokens of ``ops`` (cloud operations) and ``maria`` (branch manager of north);
    BANKIOT_URL set, BANKIOT_TOKEN set to ops's."""
    add_branches(cloud_app, "north")
    add_operator(cloud_app, "ops", "operations")
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    made = {name: make_token(sign_in(cloud_app, name)) for name in ("ops", "maria")}
    monkeypatch.setenv("BANKIOT_URL", served)
    monkeypatch.setenv("BANKIOT_TOKEN", made["ops"])
    return made


def bankiot(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_operations_add_a_branch_and_list_them(
    cloud_app: APIFlask, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = bankiot(capsys, "fleet", "branches", "create", "B-12", "Harbour Street")
    assert code == 0, err
    seen = body(cloud_app.test_client().get("/api/branches", headers=bearer(tokens["ops"])))
    made = {b["code"]: b for b in seen["branches"]}["B-12"]
    assert made["name"] == "Harbour Street"
    assert out == "branch B-12 (id %d): Harbour Street\n" % made["id"]

    code, out, err = bankiot(capsys, "fleet", "branches", "list", "--json")
    assert code == 0, err
    assert [(b["code"], b["name"]) for b in json.loads(out)] == [
        ("B-12", "Harbour Street"),
        ("north", "Branch north"),
    ]
    code, out, _ = bankiot(capsys, "fleet", "branches", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["id", "code", "name", "created"]
    assert lines[1].split()[:4] == [str(made["id"]), "B-12", "Harbour", "Street"]
    assert len(lines) == 3


def test_create_json_is_the_apis_answer(
    tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = bankiot(capsys, "fleet", "branches", "create", "south", "South", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert set(answer) == {"id", "code", "name", "created_at"}
    assert (answer["code"], answer["name"]) == ("south", "South")


def test_a_branch_manager_sees_only_their_branches_and_may_not_add_one(
    tokens: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bankiot(capsys, "fleet", "branches", "create", "south", "South")
    monkeypatch.setenv("BANKIOT_TOKEN", tokens["maria"])
    code, out, _ = bankiot(capsys, "fleet", "branches", "list", "--json")
    assert code == 0 and [b["code"] for b in json.loads(out)] == ["north"]
    code, out, err = bankiot(capsys, "fleet", "branches", "create", "east", "East")
    assert code == 1 and out == ""
    assert "POST /api/branches: HTTP 403" in err and len(err.strip().splitlines()) == 1


def test_refusals_are_one_line(
    tokens: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [
        (("create", "north", "Again"), "HTTP 409 branch north exists"),
        (("create", "B 12", "Harbour Street"), "HTTP 422"),
        (("create", "B-13", "line\nbreak"), "HTTP 422"),
    ]
    for argv, says in cases:
        code, out, err = bankiot(capsys, "fleet", "branches", *argv)
        assert code == 1 and out == "", argv
        assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
        assert says in err, err
    code, out, _ = bankiot(capsys, "fleet", "branches", "list", "--json")
    assert [b["code"] for b in json.loads(out)] == ["north"]  # nothing half-made
    monkeypatch.delenv("BANKIOT_TOKEN")
    code, _, err = bankiot(capsys, "fleet", "branches", "list")
    assert code == 1 and "no API token: set BANKIOT_TOKEN" in err
