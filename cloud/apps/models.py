"""What the applications store.

- ``app_decisions``: every decision of an application (``shopping``, ``loan``,
  ``holdings``), acting or not, with its outcome, up to four reasons, the inputs it saw and
  the version of the logic that decided (the ``rule_decisions`` / ``offer_decisions``
  convention). UNIQUE on (app, rule decision): a rule's decision is handled once however
  often the worker runs. Deleted with the customer (erasure).
- ``loan_applications``: an application, the consented IoT evidence it names (device ids),
  the automatic outcome and reasons, and the branch manager's review when referred.
- ``holding_alerts``: a customer's threshold on an instrument (above or below), the
  channel to notify, and whether it is armed (notifies at the next crossing).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId

Money = Numeric(18, 5, asdecimal=True)
APPS = ("shopping", "loan", "holdings")
LOAN_OUTCOMES = ("approved", "referred", "declined")
PENDING = "pending"  # a referred application waiting for a branch manager


class AppDecision(Base):
    """One decision of an application (module docstring)."""

    __tablename__ = "app_decisions"
    __table_args__ = (UniqueConstraint("app", "rule_decision_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    app: Mapped[str] = mapped_column(String(16), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    rule_decision_id: Mapped[int | None] = mapped_column(BigInteger)
    subject: Mapped[str] = mapped_column(String(64))  # "loan:3", "alert:5", a rule decision
    outcome: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON)  # at most four
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[str] = mapped_column(String(32))


class LoanApplication(Base):
    """A loan application and its decision (module docstring)."""

    __tablename__ = "loan_applications"
    __table_args__ = (
        CheckConstraint("outcome IN ('approved', 'referred', 'declined')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    branch_id: Mapped[int | None] = mapped_column(
        ForeignKey("branches.id", ondelete="SET NULL"), index=True
    )
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    term_months: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(200))
    evidence: Mapped[list[str]] = mapped_column(JSON)  # device ids the customer consented to
    outcome: Mapped[str] = mapped_column(String(16))  # the automatic decision
    reasons: Mapped[list[str]] = mapped_column(JSON)
    review: Mapped[str | None] = mapped_column(String(16))  # pending / approved / declined
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    review_note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))


class HoldingAlert(Base):
    """A customer's threshold on an instrument (module docstring)."""

    __tablename__ = "holding_alerts"
    __table_args__ = (
        CheckConstraint("direction IN ('above', 'below')", name="direction"),
        CheckConstraint("channel IN ('wearable', 'app')", name="channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    instrument: Mapped[str] = mapped_column(String(16), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    threshold: Mapped[Decimal] = mapped_column(Money)
    channel: Mapped[str] = mapped_column(String(16))
    armed: Mapped[bool] = mapped_column(Boolean)
    last_price: Mapped[Decimal | None] = mapped_column(Money)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
