"""What ``bankiot cloud operator ...`` and ``bankiot cloud token ...`` do; ``cloud/cli.py``
holds only the click wiring.

Passwords come from a hidden prompt (typed twice) or, for scripts, one line of standard
input (``--password-stdin``); never from the command line, where ``ps`` and shell history
would keep them. An API token made here is the API's (``tokens.issue_token``, checked by
the API's own schema), printed once and stored as a digest. Changes are audited as
``cli:<os user>``.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.db import Database
from cloud.people.credentials import as_utc
from cloud.people.models import Operator
from cloud.people.operators import OperatorError, create_operator, find_operator, set_password
from cloud.people.passwords import PasswordPolicyError
from cloud.people.tokens import issue_token

# The token options of ``bankiot cloud token create`` by the API's field names (errors).
TOKEN_OPTIONS = {"name": "--name", "expires_in_days": "--days"}


def read_password(from_stdin: bool) -> str:
    """The new password: one line of standard input, or a hidden prompt typed twice."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("--password-stdin: standard input had no password line")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def check_assignment(role: str, branches: Iterable[str]) -> None:
    """Refuse a role and branch combination before asking for a password."""
    if role == "operations" and branches:
        raise click.ClickException("operations see every branch: give no --branch")
    if role != "operations" and not branches:
        raise click.ClickException("a %s needs at least one --branch CODE" % role)


def actor() -> str:
    """How the audit log names the person at this terminal."""
    try:
        return "cli:%s" % getpass.getuser()
    except (KeyError, OSError):
        return "cli:unknown"


@contextmanager
def database(config: dict[str, Any]) -> Iterator[Session]:
    """A session on the configured database, brought up to date first."""
    from cloud.migrations import upgrade

    url = config["DATABASE_URL"]
    try:
        upgrade(url)
    except Exception as exc:  # a driver's error: say it in one line
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException("database unavailable: %s" % message) from None
    db = Database(url)
    try:
        with db.sessions() as session:
            yield session
    finally:
        db.dispose()


def create(
    config: dict[str, Any], name: str, role: str, branches: Iterable[str], password: str
) -> str:
    """Create an operator; returns the line to print."""
    with database(config) as db:
        try:
            operator = create_operator(db, actor(), name, role, branches, password)
        except (OperatorError, PasswordPolicyError) as exc:
            raise click.ClickException(str(exc)) from None
        db.commit()
        where = ", ".join(b.code for b in operator.branches) or "every branch"
        return "operator %s created: %s (%s)" % (operator.name, operator.role, where)


def change_password(config: dict[str, Any], name: str, password: str) -> str:
    """Set an operator's password (ends their sessions, revokes their tokens)."""
    with database(config) as db:
        operator = find_operator(db, name)
        if operator is None:
            raise click.ClickException("no operator %r" % name)
        try:
            set_password(db, actor(), operator, password)
        except PasswordPolicyError as exc:
            raise click.ClickException(str(exc)) from None
        db.commit()
        return "password of %s set; their sessions and API tokens are revoked" % operator.name


def listing(config: dict[str, Any], as_json: bool) -> str:
    """Every operator, as a table or as JSON."""
    with database(config) as db:
        operators = list(db.scalars(select(Operator).order_by(Operator.name)))
        rows = [
            {
                "name": o.name,
                "role": o.role,
                "branches": [b.code for b in o.branches],
                "active": o.active,
                "created_at": as_utc(o.created_at).isoformat(),
            }
            for o in operators
        ]
    if as_json:
        return json.dumps(rows, indent=2)
    if not rows:
        return "no operators yet: bankiot cloud operator create NAME --role operations"
    lines = ["%-24s %-15s %-8s %s" % ("NAME", "ROLE", "ACTIVE", "BRANCHES")]
    for row in rows:
        branches = ", ".join(row["branches"]) or "(all)"
        active = "yes" if row["active"] else "no"
        lines.append("%-24s %-15s %-8s %s" % (row["name"], row["role"], active, branches))
    return "\n".join(lines)


def create_api_token(
    config: dict[str, Any], operator_name: str, token_name: str, days: int | None
) -> list[str]:
    """Make an API token for the operator ``operator_name``, as ``POST /api/tokens`` makes
    one for the signed-in operator (its schema checks the name and the days, None: its
    default); the lines to print, the secret in the last one."""
    from marshmallow import ValidationError

    from cloud.people.schemas import TokenIn

    wanted: dict[str, Any] = {"name": token_name}
    if days is not None:
        wanted["expires_in_days"] = days
    try:
        body = TokenIn().load(wanted)
    except ValidationError as exc:
        errors = exc.messages if isinstance(exc.messages, dict) else {"": exc.messages}
        field, messages = sorted(errors.items())[0]
        reason = " ".join(messages) if isinstance(messages, list) else str(messages)
        raise click.ClickException("%s: %s" % (TOKEN_OPTIONS.get(field, field), reason)) from None
    assert isinstance(body, dict)  # a schema loading one mapping gives one
    with database(config) as db:
        operator = find_operator(db, operator_name)
        if operator is None:
            raise click.ClickException("no operator %r" % operator_name)
        if not operator.active:  # its token would be refused at every request
            raise click.ClickException("operator %s is disabled" % operator.name)
        secret, row = issue_token(db, actor(), operator, body["name"], body["expires_in_days"])
        db.commit()
        return [
            "token %d (%s) of %s, %s, expires %s"
            % (
                row.id,
                row.name,
                operator.name,
                operator.role,
                as_utc(row.expires_at).date().isoformat(),
            ),
            "token (shown once): %s" % secret,
        ]
