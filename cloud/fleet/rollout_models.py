"""Staged rollouts of a release to a fleet: the rollout and each device's part in it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId

WHEN = DateTime(timezone=True)


class Rollout(Base):
    """One release going to the devices of a target, in waves (``rollout_plan``)."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), index=True)
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)  # rollout_plan.Settings fields
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    forgiven: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(WHEN)
    updated_at: Mapped[dt.datetime] = mapped_column(WHEN)
    finished_at: Mapped[dt.datetime | None] = mapped_column(WHEN)


class RolloutMember(Base):
    """One device of a rollout: its place in the order, its wave, how its update went."""

    __tablename__ = "rollout_members"

    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[str] = mapped_column(String(32))
    command_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("commands.id"))
    started_at: Mapped[dt.datetime | None] = mapped_column(WHEN)
    finished_at: Mapped[dt.datetime | None] = mapped_column(WHEN)
    detail: Mapped[str] = mapped_column(String(200), default="")
