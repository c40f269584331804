"""Request and response schemas of the kiosk events API (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Integer, List, Nested, String
from apiflask.validators import OneOf, Range

from bankiot_core import batch
from cloud.fleet.schemas import DEFAULT_PAGE, MAX_ID, MAX_PAGE

MAX_ROW_ID = 2**63 - 1  # kiosk_events.id is a 64-bit key on PostgreSQL


class KioskEventsQuery(Schema):
    branch = Integer(validate=Range(1, MAX_ID), metadata={"description": "a branch id"})
    device = Integer(validate=Range(1, MAX_ID), metadata={"description": "the kiosk's device id"})
    kind = String(
        validate=OneOf(batch.KIOSK_KINDS),
        metadata={"description": "checkin, ticket, request or pairing"},
    )
    since = DateTime(
        metadata={
            "description": "only events that happened at or after this time (UTC if "
            "no offset is given)"
        }
    )
    after = Integer(
        validate=Range(0, MAX_ROW_ID), metadata={"description": "the `next` of the previous page"}
    )
    limit = Integer(load_default=DEFAULT_PAGE, validate=Range(1, MAX_PAGE))


class KioskEventOut(Schema):
    id = Integer(required=True)
    branch_id = Integer(
        allow_none=True,
        required=True,
        metadata={
            "description": "the kiosk's branch when the event arrived; null if the "
            "gateway is not in the inventory"
        },
    )
    branch_code = String(allow_none=True, required=True)
    device_id = Integer(allow_none=True, required=True, metadata={"description": "the kiosk"})
    gateway = String(required=True, metadata={"description": "the kiosk's gateway id"})
    event_id = Integer(
        required=True,
        validate=Range(0, batch.MAX_ID),
        metadata={"description": "the kiosk's number for the event, unique per kiosk"},
    )
    kind = String(required=True, validate=OneOf(batch.KIOSK_KINDS))
    with_wearable = Boolean(
        required=True, metadata={"description": "whether a customer's wearable was named"}
    )
    wearable = String(
        allow_none=True,
        required=True,
        metadata={
            "description": "the wearable's identity address (AA:BB:CC:DD:EE:FF); shown to "
            "branch managers only, null for other roles and for walk-ins"
        },
    )
    detail = String(
        required=True, metadata={"description": "the ticket (such as A042) or the service asked"}
    )
    occurred_at = DateTime(required=True)
    time_estimated = Boolean(
        required=True,
        metadata={"description": "the kiosk had no clock: the time is the cloud's estimate"},
    )
    received_at = DateTime(required=True)


class KioskEventsOut(Schema):
    events = List(Nested(KioskEventOut), required=True)
    next = Integer(
        allow_none=True, required=True, metadata={"description": "`after` for the next page"}
    )
