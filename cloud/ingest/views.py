"""HTTP ingest: ``POST /ingest/v1/batches``, for gateways behind proxies that block MQTT and
UDP. Same semantics as CoAP: the body is one sealed batch (``application/cose``), bound to
the resource string ``batches`` as its external AAD (so a CoAP gateway falls back to HTTP
with the envelopes already in its queue); the response, sent only after the commit, is the
sealed acknowledgement.

| status | when |
|---|---|
| 200 | stored now or before (a duplicate): the body is the sealed ACK |
| 401 | does not authenticate: forged, wrong key, unknown key version, another gateway's, or
  not a sealed envelope at all (bytes that cannot be parsed cannot be authenticated either;
  CoAP says 4.00 for those) |
| 403 | the gateway is revoked |
| 413 | larger than the limit |
| 415 | not ``application/cose`` (or ``application/octet-stream``) |
| 422 | authentic but not a batch this cloud can store; the gateway keeps it |
| 503 | the database did not answer: send it again later (``Retry-After``) |

No operator credentials: the envelope authenticates the gateway. Errors are apiflask's JSON
errors with a one-line message.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, abort
from flask import Response, current_app, request

from cloud.ingest.pipeline import RESOURCE, Ingest

bp = APIBlueprint("ingest", __name__, url_prefix="/ingest/v1", tag="Ingest")

PATH = "/ingest/v1/batches"
COSE_MEDIA_TYPE = "application/cose"
ACK_CONTENT_TYPE = 'application/cose; cose-type="cose-encrypt0"'
ACCEPTED_MEDIA_TYPES = (COSE_MEDIA_TYPE, "application/octet-stream")
RETRY_AFTER_SECONDS = 5

STATUS_BY_REASON = {
    "malformed": 401,
    "too_large": 413,
    "wrong_gateway": 401,
    "unknown_key": 401,
    "forged": 401,
    "revoked": 403,
    "undecodable": 422,
    "unstorable": 422,
}

_BINARY = {"type": "string", "format": "binary"}
RESPONSES: dict[int | str, Any] = {
    200: {
        "description": "Stored (now or before): the sealed acknowledgement",
        "content": {COSE_MEDIA_TYPE: {"schema": _BINARY}},
    },
    401: "Not an authentic sealed batch",
    403: "Gateway revoked",
    413: "Envelope too large",
    415: "Not application/cose",
    422: "Authentic, but not a batch this cloud can store",
    503: "Database unavailable: send it again later",
}


def ingest() -> Ingest:
    """The current app's ``Ingest``."""
    return current_app.extensions["bankiot.ingest"]


@bp.post("/batches")
@bp.doc(
    summary="Gateway: deliver one sealed batch; the response is its acknowledgement",
    description=__doc__,
    responses=RESPONSES,
)
def post_batch() -> Response:
    pipeline = ingest()
    if request.mimetype not in ACCEPTED_MEDIA_TYPES:
        abort(415, "send the sealed batch as %s" % COSE_MEDIA_TYPE)
    limit = pipeline.max_envelope_bytes
    if request.content_length is not None and request.content_length > limit:
        abort(413, "envelope of %d bytes is over the limit of %d" % (request.content_length, limit))
    body = request.stream.read(limit + 1)
    result = pipeline.handle(body, RESOURCE, "http")
    if result.ack is not None:
        return Response(result.ack, status=200, content_type=ACK_CONTENT_TYPE)
    if result.status == "unavailable":
        abort(503, result.detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    abort(STATUS_BY_REASON.get(result.reason, 401), "%s: %s" % (result.reason, result.detail))


def document_request_body(spec: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Declare the raw request body in the OpenAPI document (apiflask's ``input`` knows
    JSON, forms and files, not a raw binary body)."""
    operation = spec.get("paths", {}).get(PATH, {}).get("post")
    if operation is not None:
        # The size limit is told in words: as maxLength, schema-driven testers count the
        # 413 a longer body gets as accepting invalid input.
        operation["requestBody"] = {
            "required": True,
            "description": "One sealed batch (COSE_Encrypt0, external AAD %r), at most %d bytes"
            % (RESOURCE, max_bytes),
            "content": {media: {"schema": _BINARY} for media in ACCEPTED_MEDIA_TYPES},
        }
    return spec
