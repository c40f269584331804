"""Request and response schemas of device configuration and commands (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Dict, Integer, List, Nested, Raw, String
from apiflask.validators import Length, OneOf, Range
from marshmallow import ValidationError, validates_schema

from cloud.fleet.commands import CATALOGUE, MAX_TIMEOUT
from cloud.fleet.control_models import COMMAND_STATUSES
from cloud.fleet.rollout_plan import ROLLOUT_STATES
from cloud.fleet.schemas import DEFAULT_PAGE, MAX_ID, MAX_PAGE
from cloud.fleet.targets import MAX_TARGETS
from cloud.identity.models import ENROLLABLE_KINDS

SETTINGS_DOC = {
    "description": "the gateway's whole configuration: filter settings (names as in "
    "bankiot_core.filterconfig) and gateway settings (bankiot_core.gatewayconfig)"
}


class SettingsIn(Schema):
    settings = Dict(keys=String(), values=Raw(), required=True, metadata=SETTINGS_DOC)


class TargetFields(Schema):
    branch = Integer(validate=Range(1, MAX_ID), metadata={"description": "every member of it"})
    devices = List(
        Integer(validate=Range(1, MAX_ID)),
        validate=Length(1, MAX_TARGETS),
        metadata={"description": "these devices (a cohort)"},
    )
    kind = String(validate=OneOf(ENROLLABLE_KINDS), metadata={"description": "only this kind"})

    @validates_schema
    def one_target(self, data: dict, **_: object) -> None:
        if ("branch" in data) == ("devices" in data):
            raise ValidationError("give either branch or devices")


class GroupSettingsIn(TargetFields):
    settings = Dict(keys=String(), values=Raw(), required=True, metadata=SETTINGS_DOC)


class CommandIn(TargetFields):
    name = String(
        required=True,
        validate=OneOf(sorted(n for n, s in CATALOGUE.items() if not s.internal)),
    )
    args = Dict(keys=String(), values=Raw(), load_default=dict)
    timeout_s = Integer(
        load_default=600,
        validate=Range(1, int(MAX_TIMEOUT.total_seconds())),
        metadata={"description": "seconds until an unanswered command times out"},
    )


class CommandQuery(Schema):
    device = Integer(validate=Range(1, MAX_ID))
    group = Integer(validate=Range(1, 2**63 - 1))
    status = String(validate=OneOf(COMMAND_STATUSES))
    after = Integer(load_default=0, validate=Range(0, 2**63 - 1))
    limit = Integer(load_default=DEFAULT_PAGE, validate=Range(1, MAX_PAGE))


class ConfigOut(Schema):
    device_id = Integer(required=True)
    revision = Integer(required=True, allow_none=True)
    settings = Dict(keys=String(), values=Raw(), required=True)
    updated_at = DateTime(required=True, allow_none=True)
    updated_by = String(required=True, allow_none=True)
    sent_revision = Integer(required=True, allow_none=True)
    sent_at = DateTime(required=True, allow_none=True)
    reported_revision = Integer(required=True, allow_none=True)
    reported_at = DateTime(required=True, allow_none=True)
    in_sync = Boolean(required=True)


class DeviceConfigOut(ConfigOut):
    """One device's configuration as a response of its own (apispec registers a schema
    class used both nested and as a whole response twice: a subclass keeps them apart)."""


class ConfigsOut(Schema):
    configs = List(Nested(ConfigOut), required=True)


class CommandOut(Schema):
    id = Integer(required=True)
    group_id = Integer(required=True, allow_none=True)
    device_id = Integer(required=True)
    name = String(required=True)
    args = Dict(keys=String(), values=Raw(), required=True)
    status = String(required=True)
    created_by = String(required=True)
    created_at = DateTime(required=True)
    deadline_at = DateTime(required=True)
    sent_at = DateTime(required=True, allow_none=True)
    send_count = Integer(required=True)
    finished_at = DateTime(required=True, allow_none=True)
    detail = String(required=True)


class OneCommandOut(CommandOut):
    """One command as a response of its own (see ``DeviceConfigOut``)."""


class CommandsOut(Schema):
    commands = List(Nested(CommandOut), required=True)
    next = Integer(required=True, allow_none=True)


class GroupOut(Schema):
    id = Integer(required=True)
    name = String(required=True)
    args = Dict(keys=String(), values=Raw(), required=True)
    target = Dict(keys=String(), values=Raw(), required=True)
    created_by = String(required=True)
    created_at = DateTime(required=True)
    deadline_at = DateTime(required=True)
    counts = Dict(keys=String(), values=Integer(), required=True)
    commands = List(Nested(CommandOut), required=True)


class CatalogueItemOut(Schema):
    name = String(required=True)
    summary = String(required=True)
    roles = List(String(), required=True)


class CatalogueOut(Schema):
    commands = List(Nested(CatalogueItemOut), required=True)


class RolloutIn(TargetFields):
    release_id = Integer(required=True, validate=Range(1, MAX_ID))
    waves = List(
        Integer(validate=Range(1, 100)),
        validate=Length(1, 10),
        metadata={"description": "cumulative percentages of the devices, ending at 100"},
    )
    health_minutes = Integer(validate=Range(1, 7 * 24 * 60))
    failure_percent = Integer(validate=Range(0, 100))
    min_failures = Integer(validate=Range(1, 10000))
    max_starts_per_minute = Integer(validate=Range(1, 10000))


class RolloutQuery(Schema):
    state = String(validate=OneOf(ROLLOUT_STATES))


class RolloutMemberOut(Schema):
    device_id = Integer(required=True)
    wave = Integer(required=True)
    state = String(required=True)
    from_version = String(required=True)
    command_id = Integer(required=True, allow_none=True)
    started_at = DateTime(required=True, allow_none=True)
    finished_at = DateTime(required=True, allow_none=True)
    detail = String(required=True)


class RolloutOut(Schema):
    id = Integer(required=True)
    release_id = Integer(required=True)
    version = String(required=True)
    board = String(required=True)
    target = Dict(keys=String(), values=Raw(), required=True)
    settings = Dict(keys=String(), values=Raw(), required=True)
    state = String(required=True)
    reason = String(required=True)
    created_by = String(required=True)
    created_at = DateTime(required=True)
    updated_at = DateTime(required=True)
    finished_at = DateTime(required=True, allow_none=True)
    counts = Dict(keys=String(), values=Integer(), required=True)
    members = List(Nested(RolloutMemberOut))


class RolloutsOut(Schema):
    rollouts = List(Nested(RolloutOut), required=True)
