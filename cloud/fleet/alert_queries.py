"""Alerts for people: the listing (one query, keyset pages on the alert id, like the
inventory) and acknowledging one alert (audited)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, select, update
from sqlalchemy.orm import Session

from cloud.audit import record
from cloud.fleet.alerts import Alert
from cloud.fleet.models import Branch, Device
from cloud.ingest.models import utc


@dataclass(frozen=True)
class AlertFilters:
    """What the caller asked for; ``visible`` is the caller's branches (None: all);
    ``state`` is ``open``, ``resolved`` or ``all``."""

    visible: Iterable[int] | None = None
    state: str = "open"
    kind: str | None = None
    branch: int | None = None
    device: int | None = None
    after: int = 0
    limit: int = 100


def _columns() -> Select[*tuple[Any, ...]]:
    return (
        select(Alert, Device.uid, Device.kind.label("device_kind"), Branch.code)
        .join(Device, Device.id == Alert.device_id)
        .join(Branch, Branch.id == Alert.branch_id)
    )


def alerts_query(filters: AlertFilters) -> Select[*tuple[Any, ...]]:
    """The SELECT of one page (``limit + 1`` rows, so the caller knows if more follow)."""
    query = _columns().where(Alert.id > filters.after).order_by(Alert.id).limit(filters.limit + 1)
    if filters.visible is not None:
        query = query.where(Alert.branch_id.in_(list(filters.visible)))
    if filters.state != "all":
        query = query.where(Alert.state == filters.state)
    if filters.kind is not None:
        query = query.where(Alert.kind == filters.kind)
    if filters.branch is not None:
        query = query.where(Alert.branch_id == filters.branch)
    if filters.device is not None:
        query = query.where(Alert.device_id == filters.device)
    return query


def _when(moment: dt.datetime | None) -> dt.datetime | None:
    return utc(moment) if moment is not None else None


def alert_item(row: Row[Any]) -> dict[str, Any]:
    """The API's view of one alert row (``Alert``, device uid and kind, branch code)."""
    alert: Alert = row[0]
    return {
        "id": alert.id,
        "device_id": alert.device_id,
        "device_uid": row.uid,
        "device_kind": row.device_kind,
        "branch_id": alert.branch_id,
        "branch_code": row.code,
        "kind": alert.kind,
        "severity": alert.severity,
        "state": alert.state,
        "opened_at": utc(alert.opened_at),
        "resolved_at": _when(alert.resolved_at),
        "detail": alert.detail,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": _when(alert.acknowledged_at),
    }


def list_alerts(db: Session, filters: AlertFilters) -> dict[str, Any]:
    """One page of alerts: ``{"alerts": [...], "next": id or None}``."""
    rows = db.execute(alerts_query(filters)).all()
    page = rows[: filters.limit]
    more = len(rows) > filters.limit
    return {"alerts": [alert_item(row) for row in page], "next": page[-1][0].id if more else None}


def find_alert(db: Session, alert_id: int) -> Row[Any] | None:
    """The alert ``alert_id`` with its device and branch, or None."""
    return db.execute(_columns().where(Alert.id == alert_id)).first()


def acknowledge(db: Session, alert: Alert, actor: str, now: dt.datetime) -> bool:
    """Mark ``alert`` acknowledged by ``actor`` (audited); False if it already was (the
    first acknowledgement stands, even when two arrive at once). In the caller's
    transaction; ``alert`` is refreshed either way."""
    # Core, guarded: of two acknowledgements at once, one changes the row.
    done = (
        db.connection()
        .execute(
            update(Alert)
            .where(Alert.id == alert.id, Alert.acknowledged_at.is_(None))
            .values(acknowledged_by=actor, acknowledged_at=now)
        )
        .rowcount
    )
    if done:
        record(
            db,
            actor,
            "alert.acknowledge",
            "alert:%d" % alert.id,
            device_id=alert.device_id,
            kind=alert.kind,
            state=alert.state,
        )
    db.refresh(alert)
    return bool(done)
