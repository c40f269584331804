"""Request and response schemas of the fleet inventory API (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import DateTime, Integer, List, Nested, String
from apiflask.validators import OneOf, Range, Regexp

from cloud.fleet.models import DEVICE_KINDS

MAX_ID = 2**31 - 1  # Integer primary keys: 32-bit on PostgreSQL
MAX_PAGE = 500
DEFAULT_PAGE = 100


class InventoryQuery(Schema):
    branch = Integer(validate=Range(1, MAX_ID), metadata={"description": "a branch id"})
    kind = String(validate=OneOf(DEVICE_KINDS))
    status = String(validate=Regexp(r"^[a-z_]{1,16}$"))
    q = String(
        validate=Regexp(r"^[\x20-\x7e]{1,64}$"),
        metadata={"description": "a substring of the uid or name (case-insensitive)"},
    )
    after = Integer(
        validate=Range(0, MAX_ID), metadata={"description": "the `next` of the previous page"}
    )
    limit = Integer(load_default=DEFAULT_PAGE, validate=Range(1, MAX_PAGE))


class GatewayHealthOut(Schema):
    reported_at = DateTime(required=True)
    received_at = DateTime(required=True)
    queue_depth = Integer(allow_none=True, required=True)
    dropped_batches = Integer(allow_none=True, required=True)
    dropped_bytes = Integer(allow_none=True, required=True)
    battery = Integer(allow_none=True, required=True)
    rssi = Integer(allow_none=True, required=True)
    free_heap = Integer(allow_none=True, required=True)
    free_disk = Integer(allow_none=True, required=True)


class InventoryItemOut(Schema):
    id = Integer(required=True)
    uid = String(required=True)
    kind = String(required=True)
    branch_id = Integer(required=True)
    branch_code = String(required=True)
    name = String(required=True)
    model = String(required=True)
    status = String(required=True)
    firmware_version = String(required=True)
    last_seen_at = DateTime(allow_none=True, required=True)
    uplink = String(
        allow_none=True,
        required=True,
        metadata={"description": "the transport of its newest batch: mqtt, coap or http"},
    )
    health = Nested(
        GatewayHealthOut,
        allow_none=True,
        required=True,
        metadata={"description": "the latest health record from ingest; null if none"},
    )
    open_alerts = Integer(required=True, metadata={"description": "alerts open on the device"})


class InventoryOut(Schema):
    devices = List(Nested(InventoryItemOut), required=True)
    next = Integer(
        allow_none=True, required=True, metadata={"description": "`after` for the next page"}
    )
