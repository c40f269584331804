"""Kiosk events for people: the listing of what customers did at the kiosks of the
branches a caller may see (one query, keyset pages on the row id, like the alerts).

A customer's wearable address is personal data: the listing holds it only when the caller
may see personal data (``cloud.access.PERSONAL_DATA_ROLES``); otherwise ``wearable`` is
null and ``with_wearable`` still says whether the event named one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session

from cloud.fleet.models import Branch
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import utc


@dataclass(frozen=True)
class KioskFilters:
    """What the caller asked for. ``visible``: the caller's branches (None: all);
    ``since``: events that happened at or after it (aware); ``personal``: whether wearable
    addresses may be shown."""

    visible: Iterable[int] | None = None
    branch: int | None = None
    device: int | None = None
    kind: str | None = None
    since: dt.datetime | None = None
    after: int = 0
    limit: int = 100
    personal: bool = False


def kiosk_query(filters: KioskFilters) -> Select[*tuple[Any, ...]]:
    """The SELECT of one page (``limit + 1`` rows, so the caller knows if more follow)."""
    query = (
        select(KioskEventRow, Branch.code)
        .outerjoin(Branch, Branch.id == KioskEventRow.branch_id)
        .where(KioskEventRow.id > filters.after)
        .order_by(KioskEventRow.id)
        .limit(filters.limit + 1)
    )
    if filters.visible is not None:
        query = query.where(KioskEventRow.branch_id.in_(list(filters.visible)))
    if filters.branch is not None:
        query = query.where(KioskEventRow.branch_id == filters.branch)
    if filters.device is not None:
        query = query.where(KioskEventRow.device_id == filters.device)
    if filters.kind is not None:
        query = query.where(KioskEventRow.kind == filters.kind)
    if filters.since is not None:
        # UTC: SQLite keeps times as UTC text without a zone, so compare like with like.
        query = query.where(KioskEventRow.occurred_at >= filters.since.astimezone(dt.UTC))
    return query


def kiosk_item(row: Row[Any], personal: bool) -> dict[str, Any]:
    """The API's view of one kiosk event row (``KioskEventRow``, branch code)."""
    event: KioskEventRow = row[0]
    return {
        "id": event.id,
        "branch_id": event.branch_id,
        "branch_code": row.code,
        "device_id": event.device_id,
        "gateway": event.gateway,
        "event_id": event.event_id,
        "kind": event.kind,
        "with_wearable": event.wearable is not None,
        "wearable": event.wearable if personal else None,
        "detail": event.detail,
        "occurred_at": utc(event.occurred_at),
        "time_estimated": event.time_estimated,
        "received_at": utc(event.received_at),
    }


def list_kiosk_events(db: Session, filters: KioskFilters) -> dict[str, Any]:
    """One page of kiosk events: ``{"events": [...], "next": id or None}``."""
    rows = db.execute(kiosk_query(filters)).all()
    page = rows[: filters.limit]
    more = len(rows) > filters.limit
    return {
        "events": [kiosk_item(row, filters.personal) for row in page],
        "next": page[-1][0].id if more else None,
    }
