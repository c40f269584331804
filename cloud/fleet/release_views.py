"""The releases API.

Operators, under ``/api/fleet/releases`` (role ``operations`` changes, every signed-in role
reads; every change audited):

- ``POST /api/fleet/releases`` {manifest, signature, key_id}: 201 new; 200 the same
  manifest again; 403 unknown key or bad signature; 409 the version exists with another
  manifest; 422 a signed manifest the core parser refuses.
- ``PUT /api/fleet/releases/<id>/files/<sha256>`` (octet-stream): 200 stored (now or
  before); 404 not a file of this release; 409 retired; 422 wrong size or hash (nothing
  stored).
- ``GET /api/fleet/releases``, ``GET /api/fleet/releases/<id>``: the releases; one with its
  files and the files still missing.
- ``POST /api/fleet/releases/<id>/retire``: no new rollout may use it.

Devices, under ``/releases/v1``, without credentials: ``<id>/manifest.json``,
``<id>/manifest.sig`` and ``blobs/<sha256>``, for ready (or retired) releases only. Why no
credentials: the content is integrity-protected end to end (the board checks the Ed25519
signature with the release keys it carries, then every file's SHA-256 as it writes it), so
neither TLS nor a login adds integrity; firmware holds no secrets (device keys are
provisioned per device, never in a release), so there is nothing to keep confidential; and
a board whose certificate has lapsed or was revoked and re-claimed can still be repaired.
What a board must also check itself: the board name, and a version not lower than the one
it runs (``bankiot_core.manifest.version_key``), since an old release stays validly signed.
Content is immutable (an id's manifest never changes, a blob is named by its hash), so the
answers may be cached by any proxy (``Cache-Control: public, immutable``).
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn

from apiflask import APIBlueprint, APIFlask, abort
from flask import Flask, Response, current_app, request, send_file

from cloud.access import ROLES, current_principal, require
from cloud.db import session
from cloud.fleet import release_schemas as schemas
from cloud.fleet import releases
from cloud.fleet.release_keys import load_trusted_keys
from cloud.fleet.release_models import Release
from cloud.fleet.release_store import BlobStore
from cloud.people.openapi import SECURITY, signed_in
from provisioning.release_signing import Signature

bp = APIBlueprint("fleet_releases", __name__, tag="Releases")
devices_bp = APIBlueprint("release_downloads", __name__, url_prefix="/releases/v1", tag="Releases")

KEYS = "bankiot.release_keys"
STORE = "bankiot.release_store"
MAX_ID = 2**31 - 1  # Integer primary keys: 32-bit on PostgreSQL
SHA256_CHARS = frozenset("0123456789abcdef")
FILE_PATH = "/api/fleet/releases/{release_id}/files/{sha256}"
IMMUTABLE_SECONDS = 365 * 24 * 3600

_BINARY = {"type": "string", "format": "binary"}


def init_app(app: Flask) -> None:
    """Read the trusted release keys (a bad key file stops start-up), install both APIs."""
    assert isinstance(app, APIFlask)
    app.extensions[KEYS] = load_trusted_keys(app.config)
    app.extensions[STORE] = BlobStore(Path(app.config["DATA_DIR"]) / "releases" / "blobs")
    app.register_blueprint(bp)
    app.register_blueprint(devices_bp)
    previous = app.spec_callback

    def spec(document: Any) -> Any:  # the raw request body, after any other area's changes
        document = previous(document) if previous is not None else document
        return document_request_body(document)

    app.spec_callback = spec


def document_request_body(spec: dict[str, Any]) -> dict[str, Any]:
    """Declare the raw file body of the upload (apiflask's ``input`` knows JSON, forms and
    files, not a raw binary body)."""
    operation = spec.get("paths", {}).get(FILE_PATH, {}).get("put")
    if operation is not None:
        operation["requestBody"] = {
            "required": True,
            "description": "The file's bytes, exactly as the manifest lists them",
            "content": {"application/octet-stream": {"schema": _BINARY}},
        }
    return spec


def _refused(exc: releases.ReleaseRefused) -> NoReturn:
    abort(exc.status, exc.message)


def _release(release_id: int) -> Release:
    if not 0 < release_id <= MAX_ID:
        abort(404, "no such release")
    try:
        return releases.get_release(session(), release_id)
    except releases.ReleaseRefused as exc:
        _refused(exc)


def _detail(release: Release) -> dict[str, Any]:
    return releases.release_out(release, releases.missing_files(session(), release))


def _phrases(*statuses: int) -> dict[int, str]:
    return {status: HTTPStatus(status).phrase for status in statuses}


@bp.post("/api/fleet/releases")
@require("operations")
@bp.input(schemas.ReleaseIn, location="json", arg_name="body")
@bp.output(schemas.ReleaseDetailOut, status_code=201)
@bp.doc(
    summary="Upload a signed release manifest (then PUT each missing file)",
    description="The same manifest again answers 200 with the existing release.",
    security=SECURITY,
    responses={**signed_in(409, 422), 200: "This manifest was uploaded before"},
)
def create(body: dict[str, Any]) -> Any:
    keys = current_app.extensions[KEYS]
    try:
        created = releases.create_release(
            session(),
            current_principal().actor,
            body["manifest"],
            body["signature"],
            body["key_id"],
            keys,
        )
    except releases.ReleaseRefused as exc:
        _refused(exc)
    return _detail(created.release), 201 if created.new else 200


@bp.put("/api/fleet/releases/<int:release_id>/files/<sha256>")
@require("operations")
@bp.output(schemas.ReleaseDetailOut)
@bp.doc(
    summary="Upload one file of a release, named by its SHA-256",
    security=SECURITY,
    responses=signed_in(404, 409, 422),
)
def put_file(release_id: int, sha256: str) -> Any:
    release = _release(release_id)
    if len(sha256) != 64 or not SHA256_CHARS.issuperset(sha256):
        abort(404, "a file is named by its SHA-256: 64 lower-case hex digits")
    store = current_app.extensions[STORE]
    try:
        releases.store_file(
            session(),
            store,
            current_principal().actor,
            release,
            sha256,
            request.stream,
            request.content_length,
        )
    except releases.ReleaseRefused as exc:
        _refused(exc)
    return _detail(_release(release_id))


@bp.get("/api/fleet/releases")
@require(*ROLES)
@bp.input(schemas.ReleasesQuery, location="query", arg_name="query")
@bp.output(schemas.ReleasesOut)
@bp.doc(
    summary="Releases by board and version, with their status",
    security=SECURITY,
    responses=signed_in(),
)
def index(query: dict[str, Any]) -> dict[str, Any]:
    db = session()
    missing = releases.missing_counts(db)
    found = releases.list_releases(db, query.get("board"), query.get("status"))
    return {"releases": [releases.release_out(r, missing.get(r.id, 0)) for r in found]}


@bp.get("/api/fleet/releases/<int:release_id>")
@require(*ROLES)
@bp.output(schemas.ReleaseDetailOut)
@bp.doc(
    summary="One release: status, files, and the files still missing",
    security=SECURITY,
    responses=signed_in(404),
)
def show(release_id: int) -> dict[str, Any]:
    return _detail(_release(release_id))


@bp.post("/api/fleet/releases/<int:release_id>/retire")
@require("operations")
@bp.output(schemas.ReleaseDetailOut)
@bp.doc(
    summary="Retire a release: no new rollout may use it (devices may still download it)",
    security=SECURITY,
    responses=signed_in(404),
)
def retire(release_id: int) -> dict[str, Any]:
    release = _release(release_id)
    releases.retire_release(session(), current_principal().actor, release)
    return _detail(release)


# --- Devices --------------------------------------------------------------------------------


def _immutable(response: Response) -> Response:
    response.cache_control.public = True
    response.cache_control.max_age = IMMUTABLE_SECONDS
    response.cache_control.immutable = True
    return response


def _offered(release_id: int) -> Release:
    release = _release(release_id)
    if release.ready_at is None:
        abort(404, "no such release")
    return release


def _content(media: str, schema: dict[str, Any], what: str) -> dict[int | str, Any]:
    return {
        200: {"description": what, "content": {media: {"schema": schema}}},
        **_phrases(404),
    }


@devices_bp.get("/<int:release_id>/manifest.json")
@devices_bp.doc(
    summary="Device: a release's manifest (the exact signed bytes)",
    responses=_content("application/json", {"type": "object"}, "The canonical manifest"),
)
def manifest_json(release_id: int) -> Response:
    release = _offered(release_id)
    return _immutable(Response(release.manifest, mimetype="application/json"))


@devices_bp.get("/<int:release_id>/manifest.sig")
@devices_bp.doc(
    summary="Device: the manifest's signature ({key_id, signature (base64)})",
    responses=_content("application/json", {"type": "object"}, "The signature"),
)
def manifest_sig(release_id: int) -> Response:
    release = _offered(release_id)
    data = Signature(release.key_id, release.signature).to_json()
    return _immutable(Response(data, mimetype="application/json"))


@devices_bp.get("/blobs/<sha256>")
@devices_bp.doc(
    summary="Device: a release file by its SHA-256",
    responses=_content("application/octet-stream", _BINARY, "The file's bytes"),
)
def blob(sha256: str) -> Response:
    if len(sha256) != 64 or not SHA256_CHARS.issuperset(sha256):
        abort(404, "a file is named by its SHA-256: 64 lower-case hex digits")
    path = current_app.extensions[STORE].path(sha256)
    if not releases.downloadable(session(), sha256) or not path.is_file():
        abort(404, "no file with this SHA-256 in a ready release")
    response = send_file(
        path, mimetype="application/octet-stream", etag=sha256, conditional=True, max_age=0
    )
    return _immutable(response)
