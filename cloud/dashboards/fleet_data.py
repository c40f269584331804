"""What the fleet page shows: branches and their devices (through the inventory query),
open alerts, rollouts in progress, ready releases, and the ingest rate. Scoped to the
caller's branches (``visible``) like the APIs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.fleet import releases, rollouts
from cloud.fleet.alert_queries import AlertFilters, list_alerts
from cloud.fleet.control_models import DeviceConfig
from cloud.fleet.errors import NotFound
from cloud.fleet.inventory import Filters, list_devices
from cloud.fleet.models import Branch
from cloud.fleet.release_models import Release
from cloud.fleet.rollout_models import Rollout

MAX_DEVICES = 500  # one page of the inventory; the API pages further
OFFLINE_AFTER = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class BranchRow:
    id: int
    code: str
    name: str
    devices: list[dict[str, Any]]


def health_label(device: dict[str, Any], now: dt.datetime) -> str:
    """One word for a device's state: ``alert``, ``offline``, ``ok``, ``silent`` (never
    reported) or its inventory status when out of service."""
    if device["status"] in ("revoked", "decommissioned", "retired"):
        return device["status"]
    if device["open_alerts"]:
        return "alert"
    seen = device["last_seen_at"]
    if seen is None:
        return "silent"
    return "offline" if now - seen > OFFLINE_AFTER else "ok"


def in_sync(db: Session, device_ids: Iterable[int]) -> dict[int, bool]:
    """Device id -> whether it reports running its desired configuration revision
    (``configs``: in sync when the reported revision is the desired one); devices with no
    desired configuration are left out."""
    ids = list(device_ids)
    if not ids:
        return {}
    rows = db.execute(
        select(DeviceConfig.device_id, DeviceConfig.revision, DeviceConfig.reported_revision).where(
            DeviceConfig.device_id.in_(ids)
        )
    )
    return {device_id: reported == revision for device_id, revision, reported in rows}


def branches(db: Session, visible: Iterable[int] | None, now: dt.datetime) -> list[BranchRow]:
    """The caller's branches with their devices, each with ``health_label`` and
    ``config_in_sync`` (None: no desired configuration) added."""
    query = select(Branch).order_by(Branch.code)
    if visible is not None:
        query = query.where(Branch.id.in_(list(visible)))
    out = {b.id: BranchRow(b.id, b.code, b.name, []) for b in db.scalars(query)}
    devices = list_devices(db, Filters(visible=visible, limit=MAX_DEVICES))["devices"]
    sync = in_sync(db, [d["id"] for d in devices])
    for device in devices:
        device["health_label"] = health_label(device, now)
        device["config_in_sync"] = sync.get(device["id"])
        if device["branch_id"] in out:
            out[device["branch_id"]].devices.append(device)
    return list(out.values())


def open_alerts(db: Session, visible: Iterable[int] | None, limit: int = 50) -> list[dict]:
    """The open alerts of the caller's branches (oldest first)."""
    return list_alerts(db, AlertFilters(visible=visible, limit=limit))["alerts"]


def active_rollouts(db: Session, visible: Iterable[int] | None) -> list[dict[str, Any]]:
    """Running and halted rollouts whose devices are all in the caller's branches."""
    out = []
    query = select(Rollout).where(Rollout.state.in_(rollouts.ACTIVE)).order_by(Rollout.id.desc())
    for rollout in db.scalars(query.limit(50)):
        try:
            rollouts.get(db, rollout.id, visible)
        except NotFound:
            continue
        out.append(rollouts.rollout_out(db, rollout, with_members=False))
    return out


def ready_releases(db: Session) -> list[Release]:
    """Releases a rollout may use (ready, not retired), newest version last per board."""
    return releases.list_releases(db, status="ready")
