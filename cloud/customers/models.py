"""Customers, their sessions and wearables, pairing offers from kiosks, and consent history.

- ``customers``: an account of a bank customer (email and Argon2id password hash), not
  staff: customers never hold a role of ``cloud.access.ROLES``.
- ``customer_sessions``: signed-in browsers; the cookie holds a random secret, the table
  its SHA-256 digest (as ``cloud.people`` does for operators).
- ``pairing_offers``: a pairing code a kiosk showed (``batch.KIOSK_PAIRING``), kept as the
  SHA-256 of the code (never the code), with the kiosk's device and branch, for
  ``codes.OFFER_LIFETIME`` after it was shown, used at most once (``used_at``, and which
  customer used it). UNIQUE on (gateway, event id) like ``kiosk_events``.
- ``customer_wearables``: a wearable paired to a customer; UNIQUE on the address: one
  customer per wearable. Its IRK and bind key are kept sealed (``pairing`` explains the key)
  so that a consent given again can bind it again after all were withdrawn.
- ``customer_consents``: append-only history, one row per grant or withdrawal of a purpose
  (``consent.PURPOSES``), with the text version the customer saw and the channel; the
  newest row of a purpose is the customer's current answer.
- ``customer_erasures``: one receipt per account erased (``erasure``): when, how many
  wearables, how many rows of each kind were deleted, how many branches' gateway sets
  changed; nothing that identifies the customer or a wearable (GDPR Art 5(2): the bank can
  show that it erased, without keeping what it erased).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bankiot_core.cose import MAX_GATEWAY_ID_LEN as GATEWAY_LEN
from cloud.db import Base, BigId

EMAIL_LEN = 254  # RFC 5321's longest path, less the angle brackets
ADDRESS_LEN = 17  # "AA:BB:CC:DD:EE:FF"


class Customer(Base):
    """A bank customer's account for the customer pages."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_LEN), unique=True)  # lower case
    password_hash: Mapped[str] = mapped_column(String(255))  # Argon2id, PHC string
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CustomerSession(Base):
    """A signed-in customer's browser; the cookie holds the secret, the table its digest."""

    __tablename__ = "customer_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    customer: Mapped[Customer] = relationship()


class PairingOffer(Base):
    """A pairing code a kiosk showed: usable once, until ``expires_at`` (module docstring)."""

    __tablename__ = "pairing_offers"
    __table_args__ = (UniqueConstraint("gateway", "event_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN))
    event_id: Mapped[int] = mapped_column(BigInteger)  # the kiosk's event number
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), index=True)  # SHA-256 hex of the code
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))


class CustomerWearable(Base):
    """A wearable paired to a customer (one customer per wearable)."""

    __tablename__ = "customer_wearables"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(ADDRESS_LEN), unique=True)
    irk_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    paired_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    branch_id: Mapped[int | None] = mapped_column(  # the kiosk's branch where it was paired
        ForeignKey("branches.id", ondelete="SET NULL")
    )


class ConsentEvent(Base):
    """One grant or withdrawal of a purpose by a customer; rows are only ever added."""

    __tablename__ = "customer_consents"
    __table_args__ = (Index("ix_customer_consents_latest", "customer_id", "purpose", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    text_version: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))  # "kiosk_code" or "web"
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class CustomerErasure(Base):
    """The receipt of an erased account: counts only (module docstring)."""

    __tablename__ = "customer_erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    erased_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    wearables: Mapped[int] = mapped_column(Integer)
    branches: Mapped[int] = mapped_column(Integer)  # branches whose gateways lose the keys
    deleted: Mapped[dict[str, int]] = mapped_column(JSON)  # rows deleted, by kind
