"""API tokens for API clients: ``Authorization: Bearer bkt_...``.

An operator makes a token for themselves (from a signed-in session, ``POST /api/tokens``),
or whoever runs the cloud makes one for an operator (``bankiot cloud token create``, on the
database itself); both go through ``issue_token``. The secret is shown once and stored as a
digest, with an expiry (at most ``MAX_DAYS``) and revocation. A token acts with its
operator's current role and branches, so changing or disabling the operator changes or
stops the token at once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud.audit import record
from cloud.people.credentials import API_TOKEN_PREFIX, as_utc, digest, is_live, new_secret, utcnow
from cloud.people.models import ApiToken, Operator

DEFAULT_DAYS = 90
MAX_DAYS = 365
PREFIX_LENGTH = len(API_TOKEN_PREFIX) + 6


def create_token(db: Session, operator: Operator, name: str, days: int) -> tuple[str, ApiToken]:
    """A new token for ``operator`` valid ``days`` days: the secret (show once) and the row."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError("a token lives 1 to %d days, not %d" % (MAX_DAYS, days))
    secret = new_secret(API_TOKEN_PREFIX)
    row = ApiToken(
        operator_id=operator.id,
        name=name,
        prefix=secret[:PREFIX_LENGTH],
        token_hash=digest(secret),
        expires_at=utcnow() + dt.timedelta(days=days),
    )
    db.add(row)
    return secret, row


def issue_token(
    db: Session, actor: str, operator: Operator, name: str, days: int
) -> tuple[str, ApiToken]:
    """``create_token``, flushed (the row has its id) and audited as ``token.create`` by
    ``actor``, in ``db``'s transaction (the caller commits): the secret and the row. The
    audit event names the token's prefix, never the secret."""
    secret, row = create_token(db, operator, name, days)
    db.flush()
    record(
        db,
        actor,
        "token.create",
        "token:%d" % row.id,
        name=row.name,
        prefix=row.prefix,
        expires_at=as_utc(row.expires_at).isoformat(),
    )
    return secret, row


def find_token(db: Session, secret: str) -> ApiToken | None:
    """The live token for ``secret`` of an active operator, else None."""
    if not secret.startswith(API_TOKEN_PREFIX):
        return None
    row = db.scalars(select(ApiToken).where(ApiToken.token_hash == digest(secret))).first()
    if row is None or not is_live(row.expires_at, row.revoked_at) or not row.operator.active:
        return None
    return row


def bearer_secret(header: str) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header value, else None."""
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def revoke_tokens(db: Session, operator_id: int) -> None:
    """Revoke every live token of an operator."""
    db.execute(
        update(ApiToken)
        .where(ApiToken.operator_id == operator_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def token_status(row: ApiToken) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if row.revoked_at is not None:
        return "revoked"
    return "active" if is_live(row.expires_at, None) else "expired"
