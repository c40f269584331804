"""The CoAP uplink (aiocoap): each sealed batch a confirmable POST to ``/batches``.

The cloud's resource (``cloud.ingest.coap_server``) answers only after its commit:

- 2.04 Changed: the sealed acknowledgement and the gateway's due configuration and commands.
  The request says ``Accept: 60``, so the body is a CBOR array of sealed envelopes, the ACK
  first (``[ack, * message]``); each goes to ``on_downlink(envelope, "batches")`` in order,
  bound to the resource as the ACK is. A body in content format 16 (a cloud that sends the
  ACK alone) is one envelope. A body that is neither goes to ``on_downlink`` whole, where
  the engine refuses it and counts it like any forged message;
- 4.xx: ``Refused``, this batch is refused for good (forged, revoked, too large ...); it
  stays queued, since only an acknowledgement deletes;
- 5.03 Service Unavailable: ``Busy``, with the Max-Age hint: back off;
- anything else, no answer, a network error: ``LinkDown``.

Batches above one block (1024 bytes) go block by block (Block1, RFC 7959), and an answer
above one block (a configuration is up to 4 KiB) comes block by block (Block2): aiocoap does
both. A gateway that sends only over CoAP gets its configuration and commands this way, with
its next batch: at the latest its next health record (``health_interval_ms``, plus up to
``batch_max_delay_ms`` before its batch closes), so that is the longest a message waits
once the cloud has it, plus the cloud's resend back-off if a
response is lost.
CoAP has no connection: ``connect`` makes the client context (a UDP socket) and asks the
cloud for its resource list (``/.well-known/core``, RFC 6690, within ``PROBE_S``), so that the
link counts as up only once the cloud answered (a kiosk's page would otherwise say "online"
with the cloud down, on a UDP socket alone); ``wait_lost`` never returns; a request that
cannot be delivered (retransmissions exhausted, ICMP port unreachable) is what "down" means
here. ``coaps://`` (DTLS) is not supported: the
cloud's CoAP ingest is plain CoAP, and the envelopes are sealed end to end either way.

Logging: WARNING for a refused batch (its code and the cloud's one-line diagnostic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiocoap
from aiocoap import error
from aiocoap.numbers.codes import Code

from bankiot_core import cbor
from bankiot_core.errors import DecodeError
from edge.uplink_link import Busy, DownlinkHandler, LinkDown, Refused, UplinkError, endpoint

log = logging.getLogger(__name__)

RESOURCE = "batches"  # the CoAP Uri-Path, and the AAD of what comes back
CONTENT_FORMAT_COSE_ENCRYPT0 = 16  # application/cose; cose-type="cose-encrypt0" (RFC 9052)
CONTENT_FORMAT_CBOR = 60  # application/cbor: [ack, * message], each a sealed envelope
PROBE_S = 10.0  # a cloud that does not list its resources within this is taken as down


def envelopes(body: bytes, content_format: int | None) -> list[bytes]:
    """The sealed envelopes in a 2.04's body (module docstring): the array's items, or the
    body itself when it is one envelope or not an array of byte strings."""
    if content_format != CONTENT_FORMAT_CBOR:
        return [body]
    try:
        items = cbor.loads(body, 2)
    except DecodeError:
        return [body]
    if not isinstance(items, list) or not items or not all(type(i) is bytes for i in items):
        return [body]
    return items


def code_text(code: Code) -> str:
    """A CoAP code as people write it: ``"4.01"``."""
    return "%d.%02d" % (code.class_, int(code) & 0x1F)


class CoapLink:
    """The CoAP uplink to ``coap://host:port/batches`` (module docstring). ``timeout_s``
    bounds one request, blocks and the wait for a separate response included."""

    name = "coap"

    def __init__(self, host: str, port: int = 5683, *, timeout_s: float = 120.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        host_part = "[%s]" % host if ":" in host else host
        self.uri = "coap://%s:%d/%s" % (host_part, port, RESOURCE)
        self.probe_uri = "coap://%s:%d/.well-known/core" % (host_part, port)
        self._context: aiocoap.Context | None = None
        self._on_downlink: DownlinkHandler | None = None
        self._closed = asyncio.Event()

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 120.0) -> CoapLink:
        """The link to ``coap://host[:port]``; ``UplinkError`` for another URL (``coaps``)."""
        scheme, host, port = endpoint(url, ("coap", "coaps"))
        if scheme == "coaps":
            raise UplinkError("%r: coaps (DTLS) is not supported; use coap://" % url)
        return cls(host, port, timeout_s=timeout_s)

    async def connect(self, on_downlink: DownlinkHandler) -> None:
        """Make the client context (a UDP socket) and hear from the cloud (module
        docstring); ``LinkDown`` if the system refuses or the cloud does not answer."""
        try:
            context = await aiocoap.Context.create_client_context()
        except OSError as exc:
            raise LinkDown("CoAP: no client socket: %s" % exc) from None
        try:
            await self._probe(context)
        except BaseException:
            with contextlib.suppress(Exception):  # the link was never up: nothing to save
                await context.shutdown()
            raise
        self._context = context
        self._on_downlink = on_downlink
        self._closed.clear()

    async def _probe(self, context: aiocoap.Context) -> None:
        """GET the cloud's ``/.well-known/core``: any answer means it is there."""
        request = aiocoap.Message(code=Code.GET, uri=self.probe_uri)
        try:
            async with asyncio.timeout(min(self.timeout_s, PROBE_S)):
                await context.request(request).response
        except (error.Error, OSError, TimeoutError) as exc:
            raise LinkDown("CoAP %s: the cloud does not answer: %s" % (self.uri, exc)) from None

    async def send(self, seq: int, envelope: bytes) -> None:
        """POST sealed batch ``seq`` (confirmable) and act on the answer (module docstring)."""
        context, on_downlink = self._context, self._on_downlink
        if context is None or on_downlink is None:
            raise LinkDown("CoAP: not connected")
        request = aiocoap.Message(
            code=Code.POST,
            uri=self.uri,
            payload=envelope,
            content_format=CONTENT_FORMAT_COSE_ENCRYPT0,
            accept=CONTENT_FORMAT_CBOR,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await context.request(request).response
        except (error.Error, OSError, TimeoutError) as exc:
            raise LinkDown("CoAP %s: batch %d not delivered: %s" % (self.uri, seq, exc)) from None
        code = response.code
        if code == Code.CHANGED:
            for item in envelopes(bytes(response.payload), response.opt.content_format):
                on_downlink(item, RESOURCE)
            return
        said = bytes(response.payload[:200]).decode("utf-8", "replace").splitlines()
        detail = "%s %s" % (code_text(code), said[0] if said else "")
        if code == Code.SERVICE_UNAVAILABLE:
            raise Busy("CoAP: the cloud is busy: %s" % detail, response.opt.max_age)
        if code.class_ == 4:
            log.warning("CoAP: batch %d refused: %s", seq, detail)
            raise Refused("CoAP: batch %d refused: %s" % (seq, detail), code_text(code))
        raise LinkDown("CoAP %s: batch %d got %s" % (self.uri, seq, detail))

    async def wait_lost(self) -> None:
        """CoAP has no connection to lose: returns only once the link is closed."""
        await self._closed.wait()

    async def close(self) -> None:
        """Shut the client context down (pending requests are cancelled)."""
        context, self._context = self._context, None
        self._on_downlink = None
        self._closed.set()
        if context is not None:
            with contextlib.suppress(Exception):  # shutting down: nothing left to save
                await context.shutdown()
