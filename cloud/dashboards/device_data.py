"""What the device page shows: the device's inventory row, its health over time (its
``health`` events: ingest keeps every health record as one, and the latest in
``gateway_health``), readings of the sensors it hears, and its recent commands.

Readings of customers' wearables (classes ``health`` and ``presence``) are personal data
and are left out: this page is about the device, not about who walked past it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.dashboards.charts import Series
from cloud.fleet import commands
from cloud.fleet.control_models import Command
from cloud.fleet.inventory import Filters, list_devices
from cloud.ingest import retention
from cloud.ingest.models import DeviceEvent, Reading, utc

# Health counters worth a chart each, with their titles (others stay in the table).
HEALTH_CHARTS = (
    ("depth", "Queue depth (batches)"),
    ("free_heap", "Free memory (bytes)"),
    ("rssi", "Signal (dBm)"),
    ("battery", "Battery (%)"),
)
SHOWN_CLASSES = (retention.ENVIRONMENT, retention.DEVICE)
MAX_POINTS = 2000


def inventory_row(db: Session, device_id: int, visible: Iterable[int] | None) -> dict | None:
    """The inventory listing's row of the device (None if not visible)."""
    page = list_devices(db, Filters(visible=visible, after=device_id - 1, limit=1))["devices"]
    return page[0] if page and page[0]["id"] == device_id else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def health_history(
    db: Session, uid: str, since: dt.datetime, limit: int = 500
) -> dict[str, list[tuple[dt.datetime, float]]]:
    """Counter name -> (reported at, value) of the device's health records since ``since``
    (oldest first), for the counters of ``HEALTH_CHARTS`` it reports."""
    rows = db.execute(
        select(DeviceEvent.occurred_at, DeviceEvent.data)
        .where(
            DeviceEvent.device == uid,
            DeviceEvent.kind == "health",
            DeviceEvent.occurred_at >= since.astimezone(dt.UTC),
        )
        .order_by(DeviceEvent.id.desc())
        .limit(limit)
    ).all()
    out: dict[str, list[tuple[dt.datetime, float]]] = {}
    for at, data in sorted(rows, key=lambda row: utc(row[0])):
        counters = data.get("counters") if isinstance(data, dict) else None
        if not isinstance(counters, dict):
            continue
        for name, _title in HEALTH_CHARTS:
            value = _number(counters.get(name))
            if value is not None:
                out.setdefault(name, []).append((utc(at), value))
    return out


def health_charts(history: dict[str, list[tuple[dt.datetime, float]]]) -> list[tuple[str, Series]]:
    """(title, series) for each counter with data, in ``HEALTH_CHARTS`` order."""
    return [
        (title, Series(title, history[name])) for name, title in HEALTH_CHARTS if name in history
    ]


def sensor_readings(db: Session, uid: str, since: dt.datetime) -> dict[str, list[Series]]:
    """Metric (with unit) -> one series per sensor, of the numeric readings the gateway
    ``uid`` stored since ``since`` (the newest ``MAX_POINTS``), personal classes left out."""
    rows = db.execute(
        select(Reading.device, Reading.metric, Reading.unit, Reading.measured_at, Reading.value_num)
        .where(
            Reading.gateway == uid,
            Reading.measured_at >= since.astimezone(dt.UTC),
            Reading.value_kind.in_(("int", "float")),
            Reading.data_class.in_(SHOWN_CLASSES),
        )
        .order_by(Reading.measured_at.desc())
        .limit(MAX_POINTS)
    ).all()
    grouped: dict[str, dict[str, list[tuple[dt.datetime, float]]]] = {}
    for device, metric, unit, at, value in rows:
        if value is None:
            continue
        title = "%s (%s)" % (metric, unit) if unit else metric
        grouped.setdefault(title, {}).setdefault(device, []).append((utc(at), float(value)))
    return {
        title: [Series(device, sorted(points)) for device, points in sorted(by_device.items())]
        for title, by_device in sorted(grouped.items())
    }


def recent_commands(db: Session, device_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The device's newest commands, as the API shows them."""
    rows = db.scalars(
        select(Command)
        .where(Command.device_id == device_id)
        .order_by(Command.id.desc())
        .limit(limit)
    )
    return [commands.command_out(command) for command in rows]


def command_choices(role: str) -> list[tuple[str, str]]:
    """(name, summary) of the catalogue's commands ``role`` may send."""
    return [
        (name, spec.summary)
        for name, spec in sorted(commands.CATALOGUE.items())
        if not spec.internal and role in spec.roles
    ]
