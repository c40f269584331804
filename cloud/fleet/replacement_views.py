"""The replacement and decommission API (``cloud.fleet.replacement``).

``POST /api/fleet/devices/<old>/replace`` {"by": new}: the new device takes over the old
one's configuration and the old identity is revoked. ``POST
/api/fleet/devices/<id>/decommission`` {"note"}: the device's identity is revoked and it
leaves the fleet. For operations, branch managers and technicians (who swap boards),
within their branches; another branch's device is 404, as if absent.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Integer, List, Nested, String
from apiflask.validators import Length, Range

from cloud.access import current_principal, require, visible_branches
from cloud.db import session
from cloud.fleet import replacement, targets
from cloud.fleet.models import Device
from cloud.fleet.schemas import MAX_ID
from cloud.identity import runtime
from cloud.identity.models import utcnow
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("fleet_replacement", __name__, tag="Fleet")

SWAPPERS = ("operations", "branch_manager", "technician")


class ReplaceIn(Schema):
    by = Integer(
        required=True,
        validate=Range(1, MAX_ID),
        metadata={"description": "the new device (enrolled in the same branch)"},
    )


class DecommissionIn(Schema):
    note = String(load_default="", validate=Length(max=200))


class DeviceRef(Schema):
    id = Integer(required=True)
    uid = String(required=True)
    kind = String(required=True)
    branch_id = Integer(required=True)
    status = String(required=True)


class ReplacedOut(Schema):
    old = Nested(DeviceRef, required=True)
    new = Nested(DeviceRef, required=True)
    config_revision = Integer(
        required=True, allow_none=True, metadata={"description": "the new device's revision"}
    )
    revoked_serials = List(String(), required=True)
    revoked_key_versions = List(Integer(), required=True)


class DecommissionedOut(Schema):
    device = Nested(DeviceRef, required=True)
    revoked_serials = List(String(), required=True)
    revoked_key_versions = List(Integer(), required=True)


def _ref(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "uid": device.uid,
        "kind": device.kind,
        "branch_id": device.branch_id,
        "status": device.status,
    }


@bp.post("/api/fleet/devices/<int:device_id>/replace")
@require(*SWAPPERS)
@bp.input(ReplaceIn, location="json")
@bp.output(ReplacedOut)
@bp.doc(
    summary="Replace a gateway: the new one takes its configuration, its identity is revoked",
    security=SECURITY,
    responses=signed_in(404, 409, 422, 503),
)
def replace(device_id: int, json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    visible = visible_branches()
    old = targets.one_device(db, device_id, visible)
    new = targets.one_device(db, json_data["by"], visible)
    runtime.authority()  # fail before changing anything if the CRL cannot be signed
    now = utcnow()
    done = replacement.replace(db, current_principal().actor, old, new, now)
    db.commit()
    runtime.publish(db, now)
    return {
        "old": _ref(old),
        "new": _ref(new),
        "config_revision": done.config_revision,
        "revoked_serials": done.revoked.serials,
        "revoked_key_versions": done.revoked.key_versions,
    }


@bp.post("/api/fleet/devices/<int:device_id>/decommission")
@require(*SWAPPERS)
@bp.input(DecommissionIn, location="json")
@bp.output(DecommissionedOut)
@bp.doc(
    summary="Decommission a device: its identity revoked, its open commands cancelled",
    security=SECURITY,
    responses=signed_in(404, 409, 503),
)
def decommission(device_id: int, json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    device = targets.one_device(db, device_id, visible_branches())
    runtime.authority()
    now = utcnow()
    revoked = replacement.decommission(
        db, current_principal().actor, device, now, json_data["note"]
    )
    db.commit()
    runtime.publish(db, now)
    return {
        "device": _ref(device),
        "revoked_serials": revoked.serials,
        "revoked_key_versions": revoked.key_versions,
    }
