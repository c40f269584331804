"""Which devices an operator's request reaches: one device, a branch, or a list (a cohort).

Only devices that hold a downlink (gateways and kiosks: ``ENROLLABLE_KINDS``) and are not
revoked take configuration and commands. Object-level authorization happens here: a device
outside the caller's branches is "not found", exactly like one that does not exist, so a
branch manager cannot probe another branch's ids (OWASP API1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.fleet.errors import Invalid, NotFound
from cloud.fleet.models import Branch, Device
from cloud.identity.models import ENROLLABLE_KINDS

MAX_TARGETS = 1000  # devices named in one request
INACTIVE = ("revoked", "decommissioned")


@dataclass(frozen=True)
class Target:
    """What the caller asked for: a branch, or device ids; optionally only one kind."""

    branch: int | None = None
    devices: tuple[int, ...] = ()
    kind: str | None = None

    @classmethod
    def from_request(cls, data: dict[str, Any]) -> Target:
        """The target of an API request's ``branch``, ``devices`` and ``kind`` fields."""
        return cls(
            branch=data.get("branch"),
            devices=tuple(data.get("devices") or ()),
            kind=data.get("kind"),
        )

    def describe(self) -> dict[str, Any]:
        """The target as stored with a command group (JSON)."""
        out: dict[str, Any] = {}
        if self.branch is not None:
            out["branch"] = self.branch
        if self.devices:
            out["devices"] = list(self.devices)
        if self.kind is not None:
            out["kind"] = self.kind
        return out


def _visible(device: Device, visible: Iterable[int] | None) -> bool:
    return visible is None or device.branch_id in set(visible)


def one_device(session: Session, device_id: int, visible: Iterable[int] | None) -> Device:
    """The device ``device_id`` if the caller may see it; NotFound otherwise."""
    device = session.get(Device, device_id)
    if device is None or not _visible(device, visible):
        raise NotFound("no device %d" % device_id)
    return device


def controllable(device: Device) -> None:
    """Invalid unless ``device`` takes configuration and commands."""
    if device.kind not in ENROLLABLE_KINDS:
        raise Invalid(
            "device %d is a %s: only %s take configuration and commands (they hold a downlink)"
            % (device.id, device.kind, " and ".join(ENROLLABLE_KINDS))
        )
    if device.status in INACTIVE:
        raise Invalid("device %d is %s: it takes nothing any more" % (device.id, device.status))


def resolve(session: Session, target: Target, visible: Iterable[int] | None) -> list[Device]:
    """The devices ``target`` reaches, by id. A named device must exist, be visible and be
    controllable (else the whole request is refused: nothing is half-done); a branch reaches
    its active gateways and kiosks (of ``kind`` if given). Invalid if it reaches none."""
    if (target.branch is None) == (not target.devices):
        raise Invalid("give either a branch or a list of devices")
    if target.kind is not None and target.kind not in ENROLLABLE_KINDS:
        raise Invalid("kind must be one of %s" % ", ".join(ENROLLABLE_KINDS))
    if target.devices:
        if len(target.devices) > MAX_TARGETS:
            raise Invalid("at most %d devices in one request" % MAX_TARGETS)
        devices: Sequence[Device] = [
            one_device(session, device_id, visible) for device_id in sorted(set(target.devices))
        ]
        for device in devices:
            controllable(device)
        devices = [d for d in devices if target.kind is None or d.kind == target.kind]
    else:
        assert target.branch is not None
        if (visible is not None and target.branch not in set(visible)) or session.get(
            Branch, target.branch
        ) is None:
            raise NotFound("no branch %d" % target.branch)
        query = (
            select(Device)
            .where(Device.branch_id == target.branch)
            .where(Device.kind.in_([target.kind] if target.kind else ENROLLABLE_KINDS))
            .where(Device.status.not_in(INACTIVE))
            .order_by(Device.id)
        )
        devices = session.scalars(query).all()
    if not devices:
        raise Invalid("the request reaches no gateway or kiosk")
    return list(devices)
