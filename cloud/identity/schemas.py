"""Request and response schemas of the identity API (OpenAPI via apiflask)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp

from cloud.identity.claims import DEFAULT_TTL, MAX_TTL, MIN_TTL, TOKEN_PREFIX
from cloud.identity.csr import MAX_CSR_CHARS
from cloud.identity.enrollment import MAX_CERT_CHARS
from cloud.identity.models import ENROLLABLE_KINDS, utc
from cloud.identity.revocation import REASONS

CLAIM_STATUSES = ("pending", "redeemed", "cancelled", "expired")
TOKEN_PATTERN = "^%s[A-Za-z0-9_-]{43}$" % TOKEN_PREFIX


class UTCDateTime(DateTime):
    """An ISO 8601 time with its UTC offset (SQLite hands back naive UTC times)."""

    def _serialize(self, value: dt.datetime | None, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return super()._serialize(utc(value) if value is not None else None, attr, obj, **kwargs)


def _expires_in() -> Integer:
    return Integer(
        load_default=int(DEFAULT_TTL.total_seconds()),
        validate=Range(int(MIN_TTL.total_seconds()), int(MAX_TTL.total_seconds())),
        metadata={"description": "seconds until the token expires (default 24 h)"},
    )


class ClaimIn(Schema):
    branch_id = Integer(required=True, validate=Range(min=1))
    kind = String(required=True, validate=OneOf(ENROLLABLE_KINDS))
    expires_in = _expires_in()
    note = String(load_default="", validate=Length(max=200))


class ReclaimIn(Schema):
    expires_in = _expires_in()
    note = String(load_default="", validate=Length(max=200))


class ClaimOut(Schema):
    id = Integer(required=True)
    branch_id = Integer(required=True)
    kind = String(required=True)
    device_id = Integer(allow_none=True)
    note = String()
    created_by = String(required=True)
    created_at = UTCDateTime(required=True)
    expires_at = UTCDateTime(required=True)
    redeemed_at = UTCDateTime(allow_none=True)
    status = String(required=True, validate=OneOf(CLAIM_STATUSES))


class ClaimCreatedOut(ClaimOut):
    token = String(
        required=True, metadata={"description": "shown once: give it to the enrolling device"}
    )


class ClaimsQuery(Schema):
    branch_id = Integer(validate=Range(min=1))
    status = String(validate=OneOf(CLAIM_STATUSES))


class EnrollIn(Schema):
    token = String(required=True, validate=Regexp(TOKEN_PATTERN))
    csr = String(
        required=True,
        validate=Length(1, MAX_CSR_CHARS),
        metadata={"description": "PEM CSR, EC P-256, subject CN = the device uid"},
    )


class EnvelopeKeyOut(Schema):
    version = Integer(required=True)
    secret = String(required=True, metadata={"description": "base64; shown once"})


class EndpointsOut(Schema):
    mqtt = String(allow_none=True)
    coap = String(allow_none=True)


class TopicsOut(Schema):
    up = String(required=True)
    down = String(required=True)
    branch_down = String(required=True)


class DeviceRefOut(Schema):
    id = Integer(required=True)
    uid = String(required=True)
    kind = String(required=True)
    branch_id = Integer(required=True)


class CertificateBundleOut(Schema):
    device = Nested(DeviceRefOut, required=True)
    certificate = String(required=True)
    ca_chain = String(required=True)
    serial = String(required=True)
    not_after = UTCDateTime(required=True)
    renew_after = UTCDateTime(required=True)


class EnrollmentOut(CertificateBundleOut):
    reprovisioned = Boolean(required=True)
    envelope_key = Nested(EnvelopeKeyOut, required=True)
    endpoints = Nested(EndpointsOut, required=True)
    topics = Nested(TopicsOut, required=True)
    config = Dict(keys=String(), required=True)


class RenewIn(Schema):
    certificate = String(required=True, validate=Length(1, MAX_CERT_CHARS))
    csr = String(required=True, validate=Length(1, MAX_CSR_CHARS))
    proof = String(
        load_default="",
        validate=Length(max=200),
        metadata={
            "description": "base64 ECDSA-SHA256 over the CSR's DER, by the current key; "
            "needed only when the CSR has a new key"
        },
    )


class RevokeIn(Schema):
    reason = String(load_default="unspecified", validate=OneOf(REASONS))
    note = String(load_default="", validate=Length(max=200))


class RevokedOut(Schema):
    device = Nested(DeviceRefOut, required=True)
    status = String(required=True)
    revoked_serials = List(String(), required=True)
    revoked_key_versions = List(Integer(), required=True)


class CertificateOut(Schema):
    serial = String(required=True)
    subject = String(required=True)
    purpose = String(required=True)
    not_before = UTCDateTime(required=True)
    not_after = UTCDateTime(required=True)
    issued_at = UTCDateTime(required=True)
    status = String(required=True, validate=OneOf(("active", "revoked", "expired")))
    revoked_at = UTCDateTime(allow_none=True)
    revocation_reason = String(allow_none=True)
