"""CoAP ingest (aiocoap): ``POST /batches`` with one sealed batch; the response, sent only
after the commit, carries the sealed acknowledgement.

The resource is listed in ``/.well-known/core`` (RFC 6690) with resource type
``bankiot.batches``. Large batches arrive in blocks (Block1, RFC 7959), which aiocoap
reassembles; a transfer that announces (Size1) or reaches more than the size limit is cut
short with 4.13 and the limit in Size1. Answers:

| code | when |
|---|---|
| 2.04 Changed | stored now or before (a duplicate); payload: the sealed ACK (format 16 or 60) |
| 4.00 Bad Request | not a sealed envelope (``malformed``) |
| 4.01 Unauthorized | forged, wrong key, unknown key version |
| 4.03 Forbidden | the gateway is revoked |
| 4.06 Not Acceptable | an Accept option other than 16 or 60 (nothing is stored) |
| 4.13 Request Entity Too Large | over the limit (Size1 says the limit) |
| 4.15 Unsupported Content-Format | a content format that is not COSE, CBOR or bytes |
| 4.22 Unprocessable Entity | authentic, but not a batch this cloud can store |
| 5.03 Service Unavailable | database unavailable, or too many requests waiting (Max-Age: retry) |

Downlink in the response (a gateway that speaks only CoAP has no MQTT topic to be sent its
configuration and commands on): a request with ``Accept: 60`` (application/cbor) is
answered, when acknowledged, with a CBOR array of byte strings, each one sealed downlink
envelope exactly as the gateway opens it (``downlink.open_downlink``), in CDDL::

    response = [ack: bstr, * message: bstr]   ; the ACK first, then OFFERS, CONFIG, COMMAND

The messages are the batch's own (``Result.downlinks``: offers for a kiosk check-in in
it, ``cloud.offers``), then the gateway's due ones (``cloud.fleet.delivery.ResponseDownlinks``: the
same resend back-off and bookkeeping as on MQTT, at most ``budget`` bytes per response, the
rest in the next), sealed in the downlink direction with the resource (``batches``) as
external AAD, as the ACK is: a message sealed for the MQTT topic does not open here, nor one
of these there, and each carries its own downlink sequence number for the gateway's replay
window. The response carries an ETag (the first 8 bytes of its SHA-256), so that a client
fetching it in blocks sees a mix-up of two responses. Bigger than a block (1024 bytes, or
what the client asks for), it goes in blocks: aiocoap's Block2 (RFC 7959), which keeps the
whole response for the client's requests for the later blocks (the same request, no
payload, Block2 ``n``) and answers them without running the resource again. Without
``Accept`` (or with ``Accept: 16``) the answer is the ACK alone, as before: nothing is
marked sent. If the database fails between the ACK and the downlink, the ACK goes alone.

Error responses carry a one-line diagnostic payload. Concurrency is bounded: at most
``max_concurrency`` batches are judged at once, at most ``max_waiting`` more wait for a slot,
and the rest get 5.03 at once, so a slow database pushes back on gateways instead of
buffering without bound. A malformed datagram is dropped by aiocoap's transport; the server
carries on.

Logging: INFO when the server starts and stops; the pipeline logs each verdict at DEBUG.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence

import aiocoap
from aiocoap import error, resource
from aiocoap.numbers.codes import Code
from sqlalchemy.exc import SQLAlchemyError

from bankiot_core import cbor
from cloud.ingest.pipeline import RESOURCE, Ingest, Result

log = logging.getLogger(__name__)

CONTENT_FORMAT_COSE_ENCRYPT0 = 16  # application/cose; cose-type="cose-encrypt0" (RFC 9052)
CONTENT_FORMAT_CBOR = 60  # application/cbor: the ACK with the downlink messages
ACCEPTED_FORMATS = (None, CONTENT_FORMAT_COSE_ENCRYPT0, 60, 42)  # COSE, CBOR, octet-stream
ANSWER_FORMATS = (None, CONTENT_FORMAT_COSE_ENCRYPT0, CONTENT_FORMAT_CBOR)  # Accept values

Sealed = Callable[[str, str], Sequence[bytes]]
"""``downlinks(gateway, aad)``: the gateway's due messages, sealed bound to ``aad``, marked
sent and committed. Called in a worker thread."""
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


def downlink_payload(ack: bytes, messages: Sequence[bytes]) -> bytes:
    """The body of a 2.04 with downlink: ``[ack, * message]`` as CBOR (module docstring)."""
    return cbor.dumps([ack, *messages], True)


def response_for(result: Result, messages: Sequence[bytes] | None = None) -> aiocoap.Message:
    """The CoAP response to a pipeline verdict; with ``messages`` (not None) the ACK and the
    downlink messages in one CBOR array (module docstring)."""
    if result.ack is not None and messages is not None:
        payload = downlink_payload(result.ack, messages)
        return aiocoap.Message(
            code=Code.CHANGED,
            payload=payload,
            content_format=CONTENT_FORMAT_CBOR,
            etag=hashlib.sha256(payload).digest()[:8],
        )
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

    def __init__(
        self,
        ingest: Ingest,
        max_concurrency: int = 4,
        max_waiting: int = 64,
        downlinks: Sealed | None = None,
    ) -> None:
        super().__init__()
        self.ingest = ingest
        self.downlinks = downlinks
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
        accept = request.opt.accept
        if accept not in ANSWER_FORMATS:
            return _answer(
                Code.NOT_ACCEPTABLE,
                "the answer is content format %d or %d"
                % (CONTENT_FORMAT_COSE_ENCRYPT0, CONTENT_FORMAT_CBOR),
            )
        if self._waiting >= self.max_waiting:
            return _answer(Code.SERVICE_UNAVAILABLE, "busy: try again", max_age=RETRY_SECONDS)
        self._waiting += 1
        try:
            async with self._slots:
                result = await self.ingest.handle_async(request.payload, RESOURCE, "coap")
                messages = None
                if accept == CONTENT_FORMAT_CBOR and result.ack is not None:
                    messages = list(result.downlinks) + await self._downlink(result.gateway)
        finally:
            self._waiting -= 1
        return response_for(result, messages)

    async def _downlink(self, gateway: str | None) -> list[bytes]:
        """The gateway's due messages; none if there is no delivery or the database fails
        (the ACK still goes: the messages stay due)."""
        if self.downlinks is None or gateway is None:
            return []
        try:
            sealed = await asyncio.to_thread(self.downlinks, gateway, RESOURCE)
        except SQLAlchemyError as exc:
            log.warning("downlink for %s not prepared: %s", gateway, str(exc).splitlines()[0])
            return []
        return list(sealed)


def fleet_downlinks(ingest: Ingest) -> Sealed:
    """The fleet's delivery for ``ingest``'s database and keys (``ResponseDownlinks``)."""
    from cloud.fleet.delivery import ResponseDownlinks  # the fleet area builds on ingest

    return ResponseDownlinks(ingest.database, ingest.key_source, clock=ingest.clock)


def make_site(
    ingest: Ingest, max_concurrency: int = 4, downlinks: Sealed | None = None
) -> resource.Site:
    """The CoAP site: ``/batches`` and ``/.well-known/core``; ``downlinks``: what answers
    carry besides the ACK when the gateway accepts it (None: only the ACK)."""
    site = resource.Site()
    site.add_resource(
        [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
    )
    site.add_resource([RESOURCE], BatchResource(ingest, max_concurrency, downlinks=downlinks))
    return site


async def start(
    ingest: Ingest,
    host: str,
    port: int,
    max_concurrency: int = 4,
    downlinks: Sealed | None = None,
) -> aiocoap.Context:
    """A CoAP server for ``ingest`` listening on ``host:port`` (UDP); ``shutdown()`` it.
    ``downlinks`` defaults to the fleet's delivery (``fleet_downlinks``)."""
    if downlinks is None:
        downlinks = fleet_downlinks(ingest)
    # UDP only: aiocoap would also listen on TCP and TLS by default, on the same port number,
    # which nothing here speaks and which collides with whatever holds that TCP port.
    context = await aiocoap.Context.create_server_context(
        make_site(ingest, max_concurrency, downlinks), bind=(host, port), transports=["udp6"]
    )
    log.info("CoAP ingest on coap://%s:%d/%s", host, port, RESOURCE)
    return context
