"""Request and response schemas of the fleet alerts API (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import DateTime, Dict, Integer, List, Nested, Raw, String
from apiflask.validators import OneOf, Range

from cloud.fleet.alert_rules import KINDS, SEVERITIES
from cloud.fleet.alerts import STATES
from cloud.fleet.schemas import DEFAULT_PAGE, MAX_ID, MAX_PAGE

STATE_FILTERS = (*STATES, "all")


class AlertsQuery(Schema):
    state = String(
        load_default="open",
        validate=OneOf(STATE_FILTERS),
        metadata={"description": "open (default), resolved or all"},
    )
    kind = String(validate=OneOf(tuple(KINDS)))
    branch = Integer(validate=Range(1, MAX_ID), metadata={"description": "a branch id"})
    device = Integer(validate=Range(1, MAX_ID), metadata={"description": "a device id"})
    after = Integer(
        validate=Range(0, MAX_ID), metadata={"description": "the `next` of the previous page"}
    )
    limit = Integer(load_default=DEFAULT_PAGE, validate=Range(1, MAX_PAGE))


class AlertOut(Schema):
    id = Integer(required=True)
    device_id = Integer(required=True)
    device_uid = String(required=True)
    device_kind = String(required=True)
    branch_id = Integer(required=True)
    branch_code = String(required=True)
    kind = String(required=True, validate=OneOf(tuple(KINDS)))
    severity = String(required=True, validate=OneOf(SEVERITIES))
    state = String(required=True, validate=OneOf(STATES))
    opened_at = DateTime(required=True)
    resolved_at = DateTime(allow_none=True, required=True)
    detail = Dict(
        keys=String(),
        values=Raw(allow_none=True),
        required=True,
        metadata={"description": "the figures that explain the alert (see docs/operations.md)"},
    )
    acknowledged_by = String(allow_none=True, required=True)
    acknowledged_at = DateTime(allow_none=True, required=True)


class AlertsOut(Schema):
    alerts = List(Nested(AlertOut), required=True)
    next = Integer(
        allow_none=True, required=True, metadata={"description": "`after` for the next page"}
    )


class AcknowledgedOut(AlertOut):
    """The alert after an acknowledgement (its own class: apispec names a schema once, and
    the listing, whose path sorts first, already names ``AlertOut``)."""
