"""What ingest stores: batch receipts, readings, device events, gateway health, and the
cloud's downlink sequence numbers.

- ``batch_receipts``: one row per batch committed, UNIQUE on (gateway, key version,
  sequence number). It is the idempotency record: a batch already there is a duplicate.
  The key version is part of the key because a gateway's sequence numbers may start again
  under a new key version (re-provisioning gives a new version, and a wiped counter with it);
  retransmissions of one batch always carry the version it was sealed with.
- ``readings``: the time series, one row per reading, in the same transaction as its receipt;
  indexed by (device, metric, measured_at), and by (data_class, measured_at) for retention.
  The primary key is the reading's place in its batch plus ``measured_at``, so PostgreSQL may
  partition the table by time without another key.
- ``device_events``: what the event-processing layer consumes: presence enter/leave, event
  readings (button presses, commands), gateway health and reported loss. ``id`` increases
  with every insert; a device's events are inserted in the order they happened.
- ``gateway_health``: the latest health record of each gateway, with its loss counters.
- ``downlink_counters``: the cloud's next downlink sequence number per gateway (the Partial IV
  of its acknowledgements): it only goes up, incremented in the transaction that uses it.
- ``threshold_states``: per (device, threshold rule), normal or crossed, kept across batches
  (``thresholds``); locked and updated in the transaction of the batch whose readings moved it.

Times are UTC; SQLite hands them back without a zone (``utc()`` fixes that).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId

GATEWAY_LEN = 64  # cose.MAX_GATEWAY_ID_LEN
DEVICE_LEN = 64  # an address "AA:BB:CC:DD:EE:FF", or a gateway id for the gateway's events
METRIC_LEN = 64
UNIT_LEN = 32
RULE_LEN = 96  # thresholds.RULE_LEN: a metric, a direction and a number


def utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as an aware UTC datetime (SQLite returns naive UTC)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class BatchReceipt(Base):
    """One committed batch: the idempotency record of (gateway, key version, sequence)."""

    __tablename__ = "batch_receipts"
    __table_args__ = (UniqueConstraint("gateway", "key_version", "seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN))
    key_version: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    transport: Mapped[str] = mapped_column(String(8))  # "mqtt", "coap", "http"
    readings: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)
    envelope_bytes: Mapped[int] = mapped_column(Integer)


class Reading(Base):
    """One reading. ``value_kind`` says which value column holds it:

    ``int``, ``float``, ``bool``: ``value_num`` (an int beyond 2**53 also exactly, in
    decimal, in ``value_text``); ``text``: ``value_text`` (or, if it holds NUL, which
    PostgreSQL text cannot, its UTF-8 in ``value_bytes``); ``bytes``: ``value_bytes``;
    ``list``: ``value_bytes`` as CBOR; ``null``: none.
    """

    __tablename__ = "readings"
    __table_args__ = (
        Index("ix_readings_device_metric_time", "device", "metric", "measured_at"),
        Index("ix_readings_class_time", "data_class", "measured_at"),
    )

    receipt_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("batch_receipts.id"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # in the batch
    measured_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN))
    device: Mapped[str] = mapped_column(String(DEVICE_LEN))
    metric: Mapped[str] = mapped_column(String(METRIC_LEN))
    unit: Mapped[str] = mapped_column(String(UNIT_LEN))
    value_kind: Mapped[str] = mapped_column(String(8))
    value_num: Mapped[float | None] = mapped_column(Double)
    value_text: Mapped[str | None] = mapped_column(Text)
    value_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    time_estimated: Mapped[bool] = mapped_column(Boolean)  # from a gateway without a clock
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    data_class: Mapped[str] = mapped_column(String(16))


class DeviceEvent(Base):
    """An event for the event-processing layer (see the module docstring).

    ``kind``: ``enter``, ``leave`` (``data``: rssi, confidence), an event reading's metric
    (``button``, ``command``, ...; ``data``: value), ``health`` (``data``: the counters) or
    ``loss`` (``data``: how many batches the gateway dropped since its previous report) or
    ``threshold`` (``data``: metric, value, level, normal, direction, state; ``thresholds``)
    or ``kiosk_checkin``, ``kiosk_ticket``, ``kiosk_request`` (``data``: event_id, wearable,
    detail; ``kiosk_models``).
    ``device`` is the device's address, or the gateway id for the gateway's own events.
    """

    __tablename__ = "device_events"
    __table_args__ = (
        Index("ix_device_events_device_order", "device", "id"),
        Index("ix_device_events_class_time", "data_class", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    receipt_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("batch_receipts.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN))
    device: Mapped[str] = mapped_column(String(DEVICE_LEN))
    kind: Mapped[str] = mapped_column(String(METRIC_LEN))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    time_estimated: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    data_class: Mapped[str] = mapped_column(String(16))


class GatewayHealth(Base):
    """A gateway's latest health record (by the order its batches were sealed in)."""

    __tablename__ = "gateway_health"

    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN), primary_key=True)
    key_version: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)  # of the batch that carried it
    reported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    time_estimated: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    counters: Mapped[dict[str, Any]] = mapped_column(JSON)
    queue_depth: Mapped[int | None] = mapped_column(BigInteger)
    dropped_batches: Mapped[int | None] = mapped_column(BigInteger)
    dropped_bytes: Mapped[int | None] = mapped_column(BigInteger)
    lost_first: Mapped[int | None] = mapped_column(BigInteger)
    lost_last: Mapped[int | None] = mapped_column(BigInteger)


class DownlinkCounter(Base):
    """The next downlink sequence number the cloud uses for a gateway."""

    __tablename__ = "downlink_counters"

    gateway: Mapped[str] = mapped_column(String(GATEWAY_LEN), primary_key=True)
    next_seq: Mapped[int] = mapped_column(BigInteger)


class ThresholdState(Base):
    """A device's state under one threshold rule (``thresholds.State``): ``crossed`` since
    ``since`` at ``value`` (the reading that last changed it; None before any change), and
    ``last_at``, the time of the newest reading taken for it (older ones are ignored)."""

    __tablename__ = "threshold_states"

    device: Mapped[str] = mapped_column(String(DEVICE_LEN), primary_key=True)
    rule: Mapped[str] = mapped_column(String(RULE_LEN), primary_key=True)  # "temperature>30"
    metric: Mapped[str] = mapped_column(String(METRIC_LEN))
    crossed: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    value: Mapped[float | None] = mapped_column(Double)
    last_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
