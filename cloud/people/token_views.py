"""API tokens of the signed-in operator: ``/api/tokens``.

A token is made from a signed-in session (not with another token, so a leaked token cannot
mint itself successors), is shown once, and can be revoked by its owner.
"""

from __future__ import annotations

from apiflask import APIBlueprint, abort
from sqlalchemy import select

from cloud.access import current_principal
from cloud.audit import record
from cloud.db import session
from cloud.people.authenticate import (
    current_credential,
    current_operator,
    operator_required,
    require_session,
)
from cloud.people.credentials import as_utc, utcnow
from cloud.people.models import ApiToken
from cloud.people.openapi import SECURITY, signed_in
from cloud.people.rows import by_id
from cloud.people.schemas import NewTokenOut, TokenIn, TokensOut
from cloud.people.tokens import issue_token, token_status

bp = APIBlueprint("api_tokens", __name__, tag="API tokens")


def token_out(row: ApiToken) -> dict:
    """The TokenOut body of ``row`` (never the secret)."""
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "status": token_status(row),
        "created_at": as_utc(row.created_at),
        "expires_at": as_utc(row.expires_at),
        "revoked_at": as_utc(row.revoked_at) if row.revoked_at is not None else None,
    }


@bp.post("/api/tokens")
@operator_required
@bp.input(TokenIn, arg_name="body")
@bp.output(NewTokenOut, status_code=201)
@bp.doc(
    summary="Make an API token for myself (shown once)", security=SECURITY, responses=signed_in()
)
def create(body: dict) -> dict:
    principal = current_principal()
    require_session("make API tokens")  # so a leaked token cannot mint its successors
    db = session()
    secret, row = issue_token(
        db, principal.actor, current_operator(), body["name"], body["expires_in_days"]
    )
    db.commit()
    return {**token_out(row), "token": secret}


@bp.get("/api/tokens")
@operator_required
@bp.output(TokensOut)
@bp.doc(summary="My API tokens (without their secrets)", security=SECURITY, responses=signed_in())
def list_tokens() -> dict:
    current_principal()
    query = (
        select(ApiToken)
        .where(ApiToken.operator_id == current_credential().operator_id)
        .order_by(ApiToken.id)
    )
    return {"tokens": [token_out(row) for row in session().scalars(query)]}


@bp.delete("/api/tokens/<int:token_id>")
@operator_required
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke one of my API tokens", security=SECURITY, responses=signed_in(404))
def revoke(token_id: int) -> tuple[str, int]:
    principal = current_principal()
    db = session()
    row = by_id(db, ApiToken, token_id)
    if row is None or row.operator_id != current_credential().operator_id:
        abort(404)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record(db, principal.actor, "token.revoke", "token:%d" % row.id, name=row.name)
        db.commit()
    return "", 204
