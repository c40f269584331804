"""The inventory listing as one query: devices joined with their branch, latest health and
number of open alerts (one grouped subquery over the open alerts, which are few).

Pages are keyed by device id (``after``): stable while devices are added or removed, and
each page is an index range scan on the primary key, whatever the page number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

from cloud.fleet.alerts import OPEN, Alert
from cloud.fleet.models import Branch, Device
from cloud.ingest.models import BatchReceipt, GatewayHealth, utc

# Health values gateways may report beyond the loss counters (taken from the counters JSON
# when present and whole numbers; null otherwise).
EXTRA_HEALTH = ("battery", "rssi", "free_heap", "free_disk")


@dataclass(frozen=True)
class Filters:
    """What the caller asked for; ``visible`` is the caller's branches (None: all)."""

    visible: Iterable[int] | None = None
    branch: int | None = None
    kind: str | None = None
    status: str | None = None
    q: str | None = None
    after: int = 0
    limit: int = 100


def _uplink() -> Any:
    """The transport of the device's newest batch (``mqtt``, ``coap``, ``http``), or null:
    one probe of the receipts' unique index (gateway, key version, sequence) per row."""
    return (
        select(BatchReceipt.transport)
        .where(BatchReceipt.gateway == Device.uid)
        .order_by(BatchReceipt.key_version.desc(), BatchReceipt.seq.desc())
        .limit(1)
        .correlate(Device)
        .scalar_subquery()
    )


def inventory_query(filters: Filters) -> Select[*tuple[Any, ...]]:
    """The SELECT of one page (``limit + 1`` rows, so the caller knows if more follow)."""
    open_alerts = (
        select(Alert.device_id, func.count().label("open_alerts"))
        .where(Alert.state == OPEN)
        .group_by(Alert.device_id)
        .subquery()
    )
    query = (
        select(
            Device.id,
            Device.uid,
            Device.kind,
            Device.branch_id,
            Branch.code,
            Device.name,
            Device.model,
            Device.status,
            Device.firmware_version,
            Device.last_seen_at,
            GatewayHealth.reported_at,
            GatewayHealth.received_at,
            GatewayHealth.queue_depth,
            GatewayHealth.dropped_batches,
            GatewayHealth.dropped_bytes,
            GatewayHealth.counters,
            func.coalesce(open_alerts.c.open_alerts, 0).label("open_alerts"),
            _uplink().label("uplink"),
        )
        .join(Branch, Branch.id == Device.branch_id)
        .outerjoin(GatewayHealth, GatewayHealth.gateway == Device.uid)
        .outerjoin(open_alerts, open_alerts.c.device_id == Device.id)
        .where(Device.id > filters.after)
        .order_by(Device.id)
        .limit(filters.limit + 1)
    )
    if filters.visible is not None:
        query = query.where(Device.branch_id.in_(list(filters.visible)))
    if filters.branch is not None:
        query = query.where(Device.branch_id == filters.branch)
    if filters.kind is not None:
        query = query.where(Device.kind == filters.kind)
    if filters.status is not None:
        query = query.where(Device.status == filters.status)
    if filters.q:
        query = query.where(
            Device.uid.icontains(filters.q, autoescape=True)
            | Device.name.icontains(filters.q, autoescape=True)
        )
    return query


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _health(row: Row[Any]) -> dict[str, Any] | None:
    if row.reported_at is None:
        return None
    counters = row.counters if isinstance(row.counters, dict) else {}
    return {
        "reported_at": utc(row.reported_at),
        "received_at": utc(row.received_at),
        "queue_depth": row.queue_depth,
        "dropped_batches": row.dropped_batches,
        "dropped_bytes": row.dropped_bytes,
        **{name: _whole(counters.get(name)) for name in EXTRA_HEALTH},
    }


def _item(row: Row[Any]) -> dict[str, Any]:
    last_seen: dt.datetime | None = row.last_seen_at
    return {
        "id": row.id,
        "uid": row.uid,
        "kind": row.kind,
        "branch_id": row.branch_id,
        "branch_code": row.code,
        "name": row.name,
        "model": row.model,
        "status": row.status,
        "firmware_version": row.firmware_version,
        "last_seen_at": utc(last_seen) if last_seen is not None else None,
        "health": _health(row),
        "open_alerts": int(row.open_alerts),
        "uplink": row.uplink,
    }


def list_devices(db: Session, filters: Filters) -> dict[str, Any]:
    """One page of the inventory: ``{"devices": [...], "next": id or None}``."""
    rows = db.execute(inventory_query(filters)).all()
    page = rows[: filters.limit]
    more = len(rows) > filters.limit
    return {"devices": [_item(row) for row in page], "next": page[-1].id if more else None}
