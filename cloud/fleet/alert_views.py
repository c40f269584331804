"""The fleet alerts API, scoped to the caller's branches.

- ``GET /api/fleet/alerts``: alerts of the branches I may see (open by default), filtered
  by state, kind, branch or device, paged with ``after``;
- ``POST /api/fleet/alerts/<id>/ack``: acknowledge one (branch managers and cloud
  operations; audited). Another branch's alert is 404, like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiflask import APIBlueprint, abort

from cloud.access import ROLES, check_branch, current_principal, require, visible_branches
from cloud.db import session
from cloud.fleet.alert_queries import (
    AlertFilters,
    acknowledge,
    alert_item,
    find_alert,
    list_alerts,
)
from cloud.fleet.alert_schemas import AcknowledgedOut, AlertsOut, AlertsQuery
from cloud.fleet.schemas import MAX_ID
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("fleet_alerts", __name__, tag="Fleet")

ACKNOWLEDGERS = ("operations", "branch_manager")


@bp.post("/api/fleet/alerts/<int:alert_id>/ack")
@require(*ACKNOWLEDGERS)
@bp.output(AcknowledgedOut)
@bp.doc(
    summary="Acknowledge an alert (branch managers and cloud operations); acknowledging "
    "again keeps the first acknowledgement",
    security=SECURITY,
    responses=signed_in(404),
)
def ack(alert_id: int) -> dict[str, Any]:
    db = session()
    row = find_alert(db, alert_id) if 0 < alert_id <= MAX_ID else None
    if row is None:
        abort(404)
    check_branch(row[0].branch_id)
    if acknowledge(db, row[0], current_principal().actor, dt.datetime.now(dt.UTC)):
        db.commit()
    return alert_item(row)


@bp.get("/api/fleet/alerts")
@require(*ROLES)
@bp.input(AlertsQuery, location="query", arg_name="query")
@bp.output(AlertsOut)
@bp.doc(
    summary="Alerts of the branches I may see (open by default); filter by state, kind, "
    "branch or device, page with `after`",
    security=SECURITY,
    responses=signed_in(),
)
def alerts(query: dict[str, Any]) -> dict[str, Any]:
    filters = AlertFilters(
        visible=visible_branches(),
        state=query["state"],
        kind=query.get("kind"),
        branch=query.get("branch"),
        device=query.get("device"),
        after=query.get("after", 0),
        limit=query["limit"],
    )
    return list_alerts(session(), filters)
