"""The authenticator registered with ``cloud.access``: who is calling this request.

Order: an ``Authorization`` header decides alone (a Bearer API token, or nobody); otherwise
the session cookie. A cookie-authenticated request that changes state (any method but GET,
HEAD, OPTIONS, TRACE) must carry the session's CSRF token, or it is refused with 403. API
tokens need no CSRF token: a browser never attaches them by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from apiflask import abort
from flask import g, request

from cloud.access import ROLES, Principal, require
from cloud.db import session
from cloud.people.models import Operator
from cloud.people.operators import principal_for
from cloud.people.sessions import COOKIE_NAME, SAFE_METHODS, csrf_ok, csrf_token, find_session
from cloud.people.tokens import bearer_secret, find_token

# View decorator: any signed-in operator (not a device); 401 otherwise.
operator_required = require(*ROLES)


@dataclass(frozen=True)
class Credential:
    """How the current request was authenticated."""

    method: str  # "session" or "token"
    operator_id: int
    credential_id: int  # OperatorSession.id or ApiToken.id
    csrf_token: str | None  # for sessions only


def authenticate() -> Principal | None:
    """The Principal of the current request, or None; aborts 403 on a missing CSRF token."""
    header = request.headers.get("Authorization")
    db = session()
    if header is not None:
        secret = bearer_secret(header)
        token = find_token(db, secret) if secret else None
        if token is None:
            return None
        g.people_credential = Credential("token", token.operator_id, token.id, None)
        return principal_for(token.operator)
    secret = request.cookies.get(COOKIE_NAME)
    row = find_session(db, secret) if secret else None
    if row is None or secret is None:
        return None
    if request.method not in SAFE_METHODS and not csrf_ok(secret):
        abort(403, "CSRF token missing or wrong: send the X-CSRF-Token header of this session")
    g.people_credential = Credential("session", row.operator_id, row.id, csrf_token(secret))
    return principal_for(row.operator)


def current_credential() -> Credential:
    """The credential of the authenticated caller (call after ``current_principal()``)."""
    return g.people_credential


def current_operator() -> Operator:
    """The signed-in operator's row (call after ``current_principal()``)."""
    operator = session().get(Operator, current_credential().operator_id)
    assert operator is not None  # the authenticator just found it
    return operator


def require_session(doing: str) -> Credential:
    """The caller's session credential; 403 for an API token: ``doing`` needs a password."""
    credential = current_credential()
    if credential.method != "session":
        abort(403, "%s from a signed-in session, not with an API token" % doing)
    return credential
