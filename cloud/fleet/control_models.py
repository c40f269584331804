"""Desired and reported configuration, and commands: what the cloud asks of gateways.

A device's configuration is a shadow: the desired settings with a revision that grows with
every change, and the revision the device last reported running. A command is one request
to one device; an operator's request to a branch or a list of devices is a ``CommandGroup``
whose members are ordinary commands, so each device's acknowledgement is collected on its
own row. Both are delivered on the device's own sealed downlink (``cloud.fleet.delivery``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId

# Where a command stands. Open: the cloud still expects something from the device.
COMMAND_OPEN = ("pending", "sent", "accepted")
COMMAND_FINAL = ("done", "failed", "refused", "timed_out", "cancelled")
COMMAND_STATUSES = COMMAND_OPEN + COMMAND_FINAL


class DeviceConfig(Base):
    """One device's desired configuration, what was last sent, and what it reports running."""

    __tablename__ = "device_configs"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(128))
    sent_revision: Mapped[int | None] = mapped_column(Integer)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    send_count: Mapped[int] = mapped_column(Integer, default=0)
    reported_revision: Mapped[int | None] = mapped_column(Integer)
    reported_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CommandGroup(Base):
    """An operator's request to several devices at once (a branch, or a list of devices)."""

    __tablename__ = "command_groups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    target: Mapped[dict[str, Any]] = mapped_column(JSON)  # what was asked: branch/devices/kind
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Command(Base):
    """One command to one device, its delivery and its outcome.

    The id is the command's number on the wire (``downlink.encode_command``): the same on
    every resend, so a device runs it at most once and reports under it.
    """

    __tablename__ = "commands"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("command_groups.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    send_count: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str] = mapped_column(String(200), default="")
