"""The kiosk events API: ``GET /api/fleet/kiosk-events``, what customers did at the kiosks
of the branches I may see (check-ins, queue tickets, service requests), oldest first.

Every signed-in role may list, within its branches; naming a branch or a kiosk outside them
is 404, as if absent (OWASP API1). Wearable addresses only for ``PERSONAL_DATA_ROLES``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiflask import APIBlueprint

from cloud.access import ROLES, may_see_personal_data, require, visible_branches
from cloud.db import session
from cloud.fleet import targets
from cloud.fleet.errors import Invalid, NotFound
from cloud.fleet.kiosk_queries import KioskFilters, list_kiosk_events
from cloud.fleet.kiosk_schemas import KioskEventsOut, KioskEventsQuery
from cloud.fleet.models import Branch
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("fleet_kiosk", __name__, tag="Fleet")


def _utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC (UTC if it has no offset); Invalid if UTC cannot hold it."""
    try:
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise Invalid("since %s is out of range" % moment.isoformat()) from None


@bp.get("/api/fleet/kiosk-events")
@require(*ROLES)
@bp.input(KioskEventsQuery, location="query", arg_name="query")
@bp.output(KioskEventsOut)
@bp.doc(
    summary="What customers did at the kiosks of the branches I may see (check-ins, "
    "tickets, service requests), oldest first; filter by branch, kiosk, kind or time, "
    "page with `after`",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def kiosk_events(query: dict[str, Any]) -> dict[str, Any]:
    db = session()
    visible = visible_branches()
    branch = query.get("branch")
    if branch is not None and (
        (visible is not None and branch not in set(visible)) or db.get(Branch, branch) is None
    ):
        raise NotFound("no branch %d" % branch)
    device = query.get("device")
    if device is not None:
        targets.one_device(db, device, visible)
    since = query.get("since")
    filters = KioskFilters(
        visible=visible,
        branch=branch,
        device=device,
        kind=query.get("kind"),
        since=None if since is None else _utc(since),
        after=query.get("after", 0),
        limit=query["limit"],
        personal=may_see_personal_data(),
    )
    return list_kiosk_events(db, filters)
