"""What event processing stores.

- ``rule_decisions``: every decision of the live worker, acting or not (``engine.REASONS``),
  with the rule's id and version, the subject, the reasons and the inputs it saw. Personal
  data (a subject is a wearable's address): shown and exported to the customer, kept
  anonymised when they are erased (``cloud.customers``), deleted after the ``decisions``
  retention (``cloud.ingest.retention``); ``service_requests`` go when the customer is
  erased, and after the ``requests`` retention once closed. ``rule_cursors`` name nobody.
  ``event_id`` is the device event's id, not a foreign key: events are purged by class
  before the decisions that explain them.
- ``service_requests``: what branch staff act on: ``callback`` (call the customer back),
  ``ticket`` (a queue ticket), ``alert`` (look at something); at the branch of the gateway
  that saw the event, ``open`` until staff close it. UNIQUE on (decision, kind), so a
  decision's action is stored once however often the worker retries.
- ``rule_cursors``: how far the worker has read ``device_events`` (``worker``): the last
  id, and ids below it not seen yet (a transaction still committing on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId

RULE_LEN = 64  # rules.ID_LEN
SUBJECT_LEN = 64  # an address, or a gateway id
REQUEST_KINDS = ("callback", "ticket", "alert")
OPEN = "open"
CLOSED = "closed"


class RuleDecision(Base):
    """One decision of a rule (module docstring)."""

    __tablename__ = "rule_decisions"
    __table_args__ = (
        Index("ix_rule_decisions_rule_at", "rule_id", "at"),
        Index("ix_rule_decisions_subject_at", "subject", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))  # event or timer time
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    rule_id: Mapped[str] = mapped_column(String(RULE_LEN))
    rule_version: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    subject: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    gateway: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    branch_id: Mapped[int | None] = mapped_column(Integer)
    acted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class ServiceRequest(Base):
    """A request for branch staff made by a rule (module docstring)."""

    __tablename__ = "service_requests"
    __table_args__ = (
        UniqueConstraint("decision_id", "kind"),
        CheckConstraint("kind IN ('callback', 'ticket', 'alert')", name="kind"),
        CheckConstraint("state IN ('open', 'closed')", name="state"),
        Index("ix_service_requests_branch_state", "branch_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id", ondelete="SET NULL"))
    gateway: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    subject: Mapped[str] = mapped_column(String(SUBJECT_LEN))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    decision_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("rule_decisions.id"))
    rule_id: Mapped[str] = mapped_column(String(RULE_LEN))
    rule_version: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(128))


class RuleCursor(Base):
    """How far a worker has read ``device_events``: ``last_id``, and ``gaps``, ids below it
    not seen yet, each with when it was first missed (ISO time), retried for a while."""

    __tablename__ = "rule_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[dict[str, str]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
