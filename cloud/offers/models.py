"""Campaigns, what became of their offers, and every decision to offer or not.

- ``campaigns``: an offer to a target audience: ``name`` (unique), ``audience`` (a rule
  tree over customer attributes, ``audience``), what the screen shows (``title``, at most
  40 bytes, and ``text``, at most 160: the OFFERS downlink's limits), ``channel``
  (``kiosk``, ``app`` or ``wearable``: those two go to the customer's inbox,
  ``cloud.notifications``), a frequency cap (at most ``cap_count`` shown per customer per
  ``cap_days`` days), ``starts_at``/``ends_at`` and
  ``status`` (``draft``, ``active``, ``paused``, ``ended``). ``version`` rises with every
  change: decisions name the version they used.
- ``offer_results``: one row per offer shown, accepted or declined by a customer (kiosk
  events ``offer_shown`` / ``offer_accepted`` / ``offer_declined``, ``batch``), with the
  channel, the kiosk and its branch, the time. UNIQUE on (gateway, event id), like
  ``kiosk_events``: no result counts twice. An app or wearable offer's results have gateway
  ``inbox`` and the notification's id (``shown``) or minus it (the answer):
  ``cloud.notifications.inbox``.
- ``offer_decisions``: one row per check-in that reached the offers application, whatever
  was decided (offers, none, no consent, no customer): the inputs, the campaigns offered,
  up to four human-readable reasons and the decision logic's version. UNIQUE on (gateway,
  event id): one decision per check-in. A rule's ``offer`` action is logged here too, with
  minus the rule decision's id as event id (``kiosk``), and so is each customer of a
  campaign's send to the inbox (gateway ``send:<send id>``, ``cloud.notifications.offers``).

Erasing a customer (``cloud.customers.erasure``) deletes their results and keeps their
decisions anonymised (no customer, no inputs, no reasons); the foreign keys' ``ON DELETE
CASCADE`` is only the backstop. Retention: ``cloud.ingest.retention`` (``decisions``,
``offer_results``). Times are UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bankiot_core.cose import MAX_GATEWAY_ID_LEN as GATEWAY_LEN
from cloud.db import Base, BigId

NAME_LEN = 100
TITLE_BYTES = 40  # downlink.MAX_OFFER_TITLE
TEXT_BYTES = 160  # downlink.MAX_OFFER_TEXT
CHANNELS = ("kiosk", "app", "wearable")
STATUSES = ("draft", "active", "paused", "ended")
OUTCOMES = ("shown", "accepted", "declined")


class Campaign(Base):
    """One campaign (module docstring)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    audience: Mapped[Any] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(String(TITLE_BYTES))
    text: Mapped[str] = mapped_column(String(TEXT_BYTES))
    channel: Mapped[str] = mapped_column(String(16))
    cap_count: Mapped[int] = mapped_column(Integer)
    cap_days: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))


class OfferResult(Base):
    """An offer shown, accepted or declined (module docstring)."""

    __tablename__ = "offer_results"
    __table_args__ = (
        UniqueConstraint("gateway", "event_id"),
        Index("ix_offer_results_customer_campaign", "customer_id", "campaign_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN))
    event_id: Mapped[int] = mapped_column(BigInteger)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id", ondelete="SET NULL"))


class OfferDecision(Base):
    """What was decided for one check-in, and why (module docstring)."""

    __tablename__ = "offer_decisions"
    __table_args__ = (UniqueConstraint("gateway", "event_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN))
    event_id: Mapped[int] = mapped_column(BigInteger)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(16))  # "offered" or "none"
    offered: Mapped[list[int]] = mapped_column(JSON)  # campaign ids
    reasons: Mapped[list[str]] = mapped_column(JSON)  # at most four
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[str] = mapped_column(String(32))
