"""Commands to gateways: issue, cancel, time out, and take the devices' reports.

A command's life: ``pending`` (issued, not yet on the downlink) -> ``sent`` (sealed and
published; resent with back-off until the device answers) -> ``accepted`` (the device said it
started: an update downloading) -> ``done`` / ``failed`` / ``refused`` (the device's report)
or ``timed_out`` (no final report before the deadline) or ``cancelled`` (by an operator while
still open). Final states never change again: a late report of a timed-out command is kept in
the audit log, not on the command.

The catalogue says which commands exist, which arguments each takes and which roles may send
it. Destructive ones (factory reset, key rotation) are for cloud operations only; branch
managers and technicians may reboot, rescan and collect diagnostics in their branches.
Software updates (``update``) are issued by rollouts, never directly.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud import audit
from cloud.fleet.control_models import COMMAND_FINAL, COMMAND_OPEN, Command, CommandGroup
from cloud.fleet.errors import Conflict, Invalid, NotAllowed, NotFound
from cloud.fleet.models import Device
from cloud.fleet.targets import Target, resolve
from cloud.identity.models import utc

log = logging.getLogger(__name__)

ALL_ROLES = ("operations", "branch_manager", "technician")


@dataclass(frozen=True)
class CommandSpec:
    """One command of the catalogue: what it does, who may send it."""

    summary: str
    roles: tuple[str, ...]
    internal: bool = False  # issued by the cloud itself (rollouts), not by operators


CATALOGUE: Mapping[str, CommandSpec] = {
    "reboot": CommandSpec("restart the gateway", ALL_ROLES),
    "rescan": CommandSpec("restart BLE scanning", ALL_ROLES),
    "collect_diagnostics": CommandSpec("send a diagnostics report", ALL_ROLES),
    "rotate_key": CommandSpec("renew the certificate with a new device key", ("operations",)),
    "factory_reset": CommandSpec("wipe identity and data, back to unprovisioned", ("operations",)),
    "update": CommandSpec("install a software release", ("operations",), internal=True),
}

DEFAULT_TIMEOUT = dt.timedelta(minutes=10)
MAX_TIMEOUT = dt.timedelta(days=7)

# What a device may report (``batch.STATUS_NAMES``): the command statuses of the same name.
REPORTED = ("done", "failed", "refused", "accepted")


def check_command(name: str, args: Mapping[str, Any], role: str) -> CommandSpec:
    """The catalogue entry for ``name`` if ``role`` may send it with ``args``."""
    spec = CATALOGUE.get(name)
    if spec is None or spec.internal:
        known = ", ".join(sorted(n for n, s in CATALOGUE.items() if not s.internal))
        raise Invalid("unknown command %r (known: %s)" % (name, known))
    if role not in spec.roles:
        raise NotAllowed("a %s may not send %r" % (role.replace("_", " "), name))
    if args:
        raise Invalid("%r takes no arguments, got %s" % (name, ", ".join(sorted(args))))
    return spec


def issue(
    session: Session,
    devices: Sequence[Device],
    name: str,
    args: Mapping[str, Any],
    *,
    actor: str,
    now: dt.datetime,
    timeout: dt.timedelta = DEFAULT_TIMEOUT,
    target: Target | None = None,
) -> CommandGroup:
    """Stage a command group with one ``pending`` command per device (the caller commits;
    the supervisor delivers). ``name`` and ``args`` must already be checked."""
    if not dt.timedelta(seconds=1) <= timeout <= MAX_TIMEOUT:
        raise Invalid("the timeout must be from 1 s to %d days" % MAX_TIMEOUT.days)
    deadline = now + timeout
    described = (target or Target(devices=tuple(d.id for d in devices))).describe()
    group = CommandGroup(
        name=name,
        args=dict(args),
        target=described,
        created_by=actor,
        created_at=now,
        deadline_at=deadline,
    )
    session.add(group)
    session.flush()
    for device in devices:
        session.add(
            Command(
                group_id=group.id,
                device_id=device.id,
                name=name,
                args=dict(args),
                status="pending",
                created_by=actor,
                created_at=now,
                deadline_at=deadline,
                send_count=0,
                detail="",
            )
        )
    audit.record(
        session,
        actor,
        "command.issue",
        "command_group:%d" % group.id,
        name=name,
        reached=described,
        devices=len(devices),
    )
    session.flush()
    return group


def issue_to(
    session: Session,
    target: Target,
    name: str,
    args: Mapping[str, Any],
    *,
    role: str,
    actor: str,
    visible: Iterable[int] | None,
    now: dt.datetime,
    timeout: dt.timedelta = DEFAULT_TIMEOUT,
) -> CommandGroup:
    """Check, resolve ``target`` within the caller's branches and issue (``issue``)."""
    check_command(name, args, role)
    devices = resolve(session, target, visible)
    return issue(session, devices, name, args, actor=actor, now=now, timeout=timeout, target=target)


