"""Staged rollouts, the shell: create them, advance them each supervisor pass, resume,
cancel. The decisions are ``rollout_plan``'s; this module loads what it needs, applies
what it decides, and audits every change of state.

A device's update is an ordinary command (``update``, issued by the rollout, never by an
operator directly) whose arguments name the release: the device fetches the signed
manifest and files (``GET /releases/v1/...``), checks them, installs side by side, and
reports the command's result and the version it runs (``batch.Running``). A board running
the MicroPython firmware also gets the release's per-device MAC with it, added when the
command is sealed (``update_args``, ``delivery``).

Members: the target's gateways and kiosks in service (``targets.resolve``). A device whose
model names another board than the release's is left out at creation, and one that already
runs the release's version is ``skipped``. One device takes part in at most one running or
halted rollout at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import audit
from cloud.fleet import commands, releases, targets, update_args
from cloud.fleet import rollout_plan as rp
from cloud.fleet.control_models import Command
from cloud.fleet.errors import Conflict, Invalid, NotFound
from cloud.fleet.models import Device
from cloud.fleet.release_models import Release
from cloud.fleet.rollout_models import Rollout, RolloutMember
from cloud.identity.models import utc

ACTIVE = (rp.RUNNING, rp.HALTED)


def _settings(rollout: Rollout) -> rp.Settings:
    values = dict(rollout.settings)
    values["waves"] = tuple(values.get("waves", rp.DEFAULT_WAVES))
    return rp.Settings(**values)


def _fits_board(device: Device, board: str) -> bool:
    return not device.model or device.model.startswith(board)


def create(
    session: Session,
    release_id: int,
    target: targets.Target,
    settings: rp.Settings,
    *,
    actor: str,
    visible: Iterable[int] | None,
    now: dt.datetime,
) -> Rollout:
    """Stage a new running rollout of ``release_id`` to ``target`` (the caller commits)."""
    problems = settings.problems()
    if problems:
        raise Invalid("; ".join(problems))
    try:
        release = releases.usable_release(session, release_id)
    except releases.ReleaseRefused as exc:
        raise (NotFound if exc.status == 404 else Conflict)(exc.message) from None
    devices = [
        d for d in targets.resolve(session, target, visible) if _fits_board(d, release.board)
    ]
    if not devices:
        raise Invalid("no device of the target runs on board %s" % release.board)
    busy = session.scalars(
        select(RolloutMember.device_id)
        .join(Rollout, Rollout.id == RolloutMember.rollout_id)
        .where(Rollout.state.in_(ACTIVE), RolloutMember.device_id.in_([d.id for d in devices]))
    ).all()
    if busy:
        raise Conflict(
            "devices %s are in another rollout: finish or cancel it first"
            % ", ".join(str(d) for d in sorted(busy))
        )
    rollout = Rollout(
        release_id=release.id,
        target=target.describe(),
        settings={**dataclasses.asdict(settings), "waves": list(settings.waves)},
        state=rp.RUNNING,
        reason="",
        forgiven=0,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(rollout)
    session.flush()
    by_uid = {d.uid: d for d in devices}
    ordered = rp.order_devices(rollout.id, list(by_uid))
    for position, (uid, wave) in enumerate(
        zip(ordered, rp.assign_waves(len(ordered), settings.waves), strict=True)
    ):
        device = by_uid[uid]
        already = device.firmware_version == release.version
        session.add(
            RolloutMember(
                rollout_id=rollout.id,
                device_id=device.id,
                position=position,
                wave=wave,
                state=rp.SKIPPED if already else rp.WAITING,
                from_version=device.firmware_version[:32],
                detail="runs %s already" % release.version if already else "",
            )
        )
    audit.record(
        session,
        actor,
        "rollout.create",
        "rollout:%d" % rollout.id,
        release=release.id,
        version=release.version,
        devices=len(devices),
        reached=target.describe(),
    )
    session.flush()
    return rollout


def get(session: Session, rollout_id: int, visible: Iterable[int] | None) -> Rollout:
    """The rollout if every device in it is in the caller's branches; NotFound otherwise."""
    rollout = session.get(Rollout, rollout_id)
    if rollout is not None:
        branches = set(
            session.scalars(
                select(Device.branch_id)
                .join(RolloutMember, RolloutMember.device_id == Device.id)
                .where(RolloutMember.rollout_id == rollout_id)
            ).all()
        )
        if visible is None or branches <= set(visible):
            return rollout
    raise NotFound("no rollout %d" % rollout_id)


def members(session: Session, rollout_id: int) -> list[RolloutMember]:
    """The members of a rollout in rollout order."""
    query = (
        select(RolloutMember)
        .where(RolloutMember.rollout_id == rollout_id)
        .order_by(RolloutMember.position)
    )
    return list(session.scalars(query).all())


def _snapshot(session: Session, rollout: Rollout) -> list[tuple[RolloutMember, rp.Member]]:
    rows = session.execute(
        select(RolloutMember, Command.status, Device.firmware_version)
        .join(Device, Device.id == RolloutMember.device_id)
        .outerjoin(Command, Command.id == RolloutMember.command_id)
        .where(RolloutMember.rollout_id == rollout.id)
        .order_by(RolloutMember.position)
    ).all()
    return [
        (
            row,
            rp.Member(
                row.device_id,
                row.wave,
                row.state,
                utc(row.started_at) if row.started_at else None,
                status,
                running or None,
            ),
        )
        for row, status, running in rows
    ]


