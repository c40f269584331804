"""Random bearer secrets (session cookies, API tokens), their digests, and UTC times.

A secret is 256 random bits, URL-safe, with a short prefix naming its kind (``bks_`` for a
session, ``bkt_`` for an API token) so that a leaked one is recognisable by secret scanners.
Only its SHA-256 digest is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

SESSION_PREFIX = "bks_"
API_TOKEN_PREFIX = "bkt_"


def new_secret(prefix: str) -> str:
    """A fresh secret: ``prefix`` and 256 random bits."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """The stored form of ``secret``: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def utcnow() -> dt.datetime:
    """Now, in UTC, timezone-aware."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC time (SQLite hands back naive UTC times)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def is_live(expires_at: dt.datetime, revoked_at: dt.datetime | None) -> bool:
    """True for a credential that is neither revoked nor expired."""
    return revoked_at is None and as_utc(expires_at) > utcnow()
