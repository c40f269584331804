"""Wearables bound to branches, and the KEYS revision each gateway is to run.

A binding is one wearable allowed at one branch: its identity address, and (sealed under a
key derived from the KEK, ``bindings.BindingCipher``) its IRK and its BTHome bind key. Every
change to a branch's set raises the branch's ``version``; every gateway's KEYS ``revision``
rises when the set (or the branch) it was issued for changes (``bindings.sync``), and is
delivered on its own sealed downlink (``cloud.fleet.delivery``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base


class WearableBinding(Base):
    """One wearable bound to one branch; secrets only sealed (``bindings.BindingCipher``)."""

    __tablename__ = "wearable_bindings"
    __table_args__ = (UniqueConstraint("branch_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    address: Mapped[str] = mapped_column(String(17))  # "AA:BB:CC:DD:EE:FF"
    irk_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(128))


class BindingSet(Base):
    """A branch's set of bindings: its version rises with every change."""

    __tablename__ = "wearable_binding_sets"

    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class GatewayKeys(Base):
    """The KEYS revision one gateway is to run, what it was issued for, and its delivery."""

    __tablename__ = "gateway_keys"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    branch_id: Mapped[int] = mapped_column(Integer)  # the branch the revision was issued for
    set_version: Mapped[int] = mapped_column(Integer)  # ... at this version of its set
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    sent_revision: Mapped[int | None] = mapped_column(Integer)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    send_count: Mapped[int] = mapped_column(Integer, default=0)
