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

The gateway's own records: a health record is a ``health`` row and a ``health`` event; a
command's result (``batch.CommandResult``) a ``results`` row and a ``command_result`` event;
what the gateway runs (``batch.Running``) a ``running`` event, and the batch's latest one
is ``Rows.running``; a customer's action at the gateway's kiosk (``batch.KioskEvent``) a
``kiosk`` row (``kiosk_models``) and a ``kiosk_checkin`` / ``kiosk_ticket`` / ``kiosk_request``
event (``data``: event_id, wearable, detail), both of class ``presence`` when the action names
a wearable (where a customer was) and ``interaction`` otherwise (a walk-in's ticket); of
records repeating an event number in one batch, the first counts. Their text (detail,
software version) has NUL replaced, like event data. A pairing code a kiosk showed
(``KIOSK_PAIRING``) is a secret for ten minutes: its ``kiosk`` row and ``kiosk_pairing``
event carry an empty detail, and the code goes only into ``Rows.pairing`` as its keyed
digest (``cloud.customers.codes.digest``), for the store to keep as a pairing offer
(``cloud.customers``); a detail that is no code, or a batch handled without the digest key,
makes no offer.

Data classes come from ``classify`` (by metric); ``mark_wearables`` then makes every reading
of a registered wearable ``health`` (``retention``). Readings of a metric that has thresholds
(``thresholds``) are also listed in ``Rows.watched``, for the store to compare with the
devices' states; without thresholds nothing is listed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import cbor2

from bankiot_core.address import mac_to_str
from bankiot_core.batch import (
    CLOCK_UNIX_MS,
    KIOSK_KINDS,
    KIOSK_PAIRING,
    STATUS_NAMES,
    Batch,
    BatchReading,
    CommandResult,
    Health,
    KioskEvent,
    Running,
)
from bankiot_core.decoded import EVENT_UNIT
from bankiot_core.presence import PresenceEvent
from cloud.customers import codes
from cloud.ingest import retention
from cloud.ingest.models import METRIC_LEN, UNIT_LEN
from cloud.ingest.thresholds import Thresholds

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_AHEAD = dt.timedelta(days=1)
_EXACT_FLOAT_INT = 2**53
# Health counters copied into their own columns (the rest stay in the JSON).
LOSS_COUNTERS = ("depth", "dropped_batches", "dropped_bytes", "lost_first", "lost_last")
_BIGINT = 2**63
# The event kinds of kiosk records, by ``KIOSK_*`` code: "kiosk_checkin", ...
KIOSK_EVENT_KINDS = tuple("kiosk_" + kind for kind in KIOSK_KINDS)


class UnstorableBatch(ValueError):
    """An authentic batch holding something the schema cannot store (a metric name too long,
    a NUL in a name); the message says what."""


@dataclass
class Rows:
    """The rows of one batch, ready for insertion (``receipt_id`` filled in by the store)."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)  # in batch order
    # Command outcomes, in batch order: gateway, at, command_id, status (a name), detail.
    results: list[dict[str, Any]] = field(default_factory=list)
    # The batch's latest running record: software, config_revision (or None), at.
    running: dict[str, Any] | None = None
    # The readings (the same dicts) of metrics that have thresholds, in batch order.
    watched: list[dict[str, Any]] = field(default_factory=list)
    # The addresses of the devices whose readings the batch holds.
    devices: set[str] = field(default_factory=set)
    # Kiosk events, in batch order: the columns of ``kiosk_events`` but the receipt,
    # device and branch (the store knows those).
    kiosk: list[dict[str, Any]] = field(default_factory=list)
    # Pairing codes kiosks showed: gateway, event_id, code_hash (HMAC hex), occurred_at.
    pairing: list[dict[str, Any]] = field(default_factory=list)


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


_AT = {
    BatchReading: 1,
    PresenceEvent: 2,
    Health: 0,
    CommandResult: 0,
    Running: 0,
    KioskEvent: 0,
}


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
    thresholds: Thresholds | None = None,
    code_key: bytes | None = None,
) -> Rows:
    """The rows of ``batch`` from ``gateway``, received at ``received_at`` (aware, UTC);
    readings of a metric ``thresholds`` has rules for are also in ``Rows.watched``;
    ``code_key``: the pairing codes' digest key (None: pairing codes make no offer).

    Raises ``UnstorableBatch`` for names the schema cannot hold.
    """
    watched_metrics = thresholds.by_metric if thresholds else {}
    when, estimated = _timer(batch, received_at)
    common = {"gateway": gateway, "received_at": received_at, "time_estimated": estimated}
    rows = Rows()
    devices: dict[bytes, str] = {}  # a batch holds few devices and metrics, many readings
    kinds: dict[tuple[str, str], tuple[str, bool]] = {}  # (class, watched)
    kiosk_ids: set[int] = set()
    for record in batch.records:
        if isinstance(record, BatchReading):
            metric, unit = record.metric, record.unit
            kind = kinds.get((metric, unit))
            if kind is None:
                _name(metric, METRIC_LEN, "metric")
                _name(unit, UNIT_LEN, "unit")
                kind = kinds[(metric, unit)] = (classify(metric, unit), metric in watched_metrics)
            data_class, watched = kind
            device = devices.get(record.address)
            if device is None:
                device = devices[record.address] = mac_to_str(record.address)
                rows.devices.add(device)
            at = when(record.at_ms)
            row = {
                **common,
                "position": len(rows.readings),
                "measured_at": at,
                "device": device,
                "metric": metric,
                "unit": unit,
                "data_class": data_class,
                **value_columns(record.value),
            }
            rows.readings.append(row)
            if watched:
                rows.watched.append(row)
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
        elif isinstance(record, CommandResult):
            at = when(record.at_ms)
            status, detail = STATUS_NAMES[record.status], jsonable(record.detail)
            rows.results.append(
                {
                    "gateway": gateway,
                    "at": at,
                    "command_id": record.id,
                    "status": status,
                    "detail": detail,
                }
            )
            rows.events.append(
                {
                    **common,
                    "device": gateway,
                    "kind": "command_result",
                    "occurred_at": at,
                    "data": {"command_id": record.id, "status": status, "detail": detail},
                    "data_class": retention.DEVICE,
                }
            )
        elif isinstance(record, Running):
            at = when(record.at_ms)
            software = jsonable(record.software)
            if rows.running is None or at >= rows.running["at"]:  # the latest; ties: last
                rows.running = {
                    "software": software,
                    "config_revision": record.config_revision,
                    "at": at,
                }
            rows.events.append(
                {
                    **common,
                    "device": gateway,
                    "kind": "running",
                    "occurred_at": at,
                    "data": {"software": software, "config_revision": record.config_revision},
                    "data_class": retention.DEVICE,
                }
            )
        elif isinstance(record, KioskEvent):
            if record.id not in kiosk_ids:  # a number repeated in one batch: the first counts
                kiosk_ids.add(record.id)
                _kiosk_rows(rows, record, when(record.at_ms), common, code_key)
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


def _kiosk_rows(
    rows: Rows,
    record: KioskEvent,
    at: dt.datetime,
    common: dict[str, Any],
    code_key: bytes | None,
) -> None:
    """Add a kiosk record's ``kiosk`` row and its event to ``rows`` (module docstring)."""
    wearable = None if record.wearable is None else mac_to_str(record.wearable)
    data_class = retention.INTERACTION if wearable is None else retention.PRESENCE
    detail = jsonable(record.detail)
    if record.kind == KIOSK_PAIRING:
        if code_key is not None:
            _pairing_offer(rows, record, at, common["gateway"], code_key)
        detail = ""  # the code is a secret while it lives: kept only as its digest
    rows.kiosk.append(
        {
            "gateway": common["gateway"],
            "event_id": record.id,
            "kind": KIOSK_KINDS[record.kind],
            "wearable": wearable,
            "detail": detail,
            "occurred_at": at,
            "time_estimated": common["time_estimated"],
            "received_at": common["received_at"],
            "data_class": data_class,
        }
    )
    rows.events.append(
        {
            **common,
            "device": common["gateway"],
            "kind": KIOSK_EVENT_KINDS[record.kind],
            "occurred_at": at,
            "data": {"event_id": record.id, "wearable": wearable, "detail": detail},
            "data_class": data_class,
        }
    )


def _pairing_offer(
    rows: Rows, record: KioskEvent, at: dt.datetime, gateway: str, key: bytes
) -> None:
    try:
        code = codes.normalize(record.detail)
    except codes.CodeFormatError:
        return  # not a code a customer could type: no offer
    rows.pairing.append(
        {
            "gateway": gateway,
            "event_id": record.id,
            "code_hash": codes.digest(code, key),
            "occurred_at": at,
        }
    )


def mark_wearables(rows: Rows, wearables: Collection[str]) -> None:
    """Make ``health`` the class of every reading of a device in ``wearables`` (addresses of
    registered wearables), whatever its metric, and of the events made from them; presence
    events keep their class (where someone was, not how they are)."""
    if not wearables:
        return
    for row in rows.readings:
        if row["device"] in wearables:
            row["data_class"] = retention.HEALTH
    for row in rows.events:
        if row["device"] in wearables and row["data_class"] != retention.PRESENCE:
            row["data_class"] = retention.HEALTH
