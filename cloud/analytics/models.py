"""Stored analytics: each customer's latest profile and the life events detected in it.

- ``customer_profiles``: one row per customer (UNIQUE), replaced on each recompute: the
  profile's ``as_of``, the summary as JSON (``store.snapshot_json``), the figures the
  segmentation reads as columns (currency, monthly income, mean and minimum balance,
  accounts), the segment and income band (``segments``) and the model version.
- ``life_events``: the events whose score reached its threshold in that profile (kind,
  ``as_of``, score, reasons, detail, model version); replaced with the profile.

- ``life_event_history``: one row per episode of a life event (customer, kind, detail):
  when it was first detected (the profile's ``as_of`` and the time of the recompute), when
  last seen, its latest and highest score and reasons, and when it ended (no longer
  detected in a recomputed profile); an event found again after it ended opens a new row.
  Kept by ``store.recompute_customer``; ended episodes are deleted after the
  ``life_events`` retention (``cloud.ingest.retention``).

All cascade with the customer and are erased and exported with the customer's data
(``cloud.customers.erasure``, ``cloud.customers.data``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Date, DateTime, Float, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId

Money = Numeric(18, 2, asdecimal=True)


class CustomerProfile(Base):
    """A customer's latest financial profile (module docstring)."""

    __tablename__ = "customer_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), unique=True
    )
    as_of: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    accounts: Mapped[int] = mapped_column(default=0)
    income_monthly: Mapped[Decimal] = mapped_column(Money)
    balance_mean: Mapped[Decimal] = mapped_column(Money)
    balance_min: Mapped[Decimal] = mapped_column(Money)
    segment: Mapped[str | None] = mapped_column(String(32), index=True)
    income_band: Mapped[str | None] = mapped_column(String(16))
    snapshot: Mapped[Any] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(32))
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class LifeEvent(Base):
    """A life or financial event detected in a customer's profile, with its reasons."""

    __tablename__ = "life_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32), index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[Any] = mapped_column(JSON)
    detail: Mapped[str] = mapped_column(String(32), default="")
    model_version: Mapped[str] = mapped_column(String(32))


class LifeEventEpisode(Base):
    """One episode of a life event in a customer's profiles over time (module docstring)."""

    __tablename__ = "life_event_history"
    __table_args__ = (
        Index("ix_life_event_history_customer_kind", "customer_id", "kind", "ended_at"),
        # Covers ``store.events_over_time``: every column it reads, the one it ranges on
        # first, so the per-month counts come from the index alone (no table rows).
        Index(
            "ix_life_event_history_month",
            "first_detected_at",
            "kind",
            "customer_id",
            "ended_at",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(32), default="")
    first_as_of: Mapped[dt.date] = mapped_column(Date)  # the profile's date when first found
    first_detected_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_as_of: Mapped[dt.date] = mapped_column(Date)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    score: Mapped[float] = mapped_column(Float)  # the latest
    peak_score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[Any] = mapped_column(JSON)  # the latest, at most four
    ended_as_of: Mapped[dt.date | None] = mapped_column(Date)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    model_version: Mapped[str] = mapped_column(String(32))
