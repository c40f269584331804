"""Identity records: claim tokens, issued certificates, gateways' envelope keys.

Nothing secret is stored in the clear: a claim token only as its SHA-256, an envelope key
only wrapped by the key-encryption key (``keys.KeyWrapper``), and certificates are public.
History is kept: a re-provisioned or revoked device keeps its old certificates and key
versions, marked revoked with the time and the reason.

Times are UTC. SQLite hands them back without a zone, PostgreSQL with one: read them
through ``utc()``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base

# Kinds of device that hold a certificate and an envelope key (beacons and wearables do
# not: they talk BLE to a gateway).
ENROLLABLE_KINDS = ("gateway", "kiosk")


def utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as an aware UTC datetime (SQLite returns naive UTC)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """The current time, aware, UTC."""
    return dt.datetime.now(dt.UTC)


class ClaimToken(Base):
    """A single-use permission to enroll one device of ``kind`` in ``branch_id``.

    ``device_id`` set: a re-claim, bound to that existing device record (re-provisioning
    after a factory reset); the enrolling device must present the same uid.
    """

    __tablename__ = "identity_claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256, hex
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    redeemed_device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    def status(self, now: dt.datetime) -> str:
        """``pending``, ``redeemed``, ``cancelled`` or ``expired`` at ``now``."""
        if self.redeemed_at is not None:
            return "redeemed"
        if self.cancelled_at is not None:
            return "cancelled"
        return "expired" if utc(self.expires_at) <= now else "pending"


class IssuedCertificate(Base):
    """A certificate the issuing CA signed: a device's, the broker's or the cloud's."""

    __tablename__ = "identity_certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), unique=True)  # hex, lower case
    subject: Mapped[str] = mapped_column(String(64))  # the CN: device uid, "cloud", host
    purpose: Mapped[str] = mapped_column(String(16))  # "device", "service", "server"
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    not_before: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    pem: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # An RFC 5280 reason as cryptography's x509.ReasonFlags value ("superseded", ...).
    revocation_reason: Mapped[str | None] = mapped_column(String(32))

    def status(self, now: dt.datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if utc(self.not_after) <= now else "active"


class EnvelopeKey(Base):
    """One version of a gateway's envelope secret (``bankiot_core.cose``), wrapped."""

    __tablename__ = "identity_envelope_keys"
    __table_args__ = (UniqueConstraint("device_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)  # nonce + AES-GCM(kek, secret)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
