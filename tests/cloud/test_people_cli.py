"""``bankiot cloud operator``: the first operations account, passwords never in argv."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import URL

from cloud.audit import AuditEvent
from cloud.cli import cloud
from cloud.db import Database
from cloud.fleet.models import Branch
from provisioning.cli import main
from tests.cloud.people_actions import PASSWORD
from tests.support.cloud import make_app


@pytest.fixture
def url(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database the commands use, through the environment as in production."""
    text = database_url.render_as_string(hide_password=False)
    monkeypatch.setenv("BANKIOT_DATABASE_URL", text)
    return text


def run(monkeypatch: pytest.MonkeyPatch, args: list[str], stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["cloud", "operator", *args])


def add_branch(url: str, code: str) -> None:
    db = Database(url)
    with db.sessions() as session:
        session.add(Branch(code=code, name=code))
        session.commit()
    db.dispose()


def test_the_first_operations_account(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = ["create", "Ops", "--role", "operations", "--password-stdin"]
    assert run(monkeypatch, args, PASSWORD + "\n") == 0
    assert capsys.readouterr().out == "operator ops created: operations (every branch)\n"
    app = make_app(url, tmp_path / "data")
    response = app.test_client().post("/api/auth/login", json={"name": "ops", "password": PASSWORD})
    assert response.status_code == 200
    db = app.extensions["bankiot.db"]
    with db.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "operator.create"))
        assert next(iter(event)).actor.startswith("cli:")
    db.dispose()


def test_branch_staff_and_listing(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert run(monkeypatch, ["list"]) == 0  # creates the schema on first use
    assert "no operators yet" in capsys.readouterr().out
    add_branch(url, "north")
    add_branch(url, "south")
    args = ["create", "tom", "--role", "technician", "--branch", "south", "--branch", "north"]
    assert run(monkeypatch, [*args, "--password-stdin"], PASSWORD + "\r\n") == 0
    capsys.readouterr()
    assert run(monkeypatch, ["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(o["name"], o["role"], o["branches"], o["active"]) for o in listed] == [
        ("tom", "technician", ["north", "south"], True)
    ]
    assert run(monkeypatch, ["list"]) == 0
    assert "tom" in capsys.readouterr().out.splitlines()[1]


BAD_INPUT = [
    (["--role", "operations"], "short\n", "at least 12"),
    (["--role", "technician"], "", "needs at least one --branch"),  # asked before the password
    (["--role", "operations", "--branch", "north"], "", "give no --branch"),
    (["--role", "technician", "--branch", "nowhere"], PASSWORD + "\n", "no such branch"),
    (["--role", "operations"], "", "no password line"),
    (["--role", "root"], PASSWORD + "\n", "Invalid value for '--role'"),
]


def test_bad_input_is_one_line(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for args, stdin, needle in BAD_INPUT:
        assert run(monkeypatch, ["create", "sam", *args, "--password-stdin"], stdin) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("Error:"), args
        assert needle in err, args


def test_no_password_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = ["create", "ops", "--role", "operations", "--password", PASSWORD]
    assert run(monkeypatch, args) == 2
    err = capsys.readouterr().err
    assert "No such option '--password'" in err and PASSWORD not in err


def test_prompted_password_and_reset(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    typed = "%s\n%s\n" % (PASSWORD, PASSWORD)
    result = runner.invoke(cloud, ["operator", "create", "ops", "--role", "operations"], typed)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    app = make_app(url, tmp_path / "data")
    client = app.test_client()
    login = {"name": "ops", "password": PASSWORD}
    assert client.post("/api/auth/login", json=login).status_code == 200
    assert client.get("/api/auth/session").status_code == 200
    new = "another long passphrase"
    result = runner.invoke(cloud, ["operator", "set-password", "ops"], "%s\n%s\n" % (new, new))
    assert result.exit_code == 0 and "revoked" in result.output
    assert client.get("/api/auth/session").status_code == 401  # the reset ended the session
    login = {"name": "ops", "password": new}
    assert app.test_client().post("/api/auth/login", json=login).status_code == 200
    missing = runner.invoke(cloud, ["operator", "set-password", "nobody"], "%s\n%s\n" % (new, new))
    assert missing.exit_code == 1 and "no operator 'nobody'" in missing.output
    app.extensions["bankiot.db"].dispose()
