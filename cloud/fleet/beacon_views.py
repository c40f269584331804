"""The beacons API (``cloud.fleet.beacons``), for cloud operations and branch managers:

- ``GET /api/fleet/beacons``: the beacons of the branches I may see (operations: every
  branch's and every merchant's), filter by ``branch`` or ``merchant``;
- ``POST /api/fleet/beacons``: register one at a branch (branch managers: their own) or at a
  merchant (operations only); 409 when its identifier or address is registered already;
- ``DELETE /api/fleet/beacons/<id>``: remove one;
- ``GET /api/fleet/merchants`` (both roles) and ``POST`` (operations): partner merchants.

A branch or beacon outside the caller's branches is 404, as if absent (OWASP API1).
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from cloud.access import current_principal, require, visible_branches
from cloud.db import session
from cloud.fleet import beacons
from cloud.fleet.beacon_models import Beacon
from cloud.fleet.beacon_schemas import (
    BeaconAddedOut,
    BeaconIn,
    BeaconsOut,
    BeaconsQuery,
    MerchantAddedOut,
    MerchantIn,
    MerchantsOut,
)
from cloud.fleet.errors import NotAllowed, NotFound
from cloud.identity.models import utcnow
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("fleet_beacons", __name__, tag="Fleet")
ROLES = ("operations", "branch_manager")


def _visible(branch_id: int | None) -> bool:
    """Whether the caller may see a beacon at ``branch_id`` (None: at a merchant)."""
    visible = visible_branches()
    if visible is None:
        return True
    return branch_id is not None and branch_id in set(visible)


@bp.get("/api/fleet/beacons")
@require(*ROLES)
@bp.input(BeaconsQuery, location="query", arg_name="query")
@bp.output(BeaconsOut)
@bp.doc(
    summary="The beacons of the branches I may see (operations: and of partner merchants)",
    security=SECURITY,
    responses=signed_in(404),
)
def list_beacons(query: dict[str, Any]) -> dict[str, Any]:
    db = session()
    branch, merchant = query.get("branch"), query.get("merchant")
    if branch is not None and not _visible(branch):
        raise NotFound("no branch %d" % branch)
    if merchant is not None and not _visible(None):
        raise NotFound("no merchant %d" % merchant)
    found = beacons.list_beacons(db, visible=visible_branches(), branch=branch, merchant=merchant)
    return {"beacons": [beacons.beacon_out(db, beacon) for beacon in found]}


@bp.post("/api/fleet/beacons")
@require(*ROLES)
@bp.input(BeaconIn, location="json")
@bp.output(BeaconAddedOut, status_code=201)
@bp.doc(
    summary="Register a beacon at a branch or a partner merchant; with its address, the "
    "branch's gateways listen for it (their configuration, delivered sealed)",
    security=SECURITY,
    responses=signed_in(404, 409, 422),
)
def add_beacon(json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    branch, merchant = json_data.get("branch"), json_data.get("merchant")
    if merchant is not None and not _visible(None):
        raise NotAllowed("only cloud operations register merchants' beacons")
    if branch is not None and not _visible(branch):
        raise NotFound("no branch %d" % branch)
    beacon = beacons.add_beacon(
        db,
        kind=json_data["kind"],
        branch_id=branch,
        merchant_id=merchant,
        uuid=json_data.get("uuid"),
        major=json_data.get("major"),
        minor=json_data.get("minor"),
        namespace=json_data.get("namespace"),
        instance=json_data.get("instance"),
        address=json_data.get("address"),
        label=json_data["label"],
        actor=current_principal().actor,
        now=utcnow(),
    )
    db.commit()
    return beacons.beacon_out(db, beacon)


@bp.delete("/api/fleet/beacons/<int:beacon_id>")
@require(*ROLES)
@bp.output({}, status_code=204)
@bp.doc(
    summary="Remove a beacon; its branch's gateways stop listening for it",
    security=SECURITY,
    responses=signed_in(404),
)
def remove_beacon(beacon_id: int) -> tuple[str, int]:
    db = session()
    beacon = db.get(Beacon, beacon_id)
    if beacon is None or not _visible(beacon.branch_id):
        raise NotFound("no beacon %d" % beacon_id)
    beacons.remove_beacon(db, beacon, actor=current_principal().actor, now=utcnow())
    db.commit()
    return "", 204


def _merchant_out(merchant: Any) -> dict[str, Any]:
    return {
        "id": merchant.id,
        "name": merchant.name,
        "category": merchant.category,
        "created_at": merchant.created_at,
    }


@bp.get("/api/fleet/merchants")
@require(*ROLES)
@bp.output(MerchantsOut)
@bp.doc(summary="Partner merchants, by name", security=SECURITY, responses=signed_in())
def list_merchants() -> dict[str, Any]:
    return {"merchants": [_merchant_out(m) for m in beacons.list_merchants(session())]}


@bp.post("/api/fleet/merchants")
@require("operations")
@bp.input(MerchantIn, location="json")
@bp.output(MerchantAddedOut, status_code=201)
@bp.doc(
    summary="Add a partner merchant (name, ISO 18245 category code)",
    security=SECURITY,
    responses=signed_in(409, 422),
)
def add_merchant(json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    merchant = beacons.add_merchant(
        db,
        json_data["name"],
        json_data["category"],
        actor=current_principal().actor,
        now=utcnow(),
    )
    db.commit()
    return _merchant_out(merchant)
