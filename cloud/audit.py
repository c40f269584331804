"""The audit log: every operator and device-management action, append-only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, String, func
from sqlalchemy.orm import Mapped, Session, mapped_column

from cloud.db import Base


class AuditEvent(Base):
    """Who did what to which object, when, with which details (never secrets)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    actor: Mapped[str] = mapped_column(String(128))  # "operator:alice", "device:gw-1", "system"
    action: Mapped[str] = mapped_column(String(64))  # "claim.create", "device.revoke", ...
    target: Mapped[str] = mapped_column(String(128), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def record(
    session: Session, actor: str, action: str, target: str = "", **details: Any
) -> AuditEvent:
    """Add an audit event to ``session`` (committed with the action it records)."""
    event = AuditEvent(actor=actor, action=action, target=target, details=details)
    session.add(event)
    return event
