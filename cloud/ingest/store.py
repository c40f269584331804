"""The database side of ingest: the one transaction per batch, and downlink numbers.

``stage_batch`` writes, in the caller's transaction (the pipeline stages one batch or a
group of batches per transaction, then commits): the receipt first (its UNIQUE
constraint on (gateway, key version, sequence) is what makes a second copy of the batch a
duplicate, even when two workers race with it), then the readings and events, the
gateway's latest health, and the next downlink sequence number for the acknowledgement.
Either all of it is there or none of it. A duplicate only takes a downlink number.

Downlink sequence numbers come from one row per gateway, incremented with
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (PostgreSQL and SQLite alike): the row
lock orders concurrent users, and a number is used only if its transaction commits, so
numbers never repeat. A gateway can receive its acknowledgements out of order (two workers
answering two batches); its replay window takes them as long as they are fresh.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.ingest import retention
from cloud.ingest.models import (
    BatchReceipt,
    DeviceEvent,
    DownlinkCounter,
    GatewayHealth,
    Reading,
)
from cloud.ingest.records import Rows

# The tables themselves, for Core inserts (the ORM's bulk path costs more than the rows).
READINGS = cast(Table, Reading.__table__)
EVENTS = cast(Table, DeviceEvent.__table__)


@dataclass(frozen=True)
class Committed:
    """What ``stage_batch`` did: the receipt (None for a duplicate: nothing stored), the
    rows stored, and the downlink number for the acknowledgement."""

    receipt_id: int | None
    readings: int
    events: int
    downlink_seq: int

    @property
    def duplicate(self) -> bool:
        """True if the batch was committed before."""
        return self.receipt_id is None


@functools.cache
def _statements(dialect: str) -> tuple[Any, Any]:
    """The receipt insert and the downlink counter upsert for ``dialect``, built once (they
    run for every batch; building them costs more than running them on SQLite)."""
    module = postgresql if dialect == "postgresql" else sqlite
    receipt = (
        module.insert(BatchReceipt)
        .on_conflict_do_nothing(index_elements=["gateway", "key_version", "seq"])
        .returning(BatchReceipt.id)
    )
    counter = (
        module.insert(DownlinkCounter)
        .values(next_seq=1)
        .on_conflict_do_update(
            index_elements=[DownlinkCounter.gateway],
            set_={"next_seq": DownlinkCounter.next_seq + 1},
        )
        .returning(DownlinkCounter.next_seq)
    )
    return receipt, counter


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def take_downlink_seq(session: Session, gateway: str) -> int:
    """The next downlink sequence number of ``gateway`` (0 first); part of the caller's
    transaction, which must commit before the number is used."""
    counter = _statements(_dialect(session))[1]
    return int(session.execute(counter, {"gateway": gateway}).scalar_one()) - 1


def _update_health(
    session: Session, gateway: str, key_version: int, seq: int, rows: Rows, receipt_id: int
) -> None:
    """Keep the newest health record (by key version, then sequence number) and turn a
    rise in the gateway's dropped-batch count into a ``loss`` event."""
    if not rows.health:
        return
    latest = rows.health[-1]
    current = session.get(GatewayHealth, gateway, with_for_update=True)
    if current is None:
        try:
            with session.begin_nested():  # another worker may insert the first one too
                session.add(
                    GatewayHealth(gateway=gateway, key_version=key_version, seq=seq, **latest)
                )
            return
        except IntegrityError:
            current = session.get(
                GatewayHealth, gateway, with_for_update=True, populate_existing=True
            )
            if current is None:
                raise
    if (key_version, seq) <= (current.key_version, current.seq):
        return  # an older batch arriving late: its health is history, kept as events
    before, after = current.dropped_batches, latest["dropped_batches"]
    if before is not None and after is not None and after > before:
        session.execute(
            insert(DeviceEvent),
            [
                {
                    "receipt_id": receipt_id,
                    "gateway": gateway,
                    "device": gateway,
                    "kind": "loss",
                    "occurred_at": latest["reported_at"],
                    "time_estimated": latest["time_estimated"],
                    "received_at": latest["received_at"],
                    "data": {
                        "dropped_batches": after - before,
                        "lost_first": latest["lost_first"],
                        "lost_last": latest["lost_last"],
                    },
                    "data_class": retention.DEVICE,
                }
            ],
        )
    current.key_version, current.seq = key_version, seq
    for name, value in latest.items():
        setattr(current, name, value)


def stage_batch(
    session: Session,
    gateway: str,
    key_version: int,
    seq: int,
    rows: Rows,
    received_at: dt.datetime,
    transport: str,
    envelope_bytes: int,
) -> Committed:
    """Store one batch unless it is there already and take the acknowledgement's downlink
    number, in the caller's transaction (which must commit before the number is used).

    The receipt goes first, ``INSERT ... ON CONFLICT DO NOTHING``: no row back means another
    copy committed first (or is committing: its transaction holds the key until it ends),
    and then nothing else is written.
    """
    receipt = _statements(_dialect(session))[0]
    receipt_id = session.execute(
        receipt,
        {
            "gateway": gateway,
            "key_version": key_version,
            "seq": seq,
            "received_at": received_at,
            "transport": transport,
            "readings": len(rows.readings),
            "events": len(rows.events),
            "envelope_bytes": envelope_bytes,
        },
    ).scalar()
    if receipt_id is None:
        return Committed(None, 0, 0, take_downlink_seq(session, gateway))
    connection = session.connection()  # Core inserts: the ORM's bookkeeping is not needed
    if rows.readings:
        for row in rows.readings:
            row["receipt_id"] = receipt_id
        connection.execute(insert(READINGS), rows.readings)
    if rows.events:
        for row in rows.events:
            row["receipt_id"] = receipt_id
        connection.execute(insert(EVENTS), rows.events)
    _update_health(session, gateway, key_version, seq, rows, receipt_id)
    downlink_seq = take_downlink_seq(session, gateway)
    return Committed(receipt_id, len(rows.readings), len(rows.events), downlink_seq)
