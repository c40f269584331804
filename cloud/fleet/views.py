"""The fleet inventory API: ``GET /api/fleet/devices`` (scoped to the caller's branches)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from cloud.access import ROLES, require, visible_branches
from cloud.db import session
from cloud.fleet.inventory import Filters, list_devices
from cloud.fleet.schemas import InventoryOut, InventoryQuery
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("fleet_inventory", __name__, tag="Fleet")


@bp.get("/api/fleet/devices")
@require(*ROLES)
@bp.input(InventoryQuery, location="query", arg_name="query")
@bp.output(InventoryOut)
@bp.doc(
    summary="The device inventory of the branches I may see, with the latest health; "
    "filter by branch, kind, status or text, page with `after`",
    security=SECURITY,
    responses=signed_in(),
)
def inventory(query: dict[str, Any]) -> dict[str, Any]:
    filters = Filters(
        visible=visible_branches(),
        branch=query.get("branch"),
        kind=query.get("kind"),
        status=query.get("status"),
        q=query.get("q"),
        after=query.get("after", 0),
        limit=query["limit"],
    )
    return list_devices(session(), filters)
