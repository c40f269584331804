"""From a decoded batch to rows: times, value columns, data classes, events. No I/O.

Time base (``batch``'s ``clock``):

- Unix clock (1): a record's ``at_ms`` is milliseconds since the epoch, UTC; stored as is.
  A gateway whose clock is plainly wrong (before 2000, or more than a day ahead of the
  cloud) is treated as having no clock (below), rather than losing or misplacing its data.
- Tick clock (0): ``at_ms`` only orders and spaces one boot's records. The newest record of
  the batch is taken to have happened when the cloud received the batch, and every other
  record that many milliseconds earlier: ``received_at - (newest - at_ms)``. That is exact
  for a batch sent at once and late by the time a batch waited in the gateway's queue (an
  outage). Such times are marked ``time_estimated``.

Values follow ``models.Reading``: a number in ``value_num``, text in ``value_text``, bytes
in ``value_bytes``, a list as CBOR in ``value_bytes``. Event data is made JSON-safe (bytes as
hex, NaN and infinities as text, no NUL characters).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from bankiot_core.address import mac_to_str
from bankiot_core.batch import CLOCK_UNIX_MS, Batch, BatchReading, Health
from bankiot_core.decoded import EVENT_UNIT
from bankiot_core.presence import PresenceEvent
from cloud.ingest import retention
from cloud.ingest.models import METRIC_LEN, UNIT_LEN

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_AHEAD = dt.timedelta(days=1)
_EXACT_FLOAT_INT = 2**53
# Health counters copied into their own columns (the rest stay in the JSON).
LOSS_COUNTERS = ("depth", "dropped_batches", "dropped_bytes", "lost_first", "lost_last")
_BIGINT = 2**63


class UnstorableBatch(ValueError):
    """An authentic batch holding something the schema cannot store (a metric name too long,
    a NUL in a name); the message says what."""


@dataclass
class Rows:
    """The rows of one batch, ready for insertion (``receipt_id`` filled in by the store)."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)  # in batch order


def _timer(batch: Batch, received_at: dt.datetime) -> tuple[Callable[[int], dt.datetime], bool]:
    """A function from ``at_ms`` to a UTC time, and whether those times are estimated."""
    times = [record[_AT[type(record)]] for record in batch.records]
    if batch.clock == CLOCK_UNIX_MS and times:
        try:
            first = EPOCH + dt.timedelta(milliseconds=min(times))
            last = EPOCH + dt.timedelta(milliseconds=max(times))
        except OverflowError:
            first = last = None
        if (
            first is not None
            and last is not None
            and EARLIEST <= first <= last <= (received_at + MAX_AHEAD)
        ):
            return (lambda at: EPOCH + dt.timedelta(milliseconds=at)), False
    newest = max(times) if times else 0
    return (lambda at: received_at - dt.timedelta(milliseconds=newest - at)), True


_AT = {BatchReading: 1, PresenceEvent: 2, Health: 0}


def _name(text: str, limit: int, what: str) -> str:
    if len(text) > limit or "\x00" in text:
        raise UnstorableBatch(
            "%s %r is longer than %d characters or holds NUL" % (what, text[:80], limit)
        )
    return text


def value_columns(value: Any) -> dict[str, Any]:
    """The value columns of a reading (see ``models.Reading``)."""
    columns: dict[str, Any] = {"value_num": None, "value_text": None, "value_bytes": None}
    if value is None:
        columns["value_kind"] = "null"
    elif isinstance(value, bool):
        columns.update(value_kind="bool", value_num=1.0 if value else 0.0)
    elif isinstance(value, int):
        columns.update(value_kind="int", value_num=float(value))
        if abs(value) > _EXACT_FLOAT_INT:
            columns["value_text"] = str(value)
    elif isinstance(value, float):
        columns.update(value_kind="float", value_num=value)
    elif isinstance(value, str):
        columns["value_kind"] = "text"
        if "\x00" in value:
            columns["value_bytes"] = value.encode("utf-8", "surrogatepass")
        else:
            columns["value_text"] = value
    elif isinstance(value, bytes):
        columns.update(value_kind="bytes", value_bytes=value)
    else:  # a list of scalars
        columns.update(value_kind="list", value_bytes=cbor2.dumps(list(value), canonical=True))
    return columns


def jsonable(value: Any) -> Any:
    """``value`` in a form every database's JSON column takes."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {jsonable(str(k)): jsonable(v) for k, v in value.items()}
    return value


def _bigint(value: Any) -> int | None:
    return value if type(value) is int and -_BIGINT <= value < _BIGINT else None


def batch_rows(
    batch: Batch,
    gateway: str,
    received_at: dt.datetime,
    classify: Callable[[str, str], str] = retention.classify,
) -> Rows:
    """The rows of ``batch`` from ``gateway``, received at ``received_at`` (aware, UTC).

    Raises ``UnstorableBatch`` for names the schema cannot hold.
    """
    when, estimated = _timer(batch, received_at)
    common = {"gateway": gateway, "received_at": received_at, "time_estimated": estimated}
    rows = Rows()
    devices: dict[bytes, str] = {}  # a batch holds few devices and metrics, many readings
    kinds: dict[tuple[str, str], str] = {}
    for record in batch.records:
        if isinstance(record, BatchReading):
            metric, unit = record.metric, record.unit
            data_class = kinds.get((metric, unit))
            if data_class is None:
                _name(metric, METRIC_LEN, "metric")
                _name(unit, UNIT_LEN, "unit")
                data_class = kinds[(metric, unit)] = classify(metric, unit)
            device = devices.get(record.address)
            if device is None:
                device = devices[record.address] = mac_to_str(record.address)
            at = when(record.at_ms)
            rows.readings.append(
                {
                    **common,
                    "position": len(rows.readings),
                    "measured_at": at,
                    "device": device,
                    "metric": metric,
                    "unit": unit,
                    "data_class": data_class,
                    **value_columns(record.value),
                }
            )
            if unit == EVENT_UNIT:
                rows.events.append(
                    {
                        **common,
                        "device": device,
                        "kind": metric,
                        "occurred_at": at,
                        "data": {"value": jsonable(record.value)},
                        "data_class": data_class,
                    }
                )
        elif isinstance(record, PresenceEvent):
            rows.events.append(
                {
                    **common,
                    "device": mac_to_str(record.address),
                    "kind": record.kind,
                    "occurred_at": when(record.at_ms),
                    "data": {"rssi": record.rssi, "confidence": record.confidence},
                    "data_class": retention.PRESENCE,
                }
            )
        else:  # Health
            counters = jsonable(record.counters)
            at = when(record.at_ms)
            rows.health.append(
                {
                    "reported_at": at,
                    "time_estimated": estimated,
                    "received_at": received_at,
                    "counters": counters,
                    "queue_depth": _bigint(record.counters.get("depth")),
                    **{name: _bigint(record.counters.get(name)) for name in LOSS_COUNTERS[1:]},
                }
            )
            rows.events.append(
                {
                    **common,
                    "device": gateway,
                    "kind": "health",
                    "occurred_at": at,
                    "data": {"counters": counters},
                    "data_class": retention.DEVICE,
                }
            )
    return rows
