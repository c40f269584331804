"""Claim tokens: single-use, short-lived permissions to enroll one device.

An operator (or a branch manager or technician, for their own branches) creates a claim
for a branch and a device kind, or a re-claim for an existing device record after a
factory reset. The token is 256 random bits, shown once (``bkc_`` + 43 base64url
characters, the prefix lets secret scanners spot a leaked one) and stored only as its
SHA-256. It expires after 24 hours unless the claim says otherwise (5 minutes to 7 days).

Redemption is one conditional ``UPDATE ... WHERE token_hash = ? AND redeemed_at IS NULL
AND cancelled_at IS NULL AND expires_at > now``: the database, not Python, decides who
wins. Two devices racing with the same token: PostgreSQL makes the second wait for the
first's row lock and then re-checks the condition (0 rows); SQLite serialises the writers.
The redemption commits with everything the enrollment made, or not at all, so a refused
CSR does not burn the token. Issuing a new re-claim for a device cancels its pending ones:
a device record has at most one way back in at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud import audit
from cloud.fleet.models import Device
from cloud.identity.errors import (
    ClaimExpired,
    ClaimUnknown,
    ClaimUsed,
    InvalidRequest,
)
from cloud.identity.models import ENROLLABLE_KINDS, ClaimToken, utc

TOKEN_PREFIX = "bkc_"
TOKEN_BYTES = 32  # 256 bits
TOKEN_LENGTH = len(TOKEN_PREFIX) + 43  # base64url of 32 bytes, unpadded
DEFAULT_TTL = dt.timedelta(hours=24)
MIN_TTL = dt.timedelta(minutes=5)
MAX_TTL = dt.timedelta(days=7)


def token_hash(token: str) -> str:
    """How a token is stored and looked up: SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh claim token (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def cancel_pending(session: Session, device_id: int, now: dt.datetime) -> None:
    """Cancel every pending re-claim of a device (a new one replaces them; a revoked
    device keeps none)."""
    session.execute(
        update(ClaimToken)
        .where(
            ClaimToken.device_id == device_id,
            ClaimToken.redeemed_at.is_(None),
            ClaimToken.cancelled_at.is_(None),
        )
        .values(cancelled_at=now)
        .execution_options(synchronize_session=False)
    )


def create_claim(
    session: Session,
    actor: str,
    branch_id: int,
    kind: str,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
    device: Device | None = None,
    note: str = "",
) -> tuple[ClaimToken, str]:
    """Add a claim (a re-claim when ``device`` is given); return it and its token.

    The token is returned here and never again: only its hash is kept.
    """
    if kind not in ENROLLABLE_KINDS:
        raise InvalidRequest(
            "device kind %r cannot enroll (enrollable: %s)" % (kind, ", ".join(ENROLLABLE_KINDS))
        )
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidRequest(
            "claim expiry must be between %d and %d seconds"
            % (MIN_TTL.total_seconds(), MAX_TTL.total_seconds())
        )
    if device is not None:
        cancel_pending(session, device.id, now)
    token = new_token()
    claim = ClaimToken(
        token_hash=token_hash(token),
        branch_id=branch_id,
        kind=kind,
        device_id=device.id if device is not None else None,
        note=note,
        created_by=actor,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(claim)
    session.flush()
    audit.record(
        session,
        actor,
        "claim.reclaim" if device is not None else "claim.create",
        "device:%s" % device.uid if device is not None else "branch:%d" % branch_id,
        claim_id=claim.id,
        branch_id=branch_id,
        kind=kind,
        expires_at=claim.expires_at.isoformat(),
        note=note,
    )
    return claim, token


def redeem(session: Session, token: str, now: dt.datetime) -> ClaimToken:
    """Mark the claim of ``token`` redeemed, atomically; raise why if it cannot be.

    Call it first in a transaction (SQLite takes its write lock here) and commit with the
    enrollment it pays for.
    """
    digest = token_hash(token)
    result = session.execute(
        update(ClaimToken)
        .where(
            ClaimToken.token_hash == digest,
            ClaimToken.redeemed_at.is_(None),
            ClaimToken.cancelled_at.is_(None),
            ClaimToken.expires_at > now,
        )
        .values(redeemed_at=now)
        .execution_options(synchronize_session=False)
    )
    claim = session.scalar(
        select(ClaimToken)
        .where(ClaimToken.token_hash == digest)
        .execution_options(populate_existing=True)
    )
    if getattr(result, "rowcount", 0) == 1 and claim is not None:
        return claim
    if claim is None:
        raise ClaimUnknown("claim token is not valid")
    if claim.cancelled_at is not None:
        raise ClaimUnknown("claim token was cancelled")
    if claim.redeemed_at is not None:
        raise ClaimUsed("claim token was already used")
    raise ClaimExpired("claim token expired at %s" % utc(claim.expires_at).isoformat())


def cancel_claim(session: Session, actor: str, claim: ClaimToken, now: dt.datetime) -> None:
    """Cancel a pending claim (a redeemed or cancelled one is left as it is)."""
    if claim.redeemed_at is not None or claim.cancelled_at is not None:
        raise InvalidRequest("claim %d is %s, not pending" % (claim.id, claim.status(now)))
    claim.cancelled_at = now
    audit.record(session, actor, "claim.cancel", "branch:%d" % claim.branch_id, claim_id=claim.id)
