"""Sign-in sessions for pages: server-side rows, a secure cookie, and CSRF tokens.

The cookie ``bankiot_session`` carries a random secret; the table keeps its digest, so
signing out (or an operations colleague disabling the account) ends the session at once.
Cookie flags: HttpOnly; SameSite from ``SESSION_COOKIE_SAMESITE`` (Lax by default); Secure
unless the app is TESTING or the request came over plain HTTP to a loopback address (the
development server), overridable with ``OPERATOR_COOKIE_SECURE``. Sessions last
``OPERATOR_SESSION_HOURS`` (8, a working day) from sign-in.

CSRF: a state-changing request authenticated by the cookie must carry the session's CSRF
token in the ``X-CSRF-Token`` header or a ``csrf_token`` form field. The token is an HMAC of
the session secret under the app's secret key: bound to the session, nothing to store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from flask import Response, current_app, request
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from cloud.people.credentials import SESSION_PREFIX, digest, is_live, new_secret, utcnow
from cloud.people.models import Operator, OperatorSession

COOKIE_NAME = "bankiot_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))


def session_hours() -> int:
    return int(current_app.config.get("OPERATOR_SESSION_HOURS", 8))


def start_session(db: Session, operator: Operator) -> tuple[str, OperatorSession]:
    """A new session for ``operator``: the secret for the cookie, and the row (added).

    The operator's ended sessions (expired or revoked) are deleted on the way.
    """
    now = utcnow()
    db.execute(
        delete(OperatorSession).where(
            OperatorSession.operator_id == operator.id,
            or_(OperatorSession.expires_at <= now, OperatorSession.revoked_at.is_not(None)),
        )
    )
    secret = new_secret(SESSION_PREFIX)
    row = OperatorSession(
        operator_id=operator.id,
        token_hash=digest(secret),
        expires_at=now + dt.timedelta(hours=session_hours()),
    )
    db.add(row)
    return secret, row


def find_session(db: Session, secret: str) -> OperatorSession | None:
    """The live session for a cookie ``secret`` of an active operator, else None."""
    row = db.scalars(
        select(OperatorSession).where(OperatorSession.token_hash == digest(secret))
    ).first()
    if row is None or not is_live(row.expires_at, row.revoked_at) or not row.operator.active:
        return None
    return row


def revoke_sessions(db: Session, operator_id: int, keep: int | None = None) -> None:
    """End every live session of an operator (except the one with id ``keep``)."""
    query = update(OperatorSession).where(
        OperatorSession.operator_id == operator_id, OperatorSession.revoked_at.is_(None)
    )
    if keep is not None:
        query = query.where(OperatorSession.id != keep)
    db.execute(query.values(revoked_at=utcnow()))


def csrf_token(secret: str) -> str:
    """The CSRF token of the session whose cookie secret is ``secret``."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, b"csrf:" + secret.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: str) -> bool:
    """True when the current request carries the right CSRF token for session ``secret``."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sent = request.form.get(CSRF_FIELD)
    return sent is not None and hmac.compare_digest(sent.encode(), csrf_token(secret).encode())


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine: where plain http is allowed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_secure() -> bool:
    """Whether the session cookie gets the Secure flag for the current request."""
    configured = current_app.config.get("OPERATOR_COOKIE_SECURE")
    if isinstance(configured, str):  # from a file or the environment: true, false, auto
        configured = {"true": True, "1": True, "false": False, "0": False}.get(configured.lower())
    if configured is not None:
        return bool(configured)
    if current_app.testing:
        return False
    return request.is_secure or not is_loopback_host(urlsplit(request.host_url).hostname or "")


def set_cookie(response: Response, secret: str, expires_at: dt.datetime) -> None:
    """Put the session cookie on ``response``."""
    response.set_cookie(
        COOKIE_NAME,
        secret,
        max_age=session_hours() * 3600,
        expires=expires_at,
        path="/",
        secure=cookie_secure(),
        httponly=True,
        samesite=current_app.config.get("SESSION_COOKIE_SAMESITE") or "Lax",
    )


def clear_cookie(response: Response) -> None:
    """Tell the browser to drop the session cookie."""
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        secure=cookie_secure(),
        httponly=True,
        samesite=current_app.config.get("SESSION_COOKIE_SAMESITE") or "Lax",
    )
