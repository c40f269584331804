"""The events API: service requests for branch staff, rule decisions, and the dry run.

- ``GET /api/events/service-requests``: call-backs, queue tickets and alerts of the
  branches I may see, oldest first (open by default); the customer (wearable, customer id)
  only for ``PERSONAL_DATA_ROLES``. ``POST .../<id>/close``: done (branch managers, cloud
  operations; audited).
- ``GET /api/events/decisions``: decisions of the branches I may see, newest first, with
  their reasons; subjects and inputs only for ``PERSONAL_DATA_ROLES``.
- ``POST /api/events/dry-run`` (cloud operations): the recorded events from ``since``
  through rules given as TOML text (over the shipped defaults) or the rules in force;
  nothing is stored or done. A rules text that does not parse is 422 with the one line.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiflask import APIBlueprint, Schema, abort
from apiflask.fields import Boolean, DateTime, Dict, Integer, List, Nested, Raw, String
from apiflask.validators import Length, OneOf, Range
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import audit
from cloud.access import (
    ROLES,
    check_branch,
    current_principal,
    may_see_personal_data,
    require,
    visible_branches,
)
from cloud.db import session
from cloud.events.models import CLOSED, OPEN, REQUEST_KINDS, RuleDecision, ServiceRequest
from cloud.events.rules import RuleError, combine
from cloud.fleet.schemas import DEFAULT_PAGE, MAX_ID, MAX_PAGE
from cloud.ingest.models import utc
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("events", __name__, tag="Events")
CLOSERS = ("operations", "branch_manager")
MAX_RULES_TEXT = 256 * 1024
MAX_DRY_RUN = 10_000  # decisions returned


class ServiceRequestsQuery(Schema):
    state = String(load_default=OPEN, validate=OneOf((OPEN, CLOSED, "all")))
    kind = String(validate=OneOf(REQUEST_KINDS))
    branch = Integer(validate=Range(1, MAX_ID))
    after = Integer(validate=Range(0, MAX_ID), metadata={"description": "the previous `next`"})
    limit = Integer(load_default=DEFAULT_PAGE, validate=Range(1, MAX_PAGE))


class ServiceRequestOut(Schema):
    id = Integer(required=True)
    kind = String(required=True)
    state = String(required=True)
    branch_id = Integer(allow_none=True)
    gateway = String(required=True)
    subject = String(allow_none=True, metadata={"description": "branch managers only"})
    customer_id = Integer(allow_none=True, metadata={"description": "branch managers only"})
    rule = String(required=True)
    rule_version = Integer(required=True)
    decision_id = Integer(required=True)
    severity = String(required=True)
    message = String(required=True)
    created_at = DateTime(required=True)
    closed_at = DateTime(allow_none=True)
    closed_by = String(allow_none=True)


class ServiceRequestsOut(Schema):
    items = List(Nested(ServiceRequestOut), required=True)
    next = Integer(allow_none=True)


class RuleDecisionsQuery(Schema):
    rule = String(validate=Length(1, 64))
    acted = Boolean()
    before = Integer(validate=Range(1, 2**63 - 1), metadata={"description": "the previous `next`"})
    limit = Integer(load_default=DEFAULT_PAGE, validate=Range(1, MAX_PAGE))


class RuleDecisionOut(Schema):
    id = Integer(allow_none=True)
    at = String(required=True)
    rule_id = String(required=True)
    rule_version = Integer(required=True)
    event_id = Integer(allow_none=True)
    subject = String(allow_none=True)
    gateway = String(required=True)
    branch_id = Integer(allow_none=True)
    acted = Boolean(required=True)
    reason = String(required=True)
    reasons = List(String(), required=True)
    inputs = Dict(allow_none=True)
    actions = List(Raw(), required=True)


class RuleDecisionsOut(Schema):
    items = List(Nested(RuleDecisionOut), required=True)
    next = Integer(allow_none=True)


class RuleDryRunIn(Schema):
    rules = String(
        validate=Length(0, MAX_RULES_TEXT),
        metadata={"description": "a rules file's TOML (default: the rules in force)"},
    )
    since = DateTime(metadata={"description": "replay events from this time on"})
    until = DateTime(metadata={"description": "run timers to this time"})


class RuleDryRunOut(Schema):
    rules = List(String(), required=True)
    decisions = List(Nested(RuleDecisionOut), required=True)
    truncated = Boolean(required=True)


def _request_out(row: ServiceRequest, personal: bool) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "state": row.state,
        "branch_id": row.branch_id,
        "gateway": row.gateway,
        "subject": row.subject if personal else None,
        "customer_id": row.customer_id if personal else None,
        "rule": row.rule_id,
        "rule_version": row.rule_version,
        "decision_id": row.decision_id,
        "severity": row.severity,
        "message": row.message,
        "created_at": utc(row.created_at),
        "closed_at": None if row.closed_at is None else utc(row.closed_at),
        "closed_by": row.closed_by,
    }


@bp.get("/api/events/service-requests")
@require(*ROLES)
@bp.input(ServiceRequestsQuery, location="query", arg_name="query")
@bp.output(ServiceRequestsOut)
@bp.doc(
    summary="Call-backs, queue tickets and alerts for the staff of the branches I may see, "
    "oldest first; page with `after`",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def service_requests(query: dict[str, Any]) -> dict[str, Any]:
    visible = visible_branches()
    statement = select(ServiceRequest).where(ServiceRequest.id > query.get("after", 0))
    branch = query.get("branch")
    if branch is not None:
        check_branch(branch)
        statement = statement.where(ServiceRequest.branch_id == branch)
    elif visible is not None:
        statement = statement.where(ServiceRequest.branch_id.in_(list(visible)))
    if query["state"] != "all":
        statement = statement.where(ServiceRequest.state == query["state"])
    if query.get("kind"):
        statement = statement.where(ServiceRequest.kind == query["kind"])
    limit = query["limit"]
    rows = session().scalars(statement.order_by(ServiceRequest.id).limit(limit + 1)).all()
    personal = may_see_personal_data()
    items = [_request_out(row, personal) for row in rows[:limit]]
    return {"items": items, "next": items[-1]["id"] if len(rows) > limit else None}


@bp.post("/api/events/service-requests/<int:request_id>/close")
@require(*CLOSERS)
@bp.output(ServiceRequestOut)
@bp.doc(
    summary="Mark a service request done (branch managers, cloud operations); closing "
    "again keeps the first",
    security=SECURITY,
    responses=signed_in(404),
)
def close_request(request_id: int) -> dict[str, Any]:
    db = session()
    row = db.get(ServiceRequest, request_id) if 0 < request_id <= MAX_ID else None
    if row is None or row.branch_id is None:
        abort(404)
    check_branch(row.branch_id)
    if close(db, row, current_principal().actor):
        db.commit()
    return _request_out(row, may_see_personal_data())


def close(db: Session, row: ServiceRequest, actor: str) -> bool:
    """Close an open request as ``actor``, audited (the caller commits); False when it was
    closed already (the first closing is kept). The API and the branch dashboard use it."""
    if row.state != OPEN:
        return False
    row.state, row.closed_at, row.closed_by = CLOSED, dt.datetime.now(dt.UTC), actor
    audit.record(db, actor, "service_request.close", "service_request:%d" % row.id)
    return True


def _decision_out(row: RuleDecision, personal: bool) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": utc(row.at).isoformat(),
        "rule_id": row.rule_id,
        "rule_version": row.rule_version,
        "event_id": row.event_id,
        "subject": row.subject if personal else None,
        "gateway": row.gateway,
        "branch_id": row.branch_id,
        "acted": row.acted,
        "reason": row.reason,
        "reasons": row.reasons,
        "inputs": row.inputs if personal else None,
        "actions": row.actions,
    }


@bp.get("/api/events/decisions")
@require(*ROLES)
@bp.input(RuleDecisionsQuery, location="query", arg_name="query")
@bp.output(RuleDecisionsOut)
@bp.doc(
    summary="Rule decisions (acting or not, with reasons) of the branches I may see, "
    "newest first; page with `before`",
    security=SECURITY,
    responses=signed_in(422),
)
def decisions(query: dict[str, Any]) -> dict[str, Any]:
    statement = select(RuleDecision)
    if query.get("before"):
        statement = statement.where(RuleDecision.id < query["before"])
    if query.get("rule"):
        statement = statement.where(RuleDecision.rule_id == query["rule"])
    if "acted" in query:
        statement = statement.where(RuleDecision.acted == query["acted"])
    visible = visible_branches()
    if visible is not None:
        statement = statement.where(RuleDecision.branch_id.in_(list(visible)))
    limit = query["limit"]
    rows = session().scalars(statement.order_by(RuleDecision.id.desc()).limit(limit + 1)).all()
    personal = may_see_personal_data()
    items = [_decision_out(row, personal) for row in rows[:limit]]
    return {"items": items, "next": items[-1]["id"] if len(rows) > limit else None}


@bp.post("/api/events/dry-run")
@require("operations")
@bp.input(RuleDryRunIn, arg_name="body")
@bp.output(RuleDryRunOut)
@bp.doc(
    summary="Replay recorded events through rules (given as TOML, or those in force) "
    "without acting: the decisions they would make",
    security=SECURITY,
    responses=signed_in(422),
)
def dry_run(body: dict[str, Any]) -> dict[str, Any]:
    from cloud.events import EXTENSION
    from cloud.events.library import shipped
    from cloud.events.worker import decision_json
    from cloud.events.worker import dry_run as replay

    if "rules" in body:
        try:
            rules = combine([("request", body["rules"])], shipped())
        except RuleError as exc:
            abort(422, str(exc))
    else:
        rules = current_app.extensions[EXTENSION].current()
    since, until = body.get("since"), body.get("until")
    try:
        since = None if since is None else utc(since)
        until = None if until is None else utc(until)
    except OverflowError:
        abort(422, "since or until is out of range")
    found = replay(session(), rules, since, until)
    personal = may_see_personal_data()
    out = []
    for decision in found[:MAX_DRY_RUN]:
        item = {"id": None, **decision_json(decision)}
        if not personal:
            item["subject"], item["inputs"] = None, None
        out.append(item)
    return {
        "rules": ["%s v%d" % (rule.id, rule.version) for rule in rules.rules],
        "decisions": out,
        "truncated": len(found) > MAX_DRY_RUN,
    }
