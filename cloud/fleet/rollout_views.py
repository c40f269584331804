"""The rollout API: start a staged rollout of a release, follow it, halt, resume, cancel.

Starting and steering rollouts is for cloud operations; every signed-in role may follow
the rollouts whose devices are all in its branches.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from sqlalchemy import select

from cloud.access import ROLES, current_principal, require, visible_branches
from cloud.db import session
from cloud.fleet import rollout_plan, rollouts
from cloud.fleet.control_schemas import RolloutIn, RolloutOut, RolloutQuery, RolloutsOut
from cloud.fleet.errors import NotFound
from cloud.fleet.rollout_models import Rollout
from cloud.fleet.targets import Target
from cloud.identity.models import utcnow
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("fleet_rollouts", __name__, tag="Fleet")

SETTINGS = ("health_minutes", "failure_percent", "min_failures", "max_starts_per_minute")


@bp.post("/api/fleet/rollouts")
@require("operations")
@bp.input(RolloutIn, location="json")
@bp.output(RolloutOut, status_code=201)
@bp.doc(
    summary="Start a staged rollout of a ready release to a branch or a cohort: a canary "
    "wave, then waves gated on the devices' health, halted automatically on failures",
    security=SECURITY,
    responses=signed_in(404, 409, 422),
)
def create_rollout(json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    values: dict[str, Any] = {k: json_data[k] for k in SETTINGS if k in json_data}
    if "waves" in json_data:
        values["waves"] = tuple(json_data["waves"])
    principal = current_principal()
    rollout = rollouts.create(
        db,
        json_data["release_id"],
        Target.from_request(json_data),
        rollout_plan.Settings(**values),
        actor=principal.actor,
        visible=visible_branches(),
        now=utcnow(),
    )
    rollouts.advance(db, rollout, utcnow())  # the canary starts now, not at the next pass
    db.commit()
    return rollouts.rollout_out(db, rollout)


@bp.get("/api/fleet/rollouts")
@require(*ROLES)
@bp.input(RolloutQuery, location="query", arg_name="query")
@bp.output(RolloutsOut)
@bp.doc(summary="Rollouts, newest first", security=SECURITY, responses=signed_in())
def list_rollouts(query: dict[str, Any]) -> dict[str, Any]:
    db = session()
    statement = select(Rollout).order_by(Rollout.id.desc()).limit(200)
    if "state" in query:
        statement = statement.where(Rollout.state == query["state"])
    visible = visible_branches()
    out = []
    for rollout in db.scalars(statement):
        try:
            rollouts.get(db, rollout.id, visible)
        except NotFound:
            continue
        out.append(rollouts.rollout_out(db, rollout, with_members=False))
    return {"rollouts": out}


@bp.get("/api/fleet/rollouts/<int:rollout_id>")
@require(*ROLES)
@bp.output(RolloutOut)
@bp.doc(
    summary="A rollout and each device's part in it", security=SECURITY, responses=signed_in(404)
)
def get_rollout(rollout_id: int) -> dict[str, Any]:
    db = session()
    return rollouts.rollout_out(db, rollouts.get(db, rollout_id, visible_branches()))


def _steer(rollout_id: int, action: Any) -> dict[str, Any]:
    db = session()
    rollout = rollouts.get(db, rollout_id, visible_branches())
    action(db, rollout, actor=current_principal().actor, now=utcnow())
    db.commit()
    return rollouts.rollout_out(db, rollout)


@bp.post("/api/fleet/rollouts/<int:rollout_id>/halt")
@require("operations")
@bp.output(RolloutOut)
@bp.doc(summary="Halt a running rollout", security=SECURITY, responses=signed_in(404, 409))
def halt_rollout(rollout_id: int) -> dict[str, Any]:
    return _steer(rollout_id, rollouts.halt)


@bp.post("/api/fleet/rollouts/<int:rollout_id>/resume")
@require("operations")
@bp.output(RolloutOut)
@bp.doc(
    summary="Resume a halted rollout (its failures so far are forgiven)",
    security=SECURITY,
    responses=signed_in(404, 409),
)
def resume_rollout(rollout_id: int) -> dict[str, Any]:
    return _steer(rollout_id, rollouts.resume)


@bp.post("/api/fleet/rollouts/<int:rollout_id>/cancel")
@require("operations")
@bp.output(RolloutOut)
@bp.doc(summary="Cancel a rollout", security=SECURITY, responses=signed_in(404, 409))
def cancel_rollout(rollout_id: int) -> dict[str, Any]:
    return _steer(rollout_id, rollouts.cancel)
