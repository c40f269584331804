"""The identity API under ``/api/identity``.

Operators (``cloud.access``): create, list and cancel claims, issue re-claims, revoke
devices, read certificate history; always within the branches they may act on (404 for
others). Devices: ``/enroll`` (authenticated by the claim token alone) and ``/renew``
(by their current certificate and key, see ``enrollment``). Public: the CA chain and the
CRL. Every action is audited; every refusal is a one-line message with its status.
"""

from __future__ import annotations

import base64
import datetime as dt
from http import HTTPStatus
from typing import Any

from apiflask import APIBlueprint, abort
from apiflask.types import ResponsesObjectType
from flask import Response, current_app, request
from sqlalchemy import select

from cloud import audit
from cloud.access import check_branch, current_principal, require, visible_branches
from cloud.fleet.models import Branch, Device
from cloud.identity import claims, enrollment, revocation, runtime, schemas
from cloud.identity.ca import DEVICE_VALIDITY, FleetCA, pem
from cloud.identity.errors import CANotInitialised, IdentityError
from cloud.identity.models import ENROLLABLE_KINDS, ClaimToken, IssuedCertificate, utcnow
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("identity", __name__, url_prefix="/api/identity", tag="Identity")

OPERATORS = ("operations", "branch_manager", "technician")
PEM_RESPONSES: ResponsesObjectType = {
    200: {
        "description": "PEM text",
        "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
    },
    404: {"description": "the fleet CA is not initialised"},
}


def _device(*statuses: int) -> dict[int, str]:
    """Responses of a device view (400: a body that is not JSON; 429: too many refusals)."""
    return {status: HTTPStatus(status).phrase for status in statuses}


def _device_or_404(device_id: int) -> Device:
    device = runtime.db_session().get(Device, device_id)
    if device is None:
        abort(404, "no such device")
    check_branch(device.branch_id)
    return device


def _claim_out(claim: ClaimToken, now: dt.datetime, token: str | None = None) -> dict[str, Any]:
    out = {
        "id": claim.id,
        "branch_id": claim.branch_id,
        "kind": claim.kind,
        "device_id": claim.device_id,
        "note": claim.note,
        "created_by": claim.created_by,
        "created_at": claim.created_at,
        "expires_at": claim.expires_at,
        "redeemed_at": claim.redeemed_at,
        "status": claim.status(now),
    }
    if token is not None:
        out["token"] = token
    return out


def _device_ref(device: Device) -> dict[str, Any]:
    return {"id": device.id, "uid": device.uid, "kind": device.kind, "branch_id": device.branch_id}


def _bundle(issued: enrollment.Issued) -> dict[str, Any]:
    cert = issued.certificate
    not_after = cert.not_valid_after_utc
    return {
        "device": _device_ref(issued.device),
        "certificate": pem(cert).decode(),
        "ca_chain": runtime.authority().chain_pem.decode(),
        "serial": "%x" % cert.serial_number,
        "not_after": not_after,
        # renew once two thirds of the validity have passed (cert-manager's default too)
        "renew_after": not_after - DEVICE_VALIDITY / 3,
    }


@bp.post("/claims")
@require(*OPERATORS)
@bp.input(schemas.ClaimIn, location="json")
@bp.output(schemas.ClaimCreatedOut, status_code=201)
@bp.doc(
    summary="Create a claim token for a branch and device kind",
    security=SECURITY,
    responses=signed_in(400, 404),
)
def create_claim(json_data: dict[str, Any]) -> dict[str, Any]:
    """The token is in this answer only: the cloud keeps its SHA-256."""
    check_branch(json_data["branch_id"])
    if runtime.db_session().get(Branch, json_data["branch_id"]) is None:
        abort(404, "no such branch")
    return _new_claim(json_data["branch_id"], json_data["kind"], json_data)


