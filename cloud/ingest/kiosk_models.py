"""What ingest keeps of branch kiosks: one row per customer action (``batch.KioskEvent``).

- ``kiosk_events``: a check-in, a queue ticket or a service request at a kiosk, as the
  kiosk (a gateway) reported it in a sealed batch. UNIQUE on (gateway, event id): the kiosk
  numbers its events and never reuses a number, so the database itself refuses a second
  copy of an event, whatever batch carries it (a resent batch is already a duplicate by its
  receipt). ``device_id`` and ``branch_id`` are the kiosk's inventory record and its branch
  when the event arrived (null for a gateway not in the inventory): an event stays with
  the branch it happened in if the kiosk later moves. ``wearable`` is the customer's
  wearable identity address (``AA:BB:CC:DD:EE:FF``, as ``Device.uid`` of a wearable), or
  null for a walk-in. ``data_class`` is the retention class (``retention``): ``presence``
  for an event tied to a wearable (where a customer was), ``interaction`` otherwise.

The same action is also a ``device_events`` row (kind ``kiosk_checkin``, ``kiosk_ticket``,
``kiosk_request``) for the event-processing layer; this table is what the branch API lists.
Times are UTC.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId
from cloud.ingest.models import GATEWAY_LEN

KIND_LEN = 16  # "checkin", "ticket", "request"
ADDRESS_LEN = 17  # "AA:BB:CC:DD:EE:FF"
DETAIL_LEN = 64  # batch.MAX_KIOSK_DETAIL_BYTES: at most 64 characters


class KioskEventRow(Base):
    """One customer action at a kiosk (module docstring)."""

    __tablename__ = "kiosk_events"
    __table_args__ = (
        UniqueConstraint("gateway", "event_id"),
        Index("ix_kiosk_events_branch_order", "branch_id", "id"),
        Index("ix_kiosk_events_class_time", "data_class", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    receipt_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("batch_receipts.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN))
    # SET NULL: the events outlive the inventory records they were made under.
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branches.id", ondelete="SET NULL"))
    event_id: Mapped[int] = mapped_column(BigInteger)  # the kiosk's number, 0..2**40-1
    kind: Mapped[str] = mapped_column(String(KIND_LEN))
    wearable: Mapped[str | None] = mapped_column(String(ADDRESS_LEN))
    detail: Mapped[str] = mapped_column(String(DETAIL_LEN))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    time_estimated: Mapped[bool] = mapped_column(Boolean)  # from a gateway without a clock
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    data_class: Mapped[str] = mapped_column(String(16))
