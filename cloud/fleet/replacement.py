"""Replacing a failed gateway with a new one, and decommissioning one: the cloud's side.

**Replace** (``replace``): the new device, already enrolled with an ordinary claim for the
same branch (``bankiot flash --claim ... --replaces OLD``), takes over the old one's place:
the old one's desired configuration becomes the new one's (a new revision, delivered on
its downlink like any change), and the old identity is revoked (certificates on the CRL,
envelope keys refused by ingest, pending re-claims cancelled; reason ``superseded``). The
old record and its history stay. Both must be gateways or kiosks of the same kind in the
same branch, and the new one must be active: a replacement never moves a device between
branches or revives a revoked one.

**Decommission** (``decommission``): the device leaves the fleet for good: its identity is
revoked (reason ``cessationOfOperation``), its open commands cancelled, and its status is
``decommissioned`` (it takes no configuration or command; ``targets.INACTIVE``). Wiping
the board itself is the technician's tool's job (``bankiot fleet decommission --port``).

Both stage their changes in the caller's transaction and audit them; the caller commits,
then publishes the CRL (``cloud.identity.runtime.publish``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import audit
from cloud.fleet import commands, configs
from cloud.fleet.control_models import COMMAND_OPEN, Command, DeviceConfig
from cloud.fleet.errors import Conflict, Invalid
from cloud.fleet.models import Device
from cloud.identity.models import ENROLLABLE_KINDS
from cloud.identity.revocation import Revoked, revoke_device


@dataclass(frozen=True)
class Replaced:
    """A replacement's outcome: the configuration revision the new device got (None: the
    old one had none) and what was revoked of the old one."""

    old: Device
    new: Device
    config_revision: int | None
    revoked: Revoked


def replace(session: Session, actor: str, old: Device, new: Device, now: dt.datetime) -> Replaced:
    """``new`` takes over ``old`` (module docstring); ``Invalid`` or ``Conflict`` with one
    line when it cannot."""
    if old.id == new.id:
        raise Invalid("a device cannot replace itself")
    if old.kind not in ENROLLABLE_KINDS or old.kind != new.kind:
        raise Invalid(
            "device %d is a %s and device %d a %s: a gateway replaces a gateway, a kiosk a "
            "kiosk" % (old.id, old.kind, new.id, new.kind)
        )
    if old.branch_id != new.branch_id:
        raise Invalid(
            "device %d is in branch %d, device %d in branch %d: claim the new device for the "
            "old one's branch" % (new.id, new.branch_id, old.id, old.branch_id)
        )
    if new.status != "active":
        raise Conflict(
            "device %d is %s: only an active device can take over" % (new.id, new.status)
        )
    if old.status == "decommissioned":
        raise Conflict("device %d is decommissioned: there is nothing to take over" % old.id)
    row = session.get(DeviceConfig, old.id)
    revision = None
    if row is not None and row.settings:
        (copied,) = configs.set_desired(session, [new], row.settings, actor=actor, now=now)
        revision = copied.revision
    revoked = revoke_device(session, actor, old, "superseded", now, note="replaced by %s" % new.uid)
    audit.record(
        session,
        actor,
        "device.replace",
        "device:%s" % old.uid,
        replaced_by=new.uid,
        branch_id=old.branch_id,
        config_revision=revision,
    )
    session.flush()
    return Replaced(old, new, revision, revoked)


def decommission(
    session: Session, actor: str, device: Device, now: dt.datetime, note: str = ""
) -> Revoked:
    """Take ``device`` out of the fleet (module docstring); ``Conflict`` if it already is."""
    if device.status == "decommissioned":
        raise Conflict("device %d is already decommissioned" % device.id)
    revoked = revoke_device(session, actor, device, "cessationOfOperation", now, note)
    open_commands = session.scalars(
        select(Command).where(Command.device_id == device.id, Command.status.in_(COMMAND_OPEN))
    )
    cancelled = []
    for command in list(open_commands):
        commands.cancel(session, command, actor=actor, now=now)
        command.detail = "device decommissioned"
        cancelled.append(command.id)
    device.status = "decommissioned"
    audit.record(
        session,
        actor,
        "device.decommission",
        "device:%s" % device.uid,
        branch_id=device.branch_id,
        note=note,
        cancelled_commands=cancelled,
    )
    session.flush()
    return revoked