def get_command(session: Session, command_id: int, visible: Iterable[int] | None) -> Command:
    """The command if its device is in a branch the caller may see; NotFound otherwise."""
    command = session.get(Command, command_id)
    if command is not None:
        device = session.get(Device, command.device_id)
        if device is not None and (visible is None or device.branch_id in set(visible)):
            return command
    raise NotFound("no command %d" % command_id)


def get_group(session: Session, group_id: int, visible: Iterable[int] | None) -> CommandGroup:
    """The group if every device it reached is visible to the caller; NotFound otherwise."""
    group = session.get(CommandGroup, group_id)
    if group is not None:
        branches = session.scalars(
            select(Device.branch_id)
            .join(Command, Command.device_id == Device.id)
            .where(Command.group_id == group_id)
            .distinct()
        ).all()
        if branches and (visible is None or set(branches) <= set(visible)):
            return group
    raise NotFound("no command group %d" % group_id)


def group_members(session: Session, group_id: int) -> list[Command]:
    """The commands of a group, by device id."""
    query = select(Command).where(Command.group_id == group_id).order_by(Command.device_id)
    return list(session.scalars(query).all())


def cancel(session: Session, command: Command, *, actor: str, now: dt.datetime) -> None:
    """Cancel an open command (a device that already got it may still run it: its report is
    then kept in the audit log). Conflict if it is final."""
    if command.status in COMMAND_FINAL:
        raise Conflict("command %d is %s already" % (command.id, command.status))
    command.status = "cancelled"
    command.finished_at = now
    audit.record(session, actor, "command.cancel", "command:%d" % command.id)


def expire(session: Session, now: dt.datetime) -> int:
    """Time out every open command past its deadline; return how many."""
    result = session.execute(
        update(Command)
        .where(Command.status.in_(COMMAND_OPEN), Command.deadline_at <= now)
        .values(status="timed_out", finished_at=now, detail="no answer before the deadline")
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True)
class Report:
    """A device's report on one command (``batch.CommandResult``, from the uplink)."""

    command_id: int
    status: str  # one of REPORTED
    detail: str
    at: dt.datetime


def apply_reports(
    session: Session, gateway: Device, reports: Iterable[Report], now: dt.datetime
) -> int:
    """Record ``gateway``'s reports on its commands, in the ingest transaction; return how
    many changed a command. A report on another device's command, on an unknown id or with
    an unknown status changes nothing (audited: a gateway naming commands it never got is a
    security signal); a report on a final command changes nothing (idempotent)."""
    changed = 0
    for report in reports:
        command = session.get(Command, report.command_id)
        status = report.status
        if command is None or command.device_id != gateway.id or status not in REPORTED:
            audit.record(
                session,
                "device:%s" % gateway.uid,
                "command.report_refused",
                "command:%d" % report.command_id,
                status=report.status,
            )
            continue
        if command.status in COMMAND_FINAL or command.status == status:
            continue
        command.status = status
        command.detail = report.detail[:200]
        if status in COMMAND_FINAL:
            command.finished_at = report.at
        changed += 1
    return changed


def command_out(command: Command) -> dict[str, Any]:
    """A command as the API shows it."""

    def when(moment: dt.datetime | None) -> dt.datetime | None:
        return None if moment is None else utc(moment)

    return {
        "id": command.id,
        "group_id": command.group_id,
        "device_id": command.device_id,
        "name": command.name,
        "args": command.args,
        "status": command.status,
        "created_by": command.created_by,
        "created_at": when(command.created_at),
        "deadline_at": when(command.deadline_at),
        "sent_at": when(command.sent_at),
        "send_count": command.send_count,
        "finished_at": when(command.finished_at),
        "detail": command.detail,
    }


def group_out(group: CommandGroup, members: Sequence[Command]) -> dict[str, Any]:
    """A command group with its members and a count per status."""
    counts: dict[str, int] = {}
    for member in members:
        counts[member.status] = counts.get(member.status, 0) + 1
    return {
        "id": group.id,
        "name": group.name,
        "args": group.args,
        "target": group.target,
        "created_by": group.created_by,
        "created_at": utc(group.created_at),
        "deadline_at": utc(group.deadline_at),
        "counts": counts,
        "commands": [command_out(m) for m in members],
    }
