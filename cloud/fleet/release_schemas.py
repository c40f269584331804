"""Request and response schemas of the releases API (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Regexp

from bankiot_core.manifest import BOARDS, MAX_MANIFEST_BYTES
from cloud.fleet.releases import STATUSES

SHA256 = r"^[0-9a-f]{64}$"


class ReleaseIn(Schema):
    manifest = String(
        required=True,
        validate=Length(1, MAX_MANIFEST_BYTES),
        metadata={"description": "manifest.json: the canonical JSON text, exactly as signed"},
    )
    signature = String(
        required=True,
        validate=Regexp(r"^[A-Za-z0-9+/=]{1,200}$"),
        metadata={"description": "base64 of the 64-byte Ed25519 signature of the manifest"},
    )
    key_id = String(
        required=True,
        validate=Regexp(r"^[0-9a-f]{16}$"),
        metadata={"description": "the signing key's id (first 8 bytes of SHA-256 of it, hex)"},
    )


class ReleasesQuery(Schema):
    board = String(validate=OneOf(BOARDS))
    status = String(validate=OneOf(STATUSES))


class ReleaseFileOut(Schema):
    path = String(required=True)
    sha256 = String(required=True)
    size = Integer(required=True)
    stored = Boolean(required=True)


class ReleaseOut(Schema):
    id = Integer(required=True)
    board = String(required=True)
    version = String(required=True)
    status = String(required=True, metadata={"description": "incomplete, ready or retired"})
    ready = Boolean(required=True, metadata={"description": "every file is stored"})
    retired = Boolean(required=True, metadata={"description": "no new rollout may use it"})
    key_id = String(required=True)
    manifest_sha256 = String(required=True)
    file_count = Integer(required=True)
    total_size = Integer(required=True)
    created_at = DateTime(required=True)
    created_by = String(required=True)
    ready_at = DateTime(required=True, allow_none=True)
    retired_at = DateTime(required=True, allow_none=True)
    retired_by = String(required=True, allow_none=True)
    missing_count = Integer(required=True, metadata={"description": "files not stored yet"})


class ReleaseDetailOut(ReleaseOut):
    missing = List(
        String(),
        required=True,
        metadata={"description": "SHA-256 of each file still to upload (PUT .../files/<sha256>)"},
    )
    files = List(Nested(ReleaseFileOut), required=True)


class ReleasesOut(Schema):
    releases = List(Nested(ReleaseOut), required=True)
