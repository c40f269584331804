"""Branch-scoped reads that show object-level authorization on real rows (OWASP API1/API5).

``GET /api/branches`` lists only the branches the caller may see; ``GET /api/branches/<id>``
and ``GET /api/devices/<id>`` answer 404 for another branch's objects (not 403: the caller
learns nothing about them); ``POST /api/branches`` is for cloud operations only (403 for
others). These are minimal on purpose: the fleet inventory area owns branches and devices
and may take these routes over (move this module to ``cloud/fleet/``) as it grows them.
"""

from __future__ import annotations

from apiflask import APIBlueprint, abort
from sqlalchemy import select

from cloud.access import current_principal, require, visible_branches
from cloud.audit import record
from cloud.db import session
from cloud.fleet.models import Branch, Device
from cloud.people.authenticate import operator_required
from cloud.people.credentials import as_utc
from cloud.people.openapi import SECURITY, signed_in
from cloud.people.rows import visible_or_404
from cloud.people.schemas import BranchesOut, BranchIn, BranchOut, DeviceOut

bp = APIBlueprint("branch_access", __name__, tag="Branches")


def branch_out(branch: Branch) -> dict:
    """The BranchOut body of ``branch``."""
    return {
        "id": branch.id,
        "code": branch.code,
        "name": branch.name,
        "created_at": as_utc(branch.created_at),
    }


def device_out(device: Device) -> dict:
    """The DeviceOut body of ``device``."""
    last_seen = device.last_seen_at
    return {
        "id": device.id,
        "uid": device.uid,
        "kind": device.kind,
        "branch_id": device.branch_id,
        "name": device.name,
        "model": device.model,
        "status": device.status,
        "firmware_version": device.firmware_version,
        "created_at": as_utc(device.created_at),
        "last_seen_at": as_utc(last_seen) if last_seen is not None else None,
    }


# Declared before the listing that nests its output schema, so the OpenAPI document names
# that schema once (apiflask registers the first use; apispec would add a duplicate).
@bp.post("/api/branches")
@require("operations")
@bp.input(BranchIn, arg_name="body")
@bp.output(BranchOut, status_code=201)
@bp.doc(summary="Add a branch (cloud operations)", security=SECURITY, responses=signed_in(409))
def create_branch(body: dict) -> dict:
    db = session()
    if db.scalars(select(Branch).where(Branch.code == body["code"])).first() is not None:
        abort(409, "branch %s exists" % body["code"])
    branch = Branch(code=body["code"], name=body["name"])
    db.add(branch)
    db.flush()
    record(db, current_principal().actor, "branch.create", "branch:%s" % branch.code)
    db.commit()
    return branch_out(branch)


@bp.get("/api/branches")
@operator_required
@bp.output(BranchesOut)
@bp.doc(summary="The branches I may see", security=SECURITY, responses=signed_in())
def list_branches() -> dict:
    query = select(Branch).order_by(Branch.code)
    visible = visible_branches()
    if visible is not None:
        query = query.where(Branch.id.in_(visible))
    return {"branches": [branch_out(branch) for branch in session().scalars(query)]}


@bp.get("/api/branches/<int:branch_id>")
@operator_required
@bp.output(BranchOut)
@bp.doc(summary="One branch I may see", security=SECURITY, responses=signed_in(404))
def show_branch(branch_id: int) -> dict:
    return branch_out(visible_or_404(session(), Branch, branch_id, lambda branch: branch.id))


@bp.get("/api/devices/<int:device_id>")
@operator_required
@bp.output(DeviceOut)
@bp.doc(summary="One device in a branch I may see", security=SECURITY, responses=signed_in(404))
def show_device(device_id: int) -> dict:
    device = visible_or_404(session(), Device, device_id, lambda device: device.branch_id)
    return device_out(device)
