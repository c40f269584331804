"""Rejected envelopes, counted in the database: per (gateway, reason, hour UTC), with a
count and when the first and last of them arrived (table ``ingest_rejections``).

``stats`` counts rejections per process, since it started; this table is what every ingest
worker adds to, across restarts, so operations can ask which gateway sends what is refused,
since when and how much (``GET /api/ingest/rejections``, ``summary``).

Who sent it: the channel's gateway when the channel names one (the MQTT topic, which the
broker's ACL lets only that gateway write), else the gateway the envelope's kid names; kept
only if it is a gateway or kiosk of the inventory. Anything else (no gateway said, or one
the inventory does not hold) is counted as ``unknown``: a storm of forged envelopes adds to
at most one row per (gateway of the inventory or ``unknown``, reason, hour), whatever bytes
it carries. Reasons are the pipeline's own (``stats``), never the sender's.

``record`` is the one writer: an upsert (``INSERT ... ON CONFLICT DO UPDATE``, SQLite and
PostgreSQL) in a short transaction of its own, rows in key order so that concurrent workers
lock them in the same order. ``Ingest`` calls it once per group of envelopes, after the
verdicts, and never lets it fail an answer (a failure is logged). Rows expire with the
``rejections`` retention class (``retention.purge_operations``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Index,
    String,
    case,
    desc,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from cloud.db import Base, Database
from cloud.fleet.models import Device
from cloud.ingest.models import GATEWAY_LEN, utc

UNKNOWN = "unknown"  # the one bucket of senders the inventory does not vouch for
REASON_LEN = 16
# Devices that send sealed batches (a kiosk is a gateway with a screen).
SENDER_KINDS = ("gateway", "kiosk")


class RejectionCount(Base):
    """Envelopes rejected for ``reason`` from ``gateway`` (or ``unknown``) in the hour
    starting at ``hour`` (UTC)."""

    __tablename__ = "ingest_rejections"
    __table_args__ = (Index("ix_ingest_rejections_hour", "hour"),)

    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN), primary_key=True)
    reason: Mapped[str] = mapped_column(String(REASON_LEN), primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def hour_of(moment: dt.datetime) -> dt.datetime:
    """The start of ``moment``'s hour, UTC (a naive ``moment`` is taken as UTC)."""
    return utc(moment).replace(minute=0, second=0, microsecond=0)


def tally(
    rejected: Iterable[tuple[str | None, str]], known: Collection[str]
) -> Counter[tuple[str, str]]:
    """Counts per (gateway, reason) of ``rejected`` (sender or None, reason) pairs; a sender
    not in ``known`` (the inventory's gateways) is ``UNKNOWN``. Pure."""
    return Counter(
        (sender if sender is not None and sender in known else UNKNOWN, reason)
        for sender, reason in rejected
    )


def known_senders(connection: Connection, senders: Collection[str]) -> set[str]:
    """Which of ``senders`` are gateways or kiosks of the inventory."""
    candidates = sorted({s for s in senders if s and len(s) <= GATEWAY_LEN})
    if not candidates:
        return set()
    query = select(Device.uid).where(Device.uid.in_(candidates), Device.kind.in_(SENDER_KINDS))
    return set(connection.scalars(query))


def record(database: Database, rejected: Sequence[tuple[str | None, str]], now: dt.datetime) -> int:
    """Add ``rejected`` (sender or None, reason) to the counts of ``now``'s hour, in one
    short transaction of its own; how many rows it touched. Raises what the database raises
    (the caller decides that counting must not cost an answer)."""
    if not rejected:
        return 0
    with database.engine.connect() as connection:
        senders = {sender for sender, _ in rejected if sender is not None}
        counts = tally(rejected, known_senders(connection, senders))
        _upsert(connection, counts, now)
        connection.commit()
    return len(counts)


def _upsert(connection: Connection, counts: Counter[tuple[str, str]], now: dt.datetime) -> None:
    """``INSERT ... ON CONFLICT (gateway, reason, hour) DO UPDATE``: add the count, widen
    first/last seen (two workers' clocks may differ a little)."""
    row = RejectionCount
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(row)
    new = insert.excluded
    statement = insert.on_conflict_do_update(
        index_elements=[row.gateway, row.reason, row.hour],
        set_={
            "count": row.count + new["count"],
            "first_seen": case(
                (new.first_seen < row.first_seen, new.first_seen), else_=row.first_seen
            ),
            "last_seen": case((new.last_seen > row.last_seen, new.last_seen), else_=row.last_seen),
        },
    )
    hour, at = hour_of(now), utc(now)
    rows = [
        {
            "gateway": gateway,
            "reason": reason,
            "hour": hour,
            "count": n,
            "first_seen": at,
            "last_seen": at,
        }
        for (gateway, reason), n in sorted(counts.items())
    ]
    connection.execute(statement, rows)


@dataclass(frozen=True)
class RejectionFilters:
    """What to sum: buckets from ``since``'s hour on, of one ``gateway`` and ``reason`` if
    given; the ``limit`` largest sums."""

    since: dt.datetime
    gateway: str | None = None
    reason: str | None = None
    limit: int = 100


def summary(db: Session, filters: RejectionFilters) -> dict[str, Any]:
    """Rejections per (gateway, reason) since ``filters.since``'s hour, largest first:
    ``{"since": hour, "rejections": [...], "truncated": bool}``."""
    since = hour_of(filters.since)
    total = func.sum(RejectionCount.count).label("total")
    query = (
        select(
            RejectionCount.gateway,
            RejectionCount.reason,
            total,
            func.min(RejectionCount.first_seen),
            func.max(RejectionCount.last_seen),
            func.count().label("hours"),
        )
        .where(RejectionCount.hour >= since)
        .group_by(RejectionCount.gateway, RejectionCount.reason)
        .order_by(desc(total), RejectionCount.gateway, RejectionCount.reason)
        .limit(filters.limit + 1)
    )
    if filters.gateway is not None:
        query = query.where(RejectionCount.gateway == filters.gateway)
    if filters.reason is not None:
        query = query.where(RejectionCount.reason == filters.reason)
    rows = db.execute(query).all()
    return {
        "since": since,
        "rejections": [
            {
                "gateway": gateway,
                "reason": reason,
                "count": int(count),
                "first_seen": utc(first),
                "last_seen": utc(last),
                "hours": int(hours),
            }
            for gateway, reason, count, first, last, hours in rows[: filters.limit]
        ],
        "truncated": len(rows) > filters.limit,
    }
