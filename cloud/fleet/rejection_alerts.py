"""The query that feeds ``alert_rules.rejected_condition`` (``envelopes_rejected``), for
``cloud.fleet.alerts.check_alerts``, and the one that sums the rejections of no device.

The window is the current and the previous hour bucket of ``ingest_rejections``
(``cloud.ingest.rejections``: counts per sender, reason and hour UTC, kept by every ingest
worker): at least an hour of history, at most two, whatever minute the check runs at. One
query per check, served by the table's hour index: the window's buckets of monitored
gateways and kiosks (not revoked or retired), summed per device and reason.

The ``unknown`` bucket (no sender the inventory holds) belongs to no device and no branch,
and an alert belongs to a device: it opens no alert. ``unknown_rejections`` sums it for the
``bankiot_rejections_unknown_sender`` gauge (``cloud.fleet.alert_metrics``) instead.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from cloud.fleet.alert_rules import (
    ENVELOPES_REJECTED,
    Condition,
    Rejections,
    Thresholds,
    rejected_condition,
)
from cloud.fleet.models import Device
from cloud.ingest.models import utc
from cloud.ingest.rejections import SENDER_KINDS, UNKNOWN, RejectionCount, hour_of

WINDOW_HOURS = 2  # hour buckets summed: the current one and the one before


def window_start(now: dt.datetime) -> dt.datetime:
    """The first hour bucket of the window at ``now``."""
    return hour_of(now) - dt.timedelta(hours=WINDOW_HOURS - 1)


def _sums(since: dt.datetime) -> Select[*tuple[Any, ...]]:
    """Per ``reason``: ``total``, ``first`` and ``last`` seen, of the buckets from ``since``
    on (the caller groups and filters)."""
    return select(
        RejectionCount.reason,
        func.sum(RejectionCount.count).label("total"),
        func.min(RejectionCount.first_seen).label("first"),
        func.max(RejectionCount.last_seen).label("last"),
    ).where(RejectionCount.hour >= since)


def rejection_conditions(
    session: Session,
    thresholds: Thresholds,
    now: dt.datetime,
    retired: Collection[str],
    open_kinds: Mapping[int, Collection[str]],
) -> Iterator[tuple[int, int, Condition]]:
    """(device id, branch id, ``envelopes_rejected``) of every monitored gateway or kiosk
    whose rejections over the window at ``now`` make the rule hold; ``retired``: the
    statuses not monitored; ``open_kinds``: the kinds open per device id."""
    since = window_start(now)
    query = (
        _sums(since)
        .add_columns(Device.id, Device.branch_id)
        .join(Device, Device.uid == RejectionCount.gateway)
        .where(
            RejectionCount.gateway != UNKNOWN,  # even if a device were called so
            Device.kind.in_(SENDER_KINDS),
            Device.status.not_in(retired),
        )
        .group_by(Device.id, Device.branch_id, RejectionCount.reason)
        .order_by(Device.id, RejectionCount.reason)
    )
    reasons: dict[int, dict[str, int]] = defaultdict(dict)
    seen: dict[int, tuple[dt.datetime, dt.datetime]] = {}
    branches: dict[int, int] = {}
    for row in session.execute(query):
        device_id = row.id
        reasons[device_id][row.reason] = int(row.total)
        first, last = utc(row.first), utc(row.last)
        if device_id in seen:
            first, last = min(first, seen[device_id][0]), max(last, seen[device_id][1])
        seen[device_id] = (first, last)
        branches[device_id] = row.branch_id
    for device_id, by_reason in reasons.items():
        found = Rejections(by_reason, *seen[device_id], since=since)
        already_open = ENVELOPES_REJECTED in open_kinds.get(device_id, ())
        condition = rejected_condition(found, thresholds, already_open)
        if condition is not None:
            yield device_id, branches[device_id], condition


def unknown_rejections(session: Session, now: dt.datetime) -> dict[str, int]:
    """Envelopes rejected from no sender of the inventory over the window at ``now``, by
    reason."""
    query = (
        _sums(window_start(now))
        .where(RejectionCount.gateway == UNKNOWN)
        .group_by(RejectionCount.reason)
        .order_by(RejectionCount.reason)
    )
    return {row.reason: int(row.total) for row in session.execute(query)}
