"""Fleet alerts: the ``alerts`` table and ``check_alerts``, which keeps it in step with the
conditions ``alert_rules.evaluate`` finds (the imperative shell around those rules).

An alert opens once per (device, kind), stays open while its condition holds (its severity
and detail follow the latest figures) and resolves itself when the condition ends; the
next time the condition holds, a new alert opens. Operators acknowledge alerts (the API);
acknowledging changes neither the state nor the condition.

"At most one open alert per (device, kind)" is the database's rule, not only this code's:
a partial unique index on (device_id, kind) WHERE state = 'open' (SQLite and PostgreSQL).
``check_alerts`` inserts with ``ON CONFLICT DO NOTHING`` on it and changes open alerts only
``WHERE state = 'open'``, so two runs at once (two supervisors, a slow run overlapping the
next) open nothing twice and undo nothing of each other.

What a check reads, in three queries whatever the size of the fleet:

1. every monitored device (not revoked or retired) with its latest health, the arrival of
   the newest batch its gateway sealed (an index probe on the receipts' unique key) and
   the newest ``battery`` reading of its address (an index probe on readings);
2. the health events of the window (``device_events`` by data class and time), their
   counters taken out of the JSON by the database, in the order the batches were sealed;
3. the open alerts;

the two of ``cloud.fleet.anomalies`` (sensors' readings for drift, branch beacons'
last heard) for ``cabinet_drift`` and ``beacon_silent``; and the one of
``cloud.fleet.rejection_alerts`` (the ingest's hourly rejection counts) for
``envelopes_rejected``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    bindparam,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from cloud.db import Base
from cloud.fleet.alert_rules import (
    GATEWAY_KINDS,
    OFFLINE,
    Condition,
    Report,
    Snapshot,
    Thresholds,
    evaluate,
)
from cloud.fleet.anomalies import BranchGateways, beacon_conditions, drift_conditions
from cloud.fleet.models import Device
from cloud.fleet.rejection_alerts import rejection_conditions
from cloud.ingest import retention
from cloud.ingest.models import BatchReceipt, DeviceEvent, GatewayHealth, Reading, utc

OPEN = "open"
RESOLVED = "resolved"
STATES = (OPEN, RESOLVED)

# Devices out of service raise no alerts (and their open alerts resolve).
RETIRED_STATUSES = ("revoked", "retired", "decommissioned")

# The predicate of the partial unique index, literal (a bound parameter cannot name an
# index's predicate in ON CONFLICT, and an executemany cannot expand one).
OPEN_ONLY = text("state = 'open'")

_CHUNK = 500  # ids per IN list (SQLite's parameter limit, PostgreSQL's plan size)


class Alert(Base):
    """One alert: a condition of one device from when it began to hold until it ended."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_open_device_kind",
            "device_id",
            "kind",
            unique=True,
            sqlite_where=OPEN_ONLY,
            postgresql_where=OPEN_ONLY,
        ),
        CheckConstraint("state IN ('open', 'resolved')", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("branches.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))  # audit actor
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class CheckSummary:
    """What one ``check_alerts`` run did, and how many alerts are open after it."""

    opened: int
    updated: int
    resolved: int
    open: int

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.updated or self.resolved)


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    """A counter taken out of the JSON as text: a whole number, or None."""
    if isinstance(value, str):
        try:
            return int(value, 10)
        except ValueError:
            return None
    return _whole(value)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _device_query() -> Any:
    newest_batch = (
        select(BatchReceipt.received_at)
        .where(BatchReceipt.gateway == Device.uid)
        .order_by(BatchReceipt.key_version.desc(), BatchReceipt.seq.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()
    )
    battery_reading = (
        select(Reading.value_num)
        .where(Reading.device == Device.uid, Reading.metric == "battery")
        .order_by(Reading.measured_at.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()
    )
    return (
        select(
            Device.id,
            Device.uid,
            Device.kind,
            Device.branch_id,
            Device.status,
            Device.created_at,
            Device.last_seen_at,
            GatewayHealth.received_at.label("health_at"),
            GatewayHealth.queue_depth,
            GatewayHealth.counters,
            newest_batch.label("batch_at"),
            battery_reading.label("battery_reading"),
        )
        .outerjoin(GatewayHealth, GatewayHealth.gateway == Device.uid)
        .where(Device.status.not_in(RETIRED_STATUSES))
        .order_by(Device.id)  # alerts of one run get ids in device order
    )


def _reports(session: Session, now: dt.datetime, window: int) -> dict[str, list[Report]]:
    """The health reports of the window by gateway, in the order their batches were sealed."""
    names = (
        "depth",
        "frames_unauthenticated",
        "frames_replayed",
        "frames_malformed",
        "dropped_batches",
        "open_batches_lost",
    )
    # As text, not JSON: decoding a JSON document per value costs more than the query
    # (SQLite hands integers back as they are, PostgreSQL as their decimal text).
    counters = [DeviceEvent.data[("counters", name)].as_string().label(name) for name in names]
    query = (
        select(DeviceEvent.device, *counters)
        .join(BatchReceipt, BatchReceipt.id == DeviceEvent.receipt_id)
        .where(
            DeviceEvent.data_class == retention.DEVICE,
            DeviceEvent.occurred_at > now - dt.timedelta(seconds=window),
            DeviceEvent.occurred_at <= now,
            DeviceEvent.kind == "health",
        )
        .order_by(DeviceEvent.device, BatchReceipt.key_version, BatchReceipt.seq, DeviceEvent.id)
    )
    found: dict[str, list[Report]] = defaultdict(list)
    for row in session.execute(query):
        values = [_count(value) for value in row[1:]]
        found[row.device].append(Report(*values))
    return found


def _latest(*moments: dt.datetime | None) -> dt.datetime | None:
    known = [utc(moment) for moment in moments if moment is not None]
    return max(known) if known else None


def load_snapshots(
    session: Session, thresholds: Thresholds, now: dt.datetime
) -> Iterator[tuple[int, Snapshot]]:
    """(branch id, snapshot) of every monitored device at ``now``."""
    reports = _reports(session, now, thresholds.window)
    for row in session.execute(_device_query()):
        gateway = row.kind in GATEWAY_KINDS
        counters = row.counters if isinstance(row.counters, dict) else {}
        battery = _number(counters.get("battery")) if gateway else _number(row.battery_reading)
        snapshot = Snapshot(
            device_id=row.id,
            kind=row.kind,
            status=row.status,
            created_at=utc(row.created_at),
            last_heard_at=_latest(row.last_seen_at, row.health_at, row.batch_at),
            queue_depth=_whole(row.queue_depth),
            battery=battery,
            battery_source="health" if gateway else "reading",
            reports=tuple(reports.get(row.uid, ())),
        )
        yield row.branch_id, snapshot


def _chunks(items: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _insert_open(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert open alerts unless one is open for the same (device, kind); how many went in."""
    if not rows:
        return 0
    module = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        module.insert(Alert)
        .on_conflict_do_nothing(index_elements=["device_id", "kind"], index_where=OPEN_ONLY)
        .returning(Alert.id)
    )
    return len(session.execute(statement, rows).all())


def _conditions(
    session: Session,
    thresholds: Thresholds,
    now: dt.datetime,
    open_kinds: Mapping[int, set[str]],
) -> Iterator[tuple[int, int, Condition]]:
    """(device id, branch id, condition) of every condition that holds at ``now``: the
    snapshot rules', then the anomaly rules' (``cloud.fleet.anomalies``), which learn from
    the snapshots which gateways are online, then the rejected envelopes'."""
    branches: dict[int, BranchGateways] = {}
    for branch_id, snapshot in load_snapshots(session, thresholds, now):
        found = evaluate(snapshot, thresholds, now, open_kinds.get(snapshot.device_id, ()))
        if snapshot.kind in GATEWAY_KINDS and snapshot.status == "active":
            gateways = branches.setdefault(branch_id, BranchGateways(snapshot.device_id))
            gateways.online += OFFLINE not in found
        for condition in found.values():
            yield snapshot.device_id, branch_id, condition
    yield from drift_conditions(session, thresholds, now, RETIRED_STATUSES)
    yield from beacon_conditions(session, thresholds, now, branches)
    yield from rejection_conditions(session, thresholds, now, RETIRED_STATUSES, open_kinds)


def check_alerts(session: Session, thresholds: Thresholds, now: dt.datetime) -> CheckSummary:
    """Open, update and resolve alerts so they match the conditions that hold at ``now``.

    Writes in the caller's transaction: commit afterwards. Idempotent: a second run at the
    same ``now`` on the same data changes nothing. Safe to run concurrently (module
    docstring). ``now`` is an aware datetime.
    """
    open_alerts: dict[tuple[int, str], Any] = {
        (row.device_id, row.kind): row
        for row in session.execute(
            select(
                Alert.id, Alert.device_id, Alert.kind, Alert.severity, Alert.detail, Alert.branch_id
            ).where(Alert.state == OPEN)
        )
    }
    open_kinds: dict[int, set[str]] = defaultdict(set)
    for device_id, kind in open_alerts:
        open_kinds[device_id].add(kind)

    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    holding: set[tuple[int, str]] = set()
    for device_id, branch_id, condition in _conditions(session, thresholds, now, open_kinds):
        key = (device_id, condition.kind)
        holding.add(key)
        current = open_alerts.get(key)
        if current is None:
            new.append(_new_row(device_id, branch_id, condition, now))
        elif (current.severity, current.detail, current.branch_id) != (
            condition.severity,
            condition.detail,
            branch_id,  # the device moved since it opened (``move_open_alerts`` raced a check)
        ):
            changed.append(
                {
                    "b_id": current.id,
                    "severity": condition.severity,
                    "detail": condition.detail,
                    "branch": branch_id,
                }
            )

    opened = _insert_open(session, new)
    updated = 0
    if changed:
        statement = (
            update(Alert)
            .where(Alert.id == bindparam("b_id"), Alert.state == OPEN)
            .values(
                severity=bindparam("severity"),
                detail=bindparam("detail"),
                branch_id=bindparam("branch"),
            )
        )
        # Core executemany: the ORM's bulk update by primary key would drop the state guard.
        updated = session.connection().execute(statement, changed).rowcount
    ended = sorted(row.id for key, row in open_alerts.items() if key not in holding)
    resolved = 0
    for ids in _chunks(ended):
        resolved += (
            session.connection()
            .execute(
                update(Alert)
                .where(Alert.id.in_(ids), Alert.state == OPEN)
                .values(state=RESOLVED, resolved_at=now)
            )
            .rowcount
        )
    still_open = len(open_alerts) - resolved + opened
    return CheckSummary(opened=opened, updated=updated, resolved=resolved, open=still_open)


def _new_row(device_id: int, branch_id: int, condition: Condition, now: dt.datetime) -> dict:
    return {
        "device_id": device_id,
        "branch_id": branch_id,
        "kind": condition.kind,
        "severity": condition.severity,
        "state": OPEN,
        "opened_at": now,
        "resolved_at": None,
        "detail": dict(condition.detail),
        "acknowledged_by": None,
        "acknowledged_at": None,
    }


def move_open_alerts(session: Session, device_id: int, branch_id: int) -> int:
    """Put the device's open alerts under ``branch_id``, where the device has just moved, so
    that branch's staff see them; resolved ones stay under the branch they were raised in
    (history). In the caller's transaction, with the move itself; how many moved."""
    result = session.execute(
        update(Alert)
        .where(Alert.device_id == device_id, Alert.state == OPEN, Alert.branch_id != branch_id)
        .values(branch_id=branch_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def alert_check(config: Mapping[str, Any]) -> Callable[[Session, dt.datetime], CheckSummary]:
    """``check_alerts`` with the thresholds of the cloud's ``config`` (``ALERT_*`` keys), as
    a periodic check for the fleet supervisor (which commits). Raises
    ``cloud.config.ConfigError`` for a bad threshold now, not at the first pass."""
    thresholds = Thresholds.from_config(config)

    def check(session: Session, now: dt.datetime) -> CheckSummary:
        return check_alerts(session, thresholds, now)

    return check
