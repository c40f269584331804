"""CoAP ingest (aiocoap): ``POST /batches`` with one sealed batch; the response, sent only
after the commit, carries the sealed acknowledgement.

The resource is listed in ``/.well-known/core`` (RFC 6690) with resource type
``bankiot.batches``. Large batches arrive in blocks (Block1, RFC 7959), which aiocoap
reassembles; a transfer that announces (Size1) or reaches more than the size limit is cut
short with 4.13 and the limit in Size1. Answers:

| code | when |
|---|---|
| 2.04 Changed | stored now or before (a duplicate); payload: the sealed ACK (content format 16) |
| 4.00 Bad Request | not a sealed envelope (``malformed``) |
| 4.01 Unauthorized | forged, wrong key, unknown key version |
| 4.03 Forbidden | the gateway is revoked |
| 4.13 Request Entity Too Large | over the limit (Size1 says the limit) |
| 4.15 Unsupported Content-Format | a content format that is not COSE, CBOR or bytes |
| 4.22 Unprocessable Entity | authentic, but not a batch this cloud can store |
| 5.03 Service Unavailable | database unavailable, or too many requests waiting (Max-Age: retry) |

Error responses carry a one-line diagnostic payload. Concurrency is bounded: at most
``max_concurrency`` batches are judged at once, at most ``max_waiting`` more wait for a slot,
and the rest get 5.03 at once, so a slow database pushes back on gateways instead of
buffering without bound. A malformed datagram is dropped by aiocoap's transport; the server
carries on.

Logging: INFO when the server starts and stops; the pipeline logs each verdict at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging

import aiocoap
from aiocoap import error, resource
from aiocoap.numbers.codes import Code

from cloud.ingest.pipeline import RESOURCE, Ingest, Result

log = logging.getLogger(__name__)

CONTENT_FORMAT_COSE_ENCRYPT0 = 16  # application/cose; cose-type="cose-encrypt0" (RFC 9052)
ACCEPTED_FORMATS = (None, CONTENT_FORMAT_COSE_ENCRYPT0, 60, 42)  # COSE, CBOR, octet-stream
RETRY_SECONDS = 5

CODE_BY_REASON = {
    "malformed": Code.BAD_REQUEST,
    "too_large": Code.REQUEST_ENTITY_TOO_LARGE,
    "wrong_gateway": Code.UNAUTHORIZED,
    "unknown_key": Code.UNAUTHORIZED,
    "forged": Code.UNAUTHORIZED,
    "revoked": Code.FORBIDDEN,
    "undecodable": Code.UNPROCESSABLE_ENTITY,
    "unstorable": Code.UNPROCESSABLE_ENTITY,
}


class TooLarge(error.RequestEntityTooLarge):
    """4.13 with the limit in Size1 (RFC 7959 2.9.3), raised while blocks still arrive."""

    def __init__(self, limit: int) -> None:
        super().__init__("a sealed batch is at most %d bytes" % limit)
        self.limit = limit

    def to_message(self) -> aiocoap.Message:
        message = super().to_message()
        message.opt.size1 = self.limit
        return message


def _answer(code: Code, text: str, **options: int) -> aiocoap.Message:
    message = aiocoap.Message(code=code, payload=text.encode("utf-8"))
    for name, value in options.items():
        setattr(message.opt, name, value)
    return message


def response_for(result: Result) -> aiocoap.Message:
    """The CoAP response to a pipeline verdict."""
    if result.ack is not None:
        return aiocoap.Message(
            code=Code.CHANGED, payload=result.ack, content_format=CONTENT_FORMAT_COSE_ENCRYPT0
        )
    if result.status == "unavailable":
        return _answer(Code.SERVICE_UNAVAILABLE, result.detail, max_age=RETRY_SECONDS)
    code = CODE_BY_REASON.get(result.reason, Code.BAD_REQUEST)
    return _answer(code, "%s: %s" % (result.reason, result.detail))


class BatchResource(resource.Resource):
    """``/batches``: POST a sealed batch (module docstring)."""

    rt = "bankiot.batches"
    ct = str(CONTENT_FORMAT_COSE_ENCRYPT0)

    def __init__(self, ingest: Ingest, max_concurrency: int = 4, max_waiting: int = 64) -> None:
        super().__init__()
        self.ingest = ingest
        self.max_waiting = max_waiting
        self._slots = asyncio.Semaphore(max_concurrency)
        self._waiting = 0

    async def needs_blockwise_assembly(  # pyright: ignore[reportIncompatibleMethodOverride]
        self, request: aiocoap.Message
    ) -> bool:
        """Refuse a transfer as soon as it is known to be too large, before assembling it."""
        limit = self.ingest.max_envelope_bytes
        block1 = request.opt.block1
        end = (block1.start if block1 is not None else 0) + len(request.payload)
        size1 = request.opt.size1
        if end > limit or (size1 is not None and size1 > limit):
            raise TooLarge(limit)
        return True

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        limit = self.ingest.max_envelope_bytes
        if len(request.payload) > limit:
            raise TooLarge(limit)
        if request.opt.content_format not in ACCEPTED_FORMATS:
            return _answer(
                Code.UNSUPPORTED_CONTENT_FORMAT,
                "send the sealed batch as content format %d" % CONTENT_FORMAT_COSE_ENCRYPT0,
            )
        if self._waiting >= self.max_waiting:
            return _answer(Code.SERVICE_UNAVAILABLE, "busy: try again", max_age=RETRY_SECONDS)
        self._waiting += 1
        try:
            async with self._slots:
                result = await self.ingest.handle_async(request.payload, RESOURCE, "coap")
        finally:
            self._waiting -= 1
        return response_for(result)


def make_site(ingest: Ingest, max_concurrency: int = 4) -> resource.Site:
    """The CoAP site: ``/batches`` and ``/.well-known/core``."""
    site = resource.Site()
    site.add_resource(
        [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
    )
    site.add_resource([RESOURCE], BatchResource(ingest, max_concurrency))
    return site


async def start(ingest: Ingest, host: str, port: int, max_concurrency: int = 4) -> aiocoap.Context:
    """A CoAP server for ``ingest`` listening on ``host:port`` (UDP); ``shutdown()`` it."""
    context = await aiocoap.Context.create_server_context(
        make_site(ingest, max_concurrency), bind=(host, port)
    )
    log.info("CoAP ingest on coap://%s:%d/%s", host, port, RESOURCE)
    return context
