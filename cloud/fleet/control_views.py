"""The configuration and command API: device shadows, commands to devices and cohorts.

Reading is for every signed-in role within its branches; changing configuration is for
cloud operations and branch managers; commands follow the catalogue's roles
(``cloud.fleet.commands``). Everything outside the caller's branches is 404, as if absent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiflask import APIBlueprint
from sqlalchemy import select

from cloud.access import ROLES, current_principal, require, visible_branches
from cloud.db import session
from cloud.fleet import commands, configs, targets
from cloud.fleet.control_models import Command, DeviceConfig
from cloud.fleet.control_schemas import (
    CatalogueOut,
    CommandIn,
    CommandQuery,
    CommandsOut,
    ConfigsOut,
    DeviceConfigOut,
    GroupOut,
    GroupSettingsIn,
    OneCommandOut,
    SettingsIn,
)
from cloud.fleet.models import Device
from cloud.identity.models import utcnow
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("fleet_control", __name__, tag="Fleet")

CONFIGURERS = ("operations", "branch_manager")


@bp.get("/api/fleet/devices/<int:device_id>/config")
@require(*ROLES)
@bp.output(DeviceConfigOut)
@bp.doc(
    summary="A device's desired configuration and the revision it reports running",
    security=SECURITY,
    responses=signed_in(404),
)
def get_config(device_id: int) -> dict[str, Any]:
    db = session()
    device = targets.one_device(db, device_id, visible_branches())
    return configs.config_out(device, db.get(DeviceConfig, device.id))


@bp.put("/api/fleet/devices/<int:device_id>/config")
@require(*CONFIGURERS)
@bp.input(SettingsIn, location="json")
@bp.output(DeviceConfigOut)
@bp.doc(
    summary="Set a gateway's desired configuration (the whole of it); pushed on its downlink",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def put_config(device_id: int, json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    device = targets.one_device(db, device_id, visible_branches())
    targets.controllable(device)
    principal = current_principal()
    (row,) = configs.set_desired(
        db, [device], json_data["settings"], actor=principal.actor, now=utcnow()
    )
    db.commit()
    return configs.config_out(device, row)


@bp.put("/api/fleet/config")
@require(*CONFIGURERS)
@bp.input(GroupSettingsIn, location="json")
@bp.output(ConfigsOut)
@bp.doc(
    summary="Set the desired configuration of every gateway of a branch or a cohort",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def put_group_config(json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    devices = targets.resolve(db, targets.Target.from_request(json_data), visible_branches())
    principal = current_principal()
    rows = configs.set_desired(
        db, devices, json_data["settings"], actor=principal.actor, now=utcnow()
    )
    db.commit()
    return {"configs": [configs.config_out(d, r) for d, r in zip(devices, rows, strict=True)]}


@bp.get("/api/fleet/commands/catalogue")
@require(*ROLES)
@bp.output(CatalogueOut)
@bp.doc(summary="The commands operators may send, and who may", security=SECURITY)
def catalogue() -> dict[str, Any]:
    items = [
        {"name": name, "summary": spec.summary, "roles": list(spec.roles)}
        for name, spec in sorted(commands.CATALOGUE.items())
        if not spec.internal
    ]
    return {"commands": items}


@bp.post("/api/fleet/commands")
@require(*ROLES)
@bp.input(CommandIn, location="json")
@bp.output(GroupOut, status_code=201)
@bp.doc(
    summary="Send a command to a device, a branch or a cohort: one command per device, "
    "each with its own acknowledgement",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def post_command(json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    principal = current_principal()
    group = commands.issue_to(
        db,
        targets.Target.from_request(json_data),
        json_data["name"],
        json_data["args"],
        role=principal.role,
        actor=principal.actor,
        visible=visible_branches(),
        now=utcnow(),
        timeout=dt.timedelta(seconds=json_data["timeout_s"]),
    )
    db.commit()
    return commands.group_out(group, commands.group_members(db, group.id))


@bp.get("/api/fleet/commands")
@require(*ROLES)
@bp.input(CommandQuery, location="query", arg_name="query")
@bp.output(CommandsOut)
@bp.doc(
    summary="Commands of the branches I may see, newest first; page with `after`",
    security=SECURITY,
    responses=signed_in(),
)
def list_commands(query: dict[str, Any]) -> dict[str, Any]:
    db = session()
    statement = select(Command).join(Device, Device.id == Command.device_id)
    visible = visible_branches()
    if visible is not None:
        statement = statement.where(Device.branch_id.in_(list(visible)))
    if "device" in query:
        statement = statement.where(Command.device_id == query["device"])
    if "group" in query:
        statement = statement.where(Command.group_id == query["group"])
    if "status" in query:
        statement = statement.where(Command.status == query["status"])
    if query["after"]:
        statement = statement.where(Command.id < query["after"])
    limit = query["limit"]
    rows = db.scalars(statement.order_by(Command.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "commands": [commands.command_out(c) for c in page],
        "next": page[-1].id if more else None,
    }


@bp.get("/api/fleet/commands/<int:command_id>")
@require(*ROLES)
@bp.output(OneCommandOut)
@bp.doc(summary="One command and its outcome", security=SECURITY, responses=signed_in(404))
def get_command(command_id: int) -> dict[str, Any]:
    return commands.command_out(commands.get_command(session(), command_id, visible_branches()))


@bp.post("/api/fleet/commands/<int:command_id>/cancel")
@require(*ROLES)
@bp.output(OneCommandOut)
@bp.doc(
    summary="Cancel a command that is still open",
    security=SECURITY,
    responses=signed_in(404, 409),
)
def cancel_command(command_id: int) -> dict[str, Any]:
    db = session()
    principal = current_principal()
    command = commands.get_command(db, command_id, visible_branches())
    commands.check_command(command.name, {}, principal.role)
    commands.cancel(db, command, actor=principal.actor, now=utcnow())
    db.commit()
    return commands.command_out(command)


@bp.get("/api/fleet/command-groups/<int:group_id>")
@require(*ROLES)
@bp.output(GroupOut)
@bp.doc(
    summary="A command group: every member's command and a count per status",
    security=SECURITY,
    responses=signed_in(404),
)
def get_group(group_id: int) -> dict[str, Any]:
    db = session()
    group = commands.get_group(db, group_id, visible_branches())
    return commands.group_out(group, commands.group_members(db, group.id))
