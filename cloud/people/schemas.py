"""Request and response schemas of the people and access API (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp

from cloud.access import ROLES
from cloud.people.operators import NAME_PATTERN
from cloud.people.passwords import MAX_LENGTH
from cloud.people.rows import MAX_ID
from cloud.people.tokens import DEFAULT_DAYS, MAX_DAYS

LOGIN_NAME = Regexp(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
BRANCH_CODE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
PRINTABLE = r"^[\x20-\x7e]{1,128}$"


def password_field(**kwargs) -> String:
    return String(required=True, validate=Length(1, MAX_LENGTH), load_only=True, **kwargs)


class LoginIn(Schema):
    name = String(required=True, validate=LOGIN_NAME)
    password = password_field()


class WhoAmIOut(Schema):
    name = String(required=True)
    role = String(required=True)
    branches = List(String(), required=True, metadata={"description": "codes; all for operations"})
    all_branches = Boolean(required=True)
    method = String(required=True, metadata={"description": "session or token"})
    csrf_token = String(
        allow_none=True,
        metadata={"description": "send as X-CSRF-Token on state-changing requests (sessions)"},
    )
    expires_at = DateTime(allow_none=True)


class PasswordChangeIn(Schema):
    current_password = password_field()
    new_password = password_field()


class TokenIn(Schema):
    name = String(
        required=True,
        validate=Regexp(r"^[\x20-\x7e]{1,64}$", error="1 to 64 printable ASCII characters"),
    )
    expires_in_days = Integer(load_default=DEFAULT_DAYS, validate=Range(1, MAX_DAYS))


class TokenOut(Schema):
    id = Integer(required=True)
    name = String(required=True)
    prefix = String(required=True)
    status = String(required=True, validate=OneOf(("active", "expired", "revoked")))
    created_at = DateTime(required=True)
    expires_at = DateTime(required=True)
    revoked_at = DateTime(allow_none=True)


class NewTokenOut(TokenOut):
    token = String(required=True, metadata={"description": "the secret: shown this once"})


class TokensOut(Schema):
    tokens = List(Nested(TokenOut), required=True)


class OperatorIn(Schema):
    name = String(required=True, validate=Regexp(NAME_PATTERN))
    role = String(required=True, validate=OneOf(ROLES))
    branches = List(String(validate=Regexp(BRANCH_CODE)), load_default=list)
    password = password_field()


class OperatorPatch(Schema):
    role = String(validate=OneOf(ROLES))
    branches = List(String(validate=Regexp(BRANCH_CODE)))
    active = Boolean()


class OperatorOut(Schema):
    id = Integer(required=True)
    name = String(required=True)
    role = String(required=True)
    branches = List(String(), required=True)
    active = Boolean(required=True)
    created_at = DateTime(required=True)


class OperatorsOut(Schema):
    operators = List(Nested(OperatorOut), required=True)


class BranchIn(Schema):
    code = String(required=True, validate=Regexp(BRANCH_CODE))
    name = String(required=True, validate=Regexp(r"^[^\x00-\x1f\x7f]{1,200}$"))


class BranchOut(Schema):
    id = Integer(required=True)
    code = String(required=True)
    name = String(required=True)
    created_at = DateTime(required=True)


class BranchesOut(Schema):
    branches = List(Nested(BranchOut), required=True)


class DeviceOut(Schema):
    id = Integer(required=True)
    uid = String(required=True)
    kind = String(required=True)
    branch_id = Integer(required=True)
    name = String(required=True)
    model = String(required=True)
    status = String(required=True)
    firmware_version = String(required=True)
    created_at = DateTime(required=True)
    last_seen_at = DateTime(allow_none=True)


class AuditQuery(Schema):
    action = String(validate=Regexp(r"^[a-z0-9_.]{1,64}$"))
    actor = String(validate=Regexp(PRINTABLE))
    before = Integer(
        validate=Range(1, MAX_ID), metadata={"description": "events older than this id"}
    )
    limit = Integer(load_default=100, validate=Range(1, 500))


class AuditEventOut(Schema):
    id = Integer(required=True)
    at = DateTime(required=True)
    actor = String(required=True)
    action = String(required=True)
    target = String(required=True)
    details = Dict(required=True)


class AuditOut(Schema):
    events = List(Nested(AuditEventOut), required=True)
    next_before = Integer(
        allow_none=True, required=True, metadata={"description": "`before` for the next page"}
    )
