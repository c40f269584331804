"""The wearable bindings API, for cloud operations only (customers' pairing, issue 9, calls
``cloud.fleet.bindings`` directly):

- ``PUT /api/fleet/branches/<branch>/wearables/<address>``: bind a wearable to a branch
  with its IRK and BTHome bind key (32 hex digits each, or null); its gateways get the set
  sealed on their next delivery pass;
- ``DELETE`` the same: unbind it; its gateways stop decoding it once they apply the set.

Answers never hold a secret, only whether one is held.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, DateTime, Integer, String
from apiflask.validators import Length

from cloud.access import current_principal, require
from cloud.db import session
from cloud.fleet import bindings
from cloud.fleet.errors import NotFound
from cloud.identity.models import utcnow
from cloud.identity.runtime import key_wrapper
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("fleet_bindings", __name__, tag="Fleet")

_HEX32 = {"description": "32 hex digits, or null", "example": None}


class BindingIn(Schema):
    irk = String(load_default=None, allow_none=True, validate=Length(32, 32), metadata=_HEX32)
    bind_key = String(load_default=None, allow_none=True, validate=Length(32, 32), metadata=_HEX32)


class BindingOut(Schema):
    branch = Integer(required=True)
    address = String(required=True)
    irk = Boolean(required=True, metadata={"description": "an IRK is held (never shown)"})
    bind_key = Boolean(required=True, metadata={"description": "a bind key is held"})
    updated_at = DateTime(required=True)
    set_version = Integer(required=True, metadata={"description": "the branch set's version"})


@bp.put("/api/fleet/branches/<int:branch_id>/wearables/<address>")
@require("operations")
@bp.input(BindingIn, location="json")
@bp.output(BindingOut)
@bp.doc(
    summary="Bind a wearable to a branch (its IRK and BTHome bind key, sealed); the "
    "branch's gateways receive the set on their sealed downlink",
    security=SECURITY,
    responses=signed_in(404, 409, 422),
)
def put_binding(branch_id: int, address: str, json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    row = bindings.bind(
        db,
        branch_id,
        address,
        irk=json_data.get("irk"),
        key=json_data.get("bind_key"),
        actor=current_principal().actor,
        now=utcnow(),
        cipher=bindings.BindingCipher.from_wrapper(key_wrapper()),
    )
    db.commit()
    return bindings.binding_out(row, bindings.set_version(db, branch_id))


@bp.delete("/api/fleet/branches/<int:branch_id>/wearables/<address>")
@require("operations")
@bp.output({}, status_code=204)
@bp.doc(
    summary="Unbind a wearable from a branch; its gateways stop decoding it at once when "
    "they apply the new set",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def delete_binding(branch_id: int, address: str) -> tuple[str, int]:
    db = session()
    if not bindings.unbind(db, branch_id, address, actor=current_principal().actor, now=utcnow()):
        raise NotFound("wearable %s is not bound to branch %d" % (address, branch_id))
    db.commit()
    return "", 204
