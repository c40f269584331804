"""Sign in and out, who am I, change my password: ``/api/auth/*``.

Failed sign-ins are audited without the password, and with the name only when it is an
operator's (people type passwords into the name field). A wrong name costs the same work as
a wrong password, and both get the same answer.
"""

from __future__ import annotations

import datetime as dt

from apiflask import APIBlueprint, abort
from flask import Response, after_this_request, request
from sqlalchemy import select

from cloud.access import current_principal
from cloud.audit import record
from cloud.db import session
from cloud.fleet.models import Branch
from cloud.people.authenticate import (
    Credential,
    current_credential,
    current_operator,
    operator_required,
    require_session,
)
from cloud.people.credentials import as_utc
from cloud.people.models import ApiToken, Operator, OperatorSession
from cloud.people.openapi import SECURITY, signed_in
from cloud.people.operators import find_operator, principal_for, set_password
from cloud.people.passwords import (
    PasswordPolicyError,
    burn_verification,
    hash_password,
    needs_rehash,
    verify_password,
)
from cloud.people.schemas import LoginIn, PasswordChangeIn, WhoAmIOut
from cloud.people.sessions import (
    COOKIE_NAME,
    clear_cookie,
    csrf_token,
    find_session,
    set_cookie,
    start_session,
)

bp = APIBlueprint("signin", __name__, tag="Sign-in")

WRONG = "wrong name or password"


def whoami(operator: Operator, credential: Credential, expires_at: dt.datetime | None) -> dict:
    """The WhoAmIOut body for ``operator`` authenticated by ``credential``."""
    principal = principal_for(operator)
    codes = []
    if principal.branch_ids is not None:
        query = select(Branch.code).where(Branch.id.in_(principal.branch_ids))
        codes = sorted(session().scalars(query))
    return {
        "name": principal.name,
        "role": principal.role,
        "branches": codes,
        "all_branches": principal.branch_ids is None,
        "method": credential.method,
        "csrf_token": credential.csrf_token,
        "expires_at": as_utc(expires_at) if expires_at is not None else None,
    }


def _refuse(reason: str, operator: Operator | None) -> None:
    db = session()
    target = "operator:%s" % operator.name if operator is not None else ""
    record(db, "anonymous", "login.failure", target, reason=reason, address=_address())
    db.commit()


def _address() -> str:
    return (request.remote_addr or "")[:64]


@bp.post("/api/auth/login")
@bp.input(LoginIn, arg_name="body")
@bp.output(WhoAmIOut)
@bp.doc(
    summary="Sign in with name and password; sets the session cookie",
    responses={401: "Wrong name or password", 429: "Too many failed sign-ins; retry later"},
)
def login(body: dict) -> dict:
    signed = password_sign_in(body["name"], body["password"])
    if signed is None:
        abort(401, WRONG)
    operator, secret, row = signed

    @after_this_request
    def give_cookie(response: Response) -> Response:
        set_cookie(response, secret, row.expires_at)
        return response

    credential = Credential("session", operator.id, row.id, csrf_token(secret))
    return whoami(operator, credential, row.expires_at)


def password_sign_in(name: str, password: str) -> tuple[Operator, str, OperatorSession] | None:
    """Sign an operator in with ``name`` and ``password`` (committed, audited either way):
    the operator, the new session's cookie secret and its row; None when refused (wrong
    name, wrong password or a disabled account: the caller answers ``WRONG`` for all).
    This browser's previous session ends (no session fixation). The caller sets the cookie
    (``sessions.set_cookie``); the login API and the dashboards' sign-in page share this."""
    db = session()
    operator = find_operator(db, name)
    if operator is None:
        burn_verification(password)
        _refuse("unknown name", None)
        return None
    if not verify_password(operator.password_hash, password):
        _refuse("wrong password", operator)
        return None
    if not operator.active:
        _refuse("disabled", operator)
        return None
    if needs_rehash(operator.password_hash):
        operator.password_hash = hash_password(password)
    previous = request.cookies.get(COOKIE_NAME)
    old = find_session(db, previous) if previous else None
    if old is not None:  # a new sign-in gets a new session: no session fixation
        db.delete(old)
    secret, row = start_session(db, operator)
    actor = "operator:%s" % operator.name
    record(db, actor, "login.success", actor, address=_address())
    db.commit()
    return operator, secret, row


@bp.post("/api/auth/logout")
@operator_required
@bp.output({}, status_code=204)
@bp.doc(summary="Sign out: end this session", security=SECURITY, responses=signed_in(400))
def logout() -> tuple[str, int]:
    if current_credential().method != "session":
        abort(400, "API tokens do not sign out: revoke them with DELETE /api/tokens/<id>")
    sign_out()

    @after_this_request
    def drop_cookie(response: Response) -> Response:
        clear_cookie(response)
        return response

    return "", 204


def sign_out() -> None:
    """End the caller's session (signed in with a session cookie), audited and committed.
    The caller drops the cookie (``sessions.clear_cookie``)."""
    principal = current_principal()
    db = session()
    row = db.get(OperatorSession, current_credential().credential_id)
    if row is not None:
        db.delete(row)
    record(db, principal.actor, "logout", "operator:%s" % principal.name)
    db.commit()


@bp.get("/api/auth/session")
@operator_required
@bp.output(WhoAmIOut)
@bp.doc(
    summary="Who is signed in, with which role and branches",
    security=SECURITY,
    responses=signed_in(),
)
def current_session() -> dict:
    credential = current_credential()
    model = OperatorSession if credential.method == "session" else ApiToken
    row = session().get(model, credential.credential_id)
    return whoami(current_operator(), credential, row.expires_at if row is not None else None)


@bp.post("/api/auth/password")
@operator_required
@bp.input(PasswordChangeIn, arg_name="body")
@bp.output({}, status_code=204)
@bp.doc(
    summary="Change my password (signed in with a password); ends my other sessions",
    security=SECURITY,
    responses=signed_in(429),
)
def change_password(body: dict) -> tuple[str, int]:
    principal = current_principal()
    credential = require_session("change a password")
    db = session()
    operator = current_operator()
    if not verify_password(operator.password_hash, body["current_password"]):
        record(db, principal.actor, "operator.password_failure", "operator:%s" % operator.name)
        db.commit()
        abort(403, "the current password is wrong")
    try:
        set_password(db, principal.actor, operator, body["new_password"], credential.credential_id)
    except PasswordPolicyError as exc:
        abort(422, str(exc), detail={"json": {"new_password": [str(exc)]}})
    db.commit()
    return "", 204