@bp.post("/devices/<int:device_id>/claims")
@require(*OPERATORS)
@bp.input(schemas.ReclaimIn, location="json")
@bp.output(schemas.ClaimCreatedOut, status_code=201)
@bp.doc(
    summary="Re-claim: a token to re-provision this device record (after a factory reset)",
    security=SECURITY,
    responses=signed_in(400, 404, 422),
)
def create_reclaim(device_id: int, json_data: dict[str, Any]) -> dict[str, Any]:
    """Redeeming it revokes the device's certificates and envelope keys and issues new ones
    to the same device record; a new re-claim cancels the device's pending ones."""
    device = _device_or_404(device_id)
    if device.kind not in ENROLLABLE_KINDS:
        abort(422, "a %s does not enroll" % device.kind)
    return _new_claim(device.branch_id, device.kind, json_data, device)


def _new_claim(
    branch_id: int, kind: str, json_data: dict[str, Any], device: Device | None = None
) -> dict[str, Any]:
    session = runtime.db_session()
    now = utcnow()
    claim, token = claims.create_claim(
        session,
        current_principal().actor,
        branch_id,
        kind,
        now,
        dt.timedelta(seconds=json_data["expires_in"]),
        device=device,
        note=json_data["note"],
    )
    session.commit()
    return _claim_out(claim, now, token)


@bp.get("/claims")
@require(*OPERATORS)
@bp.input(schemas.ClaimsQuery, location="query")
@bp.output(schemas.ClaimOut(many=True))
@bp.doc(
    summary="Claims in the branches the caller may see, newest first",
    security=SECURITY,
    responses=signed_in(),
)
def list_claims(query_data: dict[str, Any]) -> list[dict[str, Any]]:
    """Tokens are never listed."""
    statement = select(ClaimToken).order_by(ClaimToken.id.desc())
    branches = visible_branches()
    if branches is not None:
        statement = statement.where(ClaimToken.branch_id.in_(list(branches)))
    if "branch_id" in query_data:
        statement = statement.where(ClaimToken.branch_id == query_data["branch_id"])
    now = utcnow()
    rows = [_claim_out(c, now) for c in runtime.db_session().scalars(statement)]
    wanted = query_data.get("status")
    return [row for row in rows if wanted is None or row["status"] == wanted]


@bp.delete("/claims/<int:claim_id>")
@require(*OPERATORS)
@bp.output({}, status_code=204)
@bp.doc(summary="Cancel a pending claim", security=SECURITY, responses=signed_in(404, 422))
def cancel_claim(claim_id: int) -> tuple[str, int]:
    """Only a pending claim can be cancelled."""
    session = runtime.db_session()
    claim = session.get(ClaimToken, claim_id)
    if claim is None:
        abort(404, "no such claim")
    check_branch(claim.branch_id)
    claims.cancel_claim(session, current_principal().actor, claim, utcnow())
    session.commit()
    return "", 204


def _refused(action: str, error: IdentityError) -> None:
    """Audit a refused device request in a transaction of its own (never the token)."""
    session = runtime.db_session()
    session.rollback()
    audit.record(
        session,
        "anonymous",
        action,
        request.remote_addr or "",
        reason=error.message,
        status=error.status,
    )
    session.commit()


@bp.post("/enroll")
@bp.input(schemas.EnrollIn, location="json")
@bp.output(schemas.EnrollmentOut, status_code=201)
@bp.doc(
    summary="Device: redeem a claim token and a CSR for a certificate and an envelope key",
    responses=_device(400, 401, 409, 410, 422, 429, 503),
)
def enroll(json_data: dict[str, Any]) -> dict[str, Any]:
    """Authenticated by the claim token alone. The CSR is PEM, EC P-256, with the device uid
    as its only CN. The envelope key is in this answer only."""
    session = runtime.db_session()
    now = utcnow()
    try:
        result = enrollment.enroll(
            session,
            runtime.authority,
            runtime.key_wrapper(),
            json_data["token"],
            json_data["csr"],
            now,
        )
        session.commit()
    except IdentityError as exc:
        _refused("device.enroll.refused", exc)
        raise
    runtime.publish(session, now, crl=bool(result.superseded))
    device = result.device
    broker = current_app.config.get("BROKER_URL")
    coap = current_app.config.get("COAP")
    return {
        **_bundle(result),
        "reprovisioned": result.reprovisioned,
        "envelope_key": {
            "version": result.key_version,
            "secret": base64.b64encode(result.secret).decode(),
        },
        "endpoints": {"mqtt": broker or None, "coap": "coap://%s" % coap if coap else None},
        "topics": {
            "up": "devices/%s/up" % device.uid,
            "down": "devices/%s/down" % device.uid,
            "branch_down": "branches/%d/down" % device.branch_id,
        },
        "config": runtime.initial_config(device),
    }


