"""Operator accounts, for cloud operations only: ``/api/operators``."""

from __future__ import annotations

from typing import NoReturn

from apiflask import APIBlueprint, abort
from sqlalchemy import select

from cloud.access import current_principal, require
from cloud.db import session
from cloud.people.credentials import as_utc
from cloud.people.models import Operator
from cloud.people.openapi import SECURITY, signed_in
from cloud.people.operators import (
    OperatorConflict,
    OperatorError,
    OperatorExists,
    create_operator,
    update_operator,
)
from cloud.people.passwords import PasswordPolicyError
from cloud.people.rows import by_id
from cloud.people.schemas import OperatorIn, OperatorOut, OperatorPatch, OperatorsOut

bp = APIBlueprint("operators", __name__, tag="Operators")


def operator_out(operator: Operator) -> dict:
    """The OperatorOut body of ``operator``."""
    return {
        "id": operator.id,
        "name": operator.name,
        "role": operator.role,
        "branches": [branch.code for branch in operator.branches],
        "active": operator.active,
        "created_at": as_utc(operator.created_at),
    }


def _refuse(exc: OperatorError | PasswordPolicyError, field: str) -> NoReturn:
    if isinstance(exc, OperatorExists | OperatorConflict):
        abort(409, str(exc))
    abort(422, str(exc), detail={"json": {field: [str(exc)]}})


def _operator_or_404(operator_id: int) -> Operator:
    operator = by_id(session(), Operator, operator_id)
    if operator is None:
        abort(404)
    return operator


# Declared before the listing that nests its output schema, so the OpenAPI document names
# that schema once (apiflask registers the first use; apispec would add a duplicate).
@bp.post("/api/operators")
@require("operations")
@bp.input(OperatorIn, arg_name="body")
@bp.output(OperatorOut, status_code=201)
@bp.doc(summary="Add an operator account", security=SECURITY, responses=signed_in(409))
def create(body: dict) -> dict:
    db = session()
    try:
        operator = create_operator(
            db,
            current_principal().actor,
            body["name"],
            body["role"],
            body["branches"],
            body["password"],
        )
    except PasswordPolicyError as exc:
        _refuse(exc, "password")
    except OperatorError as exc:
        _refuse(exc, "branches" if "branch" in str(exc) else "name")
    db.commit()
    return operator_out(operator)


@bp.get("/api/operators")
@require("operations")
@bp.output(OperatorsOut)
@bp.doc(summary="Every operator account", security=SECURITY, responses=signed_in())
def list_operators() -> dict:
    operators = session().scalars(select(Operator).order_by(Operator.name))
    return {"operators": [operator_out(operator) for operator in operators]}


@bp.get("/api/operators/<int:operator_id>")
@require("operations")
@bp.output(OperatorOut)
@bp.doc(summary="One operator account", security=SECURITY, responses=signed_in(404))
def show(operator_id: int) -> dict:
    return operator_out(_operator_or_404(operator_id))


@bp.patch("/api/operators/<int:operator_id>")
@require("operations")
@bp.input(OperatorPatch, arg_name="body")
@bp.output(OperatorOut)
@bp.doc(
    summary="Change an operator's role, branches, or disable them (ends their sessions and tokens)",
    security=SECURITY,
    responses=signed_in(404, 409),
)
def update(operator_id: int, body: dict) -> dict:
    db = session()
    operator = _operator_or_404(operator_id)
    try:
        update_operator(
            db,
            current_principal().actor,
            operator,
            role=body.get("role"),
            branch_codes=body.get("branches"),
            active=body.get("active"),
        )
    except OperatorError as exc:
        _refuse(exc, "branches")
    db.commit()
    return operator_out(operator)
