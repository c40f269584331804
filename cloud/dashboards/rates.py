"""Ingest rates and delivery latency, from what is stored (so every ingest process counts,
not only this web process): batches and readings per time bucket from ``batch_receipts``,
and the time from measurement to storage of recent readings.

Scoped like the APIs: for a caller with branches, only the gateways of those branches.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from cloud.fleet.models import Device
from cloud.ingest.models import BatchReceipt, Reading, utc


@dataclass(frozen=True)
class Bucket:
    """One time bucket: its start, the batches committed in it and their readings."""

    start: dt.datetime
    batches: int
    readings: int


def _epoch_bucket(db: Session, column: Any, seconds: int) -> Any:
    """The bucket number of ``column`` (seconds since the epoch // ``seconds``), in SQL."""
    if db.get_bind().dialect.name == "sqlite":
        epoch = cast(func.strftime("%s", column), Integer)
    else:
        epoch = cast(func.floor(func.extract("epoch", column)), Integer)
    return cast(epoch / seconds, Integer)


def ingest_buckets(
    db: Session,
    visible: Iterable[int] | None,
    now: dt.datetime,
    *,
    buckets: int = 60,
    seconds: int = 60,
) -> list[Bucket]:
    """Batches and readings committed per ``seconds``, for the last ``buckets`` buckets
    up to ``now`` (oldest first, empty buckets included)."""
    end = int(now.timestamp()) // seconds
    start = end - buckets + 1
    since = dt.datetime.fromtimestamp(start * seconds, dt.UTC)
    bucket = _epoch_bucket(db, BatchReceipt.received_at, seconds).label("bucket")
    query = (
        select(bucket, func.count(), func.coalesce(func.sum(BatchReceipt.readings), 0))
        .where(BatchReceipt.received_at >= since)
        .group_by(bucket)
    )
    if visible is not None:
        query = query.join(Device, Device.uid == BatchReceipt.gateway).where(
            Device.branch_id.in_(list(visible))
        )
    counts = {int(b): (int(n), int(r)) for b, n, r in db.execute(query)}
    return [
        Bucket(
            dt.datetime.fromtimestamp(number * seconds, dt.UTC),
            *counts.get(number, (0, 0)),
        )
        for number in range(start, end + 1)
    ]


@dataclass(frozen=True)
class Latency:
    """Seconds from measurement to storage of recent readings (gateways with a clock)."""

    count: int
    median_s: float | None
    p95_s: float | None
    histogram: Sequence[tuple[str, int]]  # (bucket label, readings)


HISTOGRAM_EDGES = (1, 2, 5, 10, 30, 60, 300)  # seconds: upper bounds; the rest is "more"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of sorted ``values``: the nearest rank, ceil(fraction * n)."""
    index = min(len(values) - 1, max(0, math.ceil(fraction * len(values) - 1e-9) - 1))
    return values[index]


def reading_latency(
    db: Session, visible: Iterable[int] | None, now: dt.datetime, *, limit: int = 2000
) -> Latency:
    """The latency of the newest ``limit`` readings stored in the last hour whose time
    came from the gateway's own clock (estimated times say nothing about delay)."""
    query = (
        select(Reading.measured_at, Reading.received_at)
        .where(
            Reading.received_at >= now - dt.timedelta(hours=1), Reading.time_estimated.is_(False)
        )
        .order_by(Reading.received_at.desc())
        .limit(limit)
    )
    if visible is not None:
        query = query.join(Device, Device.uid == Reading.gateway).where(
            Device.branch_id.in_(list(visible))
        )
    delays = sorted(
        max(0.0, (utc(received) - utc(measured)).total_seconds())
        for measured, received in db.execute(query)
    )
    counts = [0] * (len(HISTOGRAM_EDGES) + 1)
    for delay in delays:
        counts[sum(1 for edge in HISTOGRAM_EDGES if delay > edge)] += 1
    labels = ["≤%d s" % edge for edge in HISTOGRAM_EDGES] + [">%d s" % HISTOGRAM_EDGES[-1]]
    if not delays:
        return Latency(0, None, None, [])
    return Latency(
        len(delays),
        percentile(delays, 0.5),
        percentile(delays, 0.95),
        list(zip(labels, counts, strict=True)),
    )