def _set_state(
    session: Session, rollout: Rollout, state: str, reason: str, now: dt.datetime
) -> None:
    if state == rollout.state:
        return
    audit.record(session, "system", "rollout.%s" % state, "rollout:%d" % rollout.id, reason=reason)
    rollout.state = state
    rollout.reason = reason[:200]
    rollout.updated_at = now
    if state in (rp.COMPLETED, rp.CANCELLED):
        rollout.finished_at = now


def advance(session: Session, rollout: Rollout, now: dt.datetime) -> rp.Plan:
    """One step of ``rollout`` (staged in the caller's transaction): record finished
    updates, start the next devices with an ``update`` command, change state."""
    release = session.get(Release, rollout.release_id)
    assert release is not None
    settings = _settings(rollout)
    snapshot = _snapshot(session, rollout)
    step = rp.plan(
        settings, rollout.state, release.version, [m for _, m in snapshot], now, rollout.forgiven
    )
    rows = {row.device_id: row for row, _ in snapshot}
    for device_id, (state, detail) in step.finish.items():
        row = rows[device_id]
        row.state, row.detail, row.finished_at = state, detail[:200], now
    if step.start:
        devices = [session.get(Device, device_id) for device_id in step.start]
        args = update_args.issued(release)  # the per-device MAC is added at sealing
        for device in devices:
            assert device is not None
            group = commands.issue(
                session,
                [device],
                "update",
                args,
                actor="rollout:%d" % rollout.id,
                now=now,
                timeout=dt.timedelta(minutes=settings.health_minutes),
            )
            (command,) = commands.group_members(session, group.id)
            row = rows[device.id]
            row.state, row.command_id, row.started_at = rp.UPDATING, command.id, now
    _set_state(session, rollout, step.state, step.reason, now)
    return step


def advance_all(session: Session, now: dt.datetime) -> int:
    """Advance every running rollout (the supervisor's check); return how many."""
    running = session.scalars(select(Rollout).where(Rollout.state == rp.RUNNING)).all()
    for rollout in running:
        advance(session, rollout, now)
    return len(running)


def resume(session: Session, rollout: Rollout, *, actor: str, now: dt.datetime) -> None:
    """Resume a halted rollout, forgiving the failures it halted for."""
    if rollout.state != rp.HALTED:
        raise Conflict("rollout %d is %s, not halted" % (rollout.id, rollout.state))
    failed = sum(1 for m in members(session, rollout.id) if m.state == rp.FAILED)
    audit.record(session, actor, "rollout.resume", "rollout:%d" % rollout.id, forgiven=failed)
    rollout.forgiven = failed
    rollout.state, rollout.reason, rollout.updated_at = rp.RUNNING, "", now


def halt(session: Session, rollout: Rollout, *, actor: str, now: dt.datetime) -> None:
    """Halt a running rollout by hand: nothing more starts; updates under way finish."""
    if rollout.state != rp.RUNNING:
        raise Conflict("rollout %d is %s, not running" % (rollout.id, rollout.state))
    audit.record(session, actor, "rollout.halt", "rollout:%d" % rollout.id)
    rollout.state, rollout.reason, rollout.updated_at = rp.HALTED, "halted by %s" % actor, now


def cancel(session: Session, rollout: Rollout, *, actor: str, now: dt.datetime) -> None:
    """Cancel a running or halted rollout; waiting devices stay on their version."""
    if rollout.state not in ACTIVE:
        raise Conflict("rollout %d is %s already" % (rollout.id, rollout.state))
    audit.record(session, actor, "rollout.cancel", "rollout:%d" % rollout.id)
    rollout.state, rollout.reason = rp.CANCELLED, "cancelled by %s" % actor
    rollout.updated_at = rollout.finished_at = now


def rollout_out(session: Session, rollout: Rollout, with_members: bool = True) -> dict[str, Any]:
    """A rollout as the API shows it: counts per member state, and the members."""
    release = session.get(Release, rollout.release_id)
    assert release is not None
    rows = members(session, rollout.id)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1

    def when(moment: dt.datetime | None) -> dt.datetime | None:
        return None if moment is None else utc(moment)

    out: dict[str, Any] = {
        "id": rollout.id,
        "release_id": release.id,
        "version": release.version,
        "board": release.board,
        "target": rollout.target,
        "settings": rollout.settings,
        "state": rollout.state,
        "reason": rollout.reason,
        "created_by": rollout.created_by,
        "created_at": when(rollout.created_at),
        "updated_at": when(rollout.updated_at),
        "finished_at": when(rollout.finished_at),
        "counts": counts,
    }
    if with_members:
        out["members"] = [
            {
                "device_id": row.device_id,
                "wave": row.wave,
                "state": row.state,
                "from_version": row.from_version,
                "command_id": row.command_id,
                "started_at": when(row.started_at),
                "finished_at": when(row.finished_at),
                "detail": row.detail,
            }
            for row in rows
        ]
    return out