@bp.post("/renew")
@bp.input(schemas.RenewIn, location="json")
@bp.output(schemas.CertificateBundleOut)
@bp.doc(
    summary="Device: a new certificate, proved by the current certificate's key",
    responses=_device(400, 403, 422, 429, 503),
)
def renew(json_data: dict[str, Any]) -> dict[str, Any]:
    """Send the current certificate and a CSR signed by its key; with a new key, also a
    ``proof``: base64 ECDSA-SHA256 by the current key over the new CSR's DER."""
    session = runtime.db_session()
    now = utcnow()
    try:
        issued = enrollment.renew(
            session,
            runtime.authority,
            json_data["certificate"],
            json_data["csr"],
            json_data["proof"],
            now,
        )
        session.commit()
    except IdentityError as exc:
        _refused("certificate.renew.refused", exc)
        raise
    runtime.publish(session, now, crl=bool(issued.superseded))
    return _bundle(issued)


@bp.post("/devices/<int:device_id>/revoke")
@require(*OPERATORS)
@bp.input(schemas.RevokeIn, location="json")
@bp.output(schemas.RevokedOut)
@bp.doc(
    summary="Revoke a device: its certificates (CRL) and envelope keys",
    security=SECURITY,
    responses=signed_in(400, 404, 503),
)
def revoke(device_id: int, json_data: dict[str, Any]) -> dict[str, Any]:
    """The CRL is re-signed at once; the broker applies it when it restarts."""
    device = _device_or_404(device_id)
    session = runtime.db_session()
    now = utcnow()
    runtime.authority()  # fail before changing anything if the CRL cannot be signed
    done = revocation.revoke_device(
        session, current_principal().actor, device, json_data["reason"], now, json_data["note"]
    )
    session.commit()
    runtime.publish(session, now)
    return {
        "device": _device_ref(device),
        "status": device.status,
        "revoked_serials": done.serials,
        "revoked_key_versions": done.key_versions,
    }


@bp.get("/devices/<int:device_id>/certificates")
@require(*OPERATORS)
@bp.output(schemas.CertificateOut(many=True))
@bp.doc(
    summary="A device's certificates, newest first, revoked ones included",
    security=SECURITY,
    responses=signed_in(404),
)
def certificates(device_id: int) -> list[dict[str, Any]]:
    """History is kept across renewals, re-provisioning and revocation."""
    device = _device_or_404(device_id)
    now = utcnow()
    rows = runtime.db_session().scalars(
        select(IssuedCertificate)
        .where(IssuedCertificate.device_id == device.id)
        .order_by(IssuedCertificate.id.desc())
    )
    return [
        {
            "serial": row.serial,
            "subject": row.subject,
            "purpose": row.purpose,
            "not_before": row.not_before,
            "not_after": row.not_after,
            "issued_at": row.issued_at,
            "status": row.status(now),
            "revoked_at": row.revoked_at,
            "revocation_reason": row.revocation_reason,
        }
        for row in rows
    ]


def _public_ca() -> FleetCA:
    """The CA for the public downloads; 404 (nothing to download yet) before ``ca init``."""
    try:
        return runtime.authority()
    except CANotInitialised as exc:
        abort(404, exc.message)


@bp.get("/ca.pem")
@bp.doc(
    summary="The fleet CA chain (issuing CA, then root)",
    responses=PEM_RESPONSES,
)
def ca_chain() -> Response:
    """What devices and brokers trust."""
    return Response(_public_ca().chain_pem, mimetype="application/x-pem-file")


@bp.get("/crl.pem")
@bp.doc(
    summary="The current certificate revocation list (what the broker's crlfile holds)",
    responses=PEM_RESPONSES,
)
def crl() -> Response:
    """Signed by the issuing CA; valid for 7 days."""
    _public_ca()
    path = runtime.data_dir() / revocation.CRL_FILE
    if not path.exists():
        runtime.publish(runtime.db_session(), utcnow())
    return Response(path.read_bytes(), mimetype="application/x-pem-file")
