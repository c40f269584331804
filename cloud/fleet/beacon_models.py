"""Partner merchants and the beacons of branches and merchants (``cloud.fleet.beacons``).

A beacon is one iBeacon (proximity UUID, major, minor) or Eddystone UID (namespace,
instance) installed at one place: a branch or a partner merchant, never both. Its
``identifier`` is the canonical text of what it advertises (``beacons.identifier``) and is
unique, as is its fixed radio address when one is given: one advertisement, one place.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base


class Merchant(Base):
    """A partner shop where customers may be offered something (``category``: its merchant
    category code, ISO 18245, four digits)."""

    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    category: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))


class Beacon(Base):
    """One registered beacon at a branch or at a merchant (module docstring)."""

    __tablename__ = "beacons"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "ibeacon" or "eddystone"
    identifier: Mapped[str] = mapped_column(String(64), unique=True)
    uuid: Mapped[str | None] = mapped_column(String(36))
    major: Mapped[int | None] = mapped_column(Integer)
    minor: Mapped[int | None] = mapped_column(Integer)
    namespace: Mapped[str | None] = mapped_column(String(20))
    instance: Mapped[str | None] = mapped_column(String(12))
    address: Mapped[str | None] = mapped_column(String(17), unique=True)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id"), index=True)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
