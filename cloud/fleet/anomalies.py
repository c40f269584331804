"""The queries that feed ``cloud.fleet.anomaly_rules``, and the conditions they give, for
``cloud.fleet.alerts.check_alerts`` (which opens, updates and resolves the alert rows).

Two queries per check, whatever the size of the fleet:

1. the numeric ``DRIFT_METRICS`` readings of the window (``drift_window``) of every
   monitored sensor, by device, metric and time (the readings' (device, metric, time)
   index serves each sensor's series);
2. every branch beacon with an address, with the newest time any gateway or kiosk of its
   branch stored a reading of that address (a probe of the same index per beacon).

Which gateways are online, and which is each branch's anchor, the caller already knows from
the snapshots of the fleet rules (``BranchGateways``), so both rules agree on "offline".
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from cloud.fleet.alert_rules import GATEWAY_KINDS, Condition, Thresholds
from cloud.fleet.anomaly_rules import (
    DRIFT_KINDS,
    DRIFT_METRICS,
    BeaconSnapshot,
    Point,
    beacons_silent,
    drift_condition,
)
from cloud.fleet.beacon_models import Beacon
from cloud.fleet.models import Device
from cloud.ingest.models import Reading, utc

NUMERIC = ("int", "float")


@dataclass
class BranchGateways:
    """A branch's active gateways and kiosks: the anchor (lowest id) and how many are
    online."""

    anchor: int
    online: int = 0


def drift_conditions(
    session: Session, thresholds: Thresholds, now: dt.datetime, retired: tuple[str, ...]
) -> Iterator[tuple[int, int, Condition]]:
    """(device id, branch id, ``cabinet_drift``) of every monitored sensor drifting at
    ``now``; ``retired``: the statuses that are not monitored."""
    since = now - dt.timedelta(seconds=thresholds.drift_window)
    query = (
        select(Device.id, Device.branch_id, Reading.metric, Reading.measured_at, Reading.value_num)
        .join(Device, Device.uid == Reading.device)
        .where(
            Device.kind.in_(sorted(DRIFT_KINDS)),
            Device.status.not_in(retired),
            Reading.metric.in_(sorted(DRIFT_METRICS)),
            Reading.value_kind.in_(NUMERIC),
            Reading.value_num.is_not(None),
            Reading.measured_at > since,
            Reading.measured_at <= now,
        )
        .order_by(Device.id, Reading.metric, Reading.measured_at)
    )
    series: dict[int, dict[str, list[Point]]] = defaultdict(lambda: defaultdict(list))
    branches: dict[int, int] = {}
    for row in session.execute(query):
        value = row.value_num
        if value is None or not math.isfinite(value):
            continue
        branches[row.id] = row.branch_id
        series[row.id][row.metric].append((utc(row.measured_at), float(value)))
    for device_id, by_metric in series.items():
        condition = drift_condition(by_metric, thresholds)
        if condition is not None:
            yield device_id, branches[device_id], condition


def _beacon_query() -> Select[*tuple[Any, ...]]:
    gateways = (
        select(Device.uid)
        .where(Device.branch_id == Beacon.branch_id, Device.kind.in_(sorted(GATEWAY_KINDS)))
        .correlate(Beacon)
    )
    last_heard = (
        select(func.max(Reading.measured_at))
        .where(Reading.device == Beacon.address, Reading.gateway.in_(gateways))
        .correlate(Beacon)
        .scalar_subquery()
    )
    return (
        select(
            Beacon.id,
            Beacon.branch_id,
            Beacon.identifier,
            Beacon.address,
            Beacon.label,
            Beacon.created_at,
            last_heard.label("last_heard_at"),
        )
        .where(Beacon.branch_id.is_not(None), Beacon.address.is_not(None))
        .order_by(Beacon.id)
    )


def beacon_conditions(
    session: Session,
    thresholds: Thresholds,
    now: dt.datetime,
    branches: Mapping[int, BranchGateways],
) -> Iterator[tuple[int, int, Condition]]:
    """(anchor device id, branch id, ``beacon_silent``) of every branch with a silent
    beacon at ``now``; ``branches``: the branches' active gateways (a branch without any
    has no anchor and nobody to hear its beacons: nothing)."""
    by_branch: dict[int, list[BeaconSnapshot]] = defaultdict(list)
    for row in session.execute(_beacon_query()):
        by_branch[row.branch_id].append(
            BeaconSnapshot(
                beacon_id=row.id,
                identifier=row.identifier,
                address=row.address,
                label=row.label,
                created_at=utc(row.created_at),
                last_heard_at=utc(row.last_heard_at) if row.last_heard_at else None,
            )
        )
    for branch_id, beacons in sorted(by_branch.items()):
        gateways = branches.get(branch_id)
        if gateways is None:
            continue
        condition = beacons_silent(beacons, gateways.online, thresholds, now)
        if condition is not None:
            yield gateways.anchor, branch_id, condition
