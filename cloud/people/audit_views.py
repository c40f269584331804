"""The audit log, for cloud operations: ``GET /api/audit`` (newest first, paged by id)."""

from __future__ import annotations

from apiflask import APIBlueprint
from sqlalchemy import select

from cloud.access import require
from cloud.audit import AuditEvent
from cloud.db import session
from cloud.people.credentials import as_utc
from cloud.people.openapi import SECURITY, signed_in
from cloud.people.schemas import AuditOut, AuditQuery

bp = APIBlueprint("audit_log", __name__, tag="Audit")


@bp.get("/api/audit")
@require("operations")
@bp.input(AuditQuery, location="query", arg_name="query")
@bp.output(AuditOut)
@bp.doc(
    summary="Audit events, newest first; filter by action or actor, page with `before`",
    security=SECURITY,
    responses=signed_in(),
)
def list_events(query: dict) -> dict:
    limit = query["limit"]
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if "action" in query:
        statement = statement.where(AuditEvent.action == query["action"])
    if "actor" in query:
        statement = statement.where(AuditEvent.actor == query["actor"])
    if "before" in query:
        statement = statement.where(AuditEvent.id < query["before"])
    events = list(session().scalars(statement))
    page = events[:limit]
    return {
        "events": [
            {
                "id": event.id,
                "at": as_utc(event.at),
                "actor": event.actor,
                "action": event.action,
                "target": event.target,
                "details": event.details,
            }
            for event in page
        ],
        "next_before": page[-1].id if len(events) > limit else None,
    }
