"""CoAP ingest: a real aiocoap server in-process, on SQLite and PostgreSQL.

The gateway side is the firmware's own sans-I/O ``bankiot_core.coap.CoapClient`` over a UDP
socket (Block1 for big batches), around the simulated gateway's queue; libcoap's
``coap-client-notls`` is the independent peer that discovers the resource and sends garbage.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import aiocoap
import pytest
from sqlalchemy.engine import URL

from bankiot_core import cbor, coap, cose
from cloud.ingest.coap_server import start
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import Ingest
from tests.cloud.ingest_support import (
    SimGateway,
    migrated,
    reading_count,
    receipt_count,
    stored_readings,
)
from tests.support.environment import free_port, unavailable

GATEWAY = "gw-coap"


class Server:
    """The CoAP ingest server on its own event loop thread."""

    def __init__(self, ingest: Ingest) -> None:
        self.port = free_port(kind=socket.SOCK_DGRAM)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.context: aiocoap.Context = self.run(start(ingest, "127.0.0.1", self.port))

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(20)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def close(self) -> None:
        self.run(self.context.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def served(database_url: URL) -> Iterator[tuple[Server, Ingest, MemoryKeySource]]:
    with migrated(database_url) as database:
        keys = MemoryKeySource()
        ingest = Ingest(database, keys)
        server = Server(ingest)
        try:
            yield server, ingest, keys
        finally:
            server.close()


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def post(
    sock: socket.socket,
    address: tuple[str, int],
    body: bytes,
    content_format: int | None = 16,
    block_size: int = 1024,
    accept: int | None = None,
) -> coap.Response:
    """POST ``body`` to /batches with the core's client; the answer."""
    client = coap.CoapClient(random.getrandbits, block_size=block_size)
    options = [] if accept is None else [(coap.ACCEPT, coap.uint_bytes(accept))]
    sock.sendto(
        client.request(
            coap.POST, "batches", body, now_ms(), content_format=content_format, options=options
        ),
        address,
    )
    deadline = time.monotonic() + 60  # a bound for a loaded machine, not a measurement
    while time.monotonic() < deadline:
        wait = client.next_timeout_ms(now_ms())
        sock.settimeout(max(wait or 1, 1) / 1000)
        try:
            out = client.receive_datagram(sock.recv(4096), now_ms())
        except TimeoutError:
            out = client.tick(now_ms())
        for datagram in out.datagrams:
            sock.sendto(datagram, address)
        for event in out.events:
            assert isinstance(event, coap.Response), event
            return event
    raise AssertionError("no CoAP answer")


def code(response: coap.Response) -> str:
    return "%d.%02d" % (response.code >> 5, response.code & 31)


def test_batches_over_coap_are_acknowledged_in_the_response_and_stored_once(
    served: tuple[Server, Ingest, MemoryKeySource], udp: socket.socket
) -> None:
    server, ingest, keys = served
    gw = SimGateway(GATEWAY, resource="batches", max_readings=300, max_bytes=4000)
    gw.keys(keys)
    gw.hear_many(250)  # one batch of about 2.5 KB: Block1
    gw.hear(bytes.fromhex("A4C13800000A"), "button", "press", "event")
    gw.flush()
    sent = gw.outbox()
    assert max(len(envelope) for _s, envelope in sent) > 1024
    for _seq, envelope in sent:
        answer = post(udp, server.address, envelope)
        assert code(answer) == "2.04"
        gw.receive(answer.payload)
    assert len(gw.queue) == 0
    again = post(udp, server.address, sent[0][1])  # a resend after a lost response
    assert code(again) == "2.04" and gw.receive(again.payload) == 0
    assert Counter(stored_readings(ingest.database)) == Counter(gw.accepted)
    assert receipt_count(ingest.database) == len(sent)
    assert ingest.stats.batches("duplicate") == 1


def test_bad_requests_get_clear_4xx_and_the_server_keeps_serving(
    served: tuple[Server, Ingest, MemoryKeySource], udp: socket.socket
) -> None:
    server, ingest, keys = served
    gw = SimGateway(GATEWAY, resource="batches")
    gw.keys(keys)
    SimGateway("gw-revoked", resource="batches").keys(keys)
    keys.revoke("gw-revoked")
    ingest.max_envelope_bytes = 2000
    cases = [
        (b"\x01garbage", 16, "4.00", b"malformed"),
        (cose.seal(b"x" * 32, GATEWAY, 1, 1, b"x", "batches"), 16, "4.01", b"forged"),
        (cose.seal(b"x" * 32, "gw-revoked", 1, 1, b"x", "batches"), 16, "4.03", b"revoked"),
        (cose.seal_with(gw.ring, 2, cbor.dumps(7), "batches"), 16, "4.22", b"undecodable"),
        (random.randbytes(3000), 16, "4.13", b"at most 2000"),  # refused at a Block1 block
        (random.randbytes(10), 50, "4.15", b"content format 16"),
    ]
    for body, content_format, expected, words in cases:
        answer = post(udp, server.address, body, content_format, block_size=512)
        assert code(answer) == expected and words in answer.payload, answer
    too_large = post(udp, server.address, random.randbytes(3000), block_size=512)
    size1 = [value for number, value in too_large.options if number == 60]
    assert size1 == [(2000).to_bytes(2, "big")]
    assert receipt_count(ingest.database) == 0 and reading_count(ingest.database) == 0
    gw.hear_many(3)
    gw.flush()
    [(_s, envelope)] = gw.outbox()
    assert code(post(udp, server.address, envelope)) == "2.04"


def libcoap(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("coap-client-notls") is None:
        unavailable("coap-client-notls not found: apt-get install libcoap3-bin")
    return subprocess.run(
        ["coap-client-notls", "-B", "10", *args], capture_output=True, text=True, timeout=30
    )


def test_libcoap_discovers_the_resource_and_gets_400_for_garbage(
    served: tuple[Server, Ingest, MemoryKeySource],
) -> None:
    server, ingest, _keys = served
    base = "coap://127.0.0.1:%d" % server.port
    found = libcoap("-m", "get", base + "/.well-known/core")
    assert '</batches>;ct="16";rt="bankiot.batches"' in found.stdout, found
    garbage = libcoap("-m", "post", "-e", "not an envelope", base + "/batches")
    assert "4.00" in garbage.stdout + garbage.stderr, garbage
    assert "malformed" in garbage.stdout + garbage.stderr
    assert ingest.stats.batches("rejected", "malformed") == 1


def test_the_server_listens_on_udp_only_and_leaves_the_tcp_port_free(served) -> None:
    server, _ingest, _keys = served
    # aiocoap's default server transports include TCP and TLS on the same port number; the
    # cloud speaks CoAP over UDP only, so the TCP port stays free for anything else.
    with socket.socket() as tcp:
        tcp.bind(server.address)


def test_the_answer_comes_in_the_format_the_gateway_accepts(
    served: tuple[Server, Ingest, MemoryKeySource], udp: socket.socket
) -> None:
    server, ingest, keys = served
    gw = SimGateway(GATEWAY, resource="batches")
    gw.keys(keys)
    gw.hear_many(3)
    gw.flush()
    [(_s, envelope)] = gw.outbox()
    refused = post(udp, server.address, envelope, accept=50)  # JSON: not something we send
    assert code(refused) == "4.06" and b"content format 16 or 60" in refused.payload
    assert receipt_count(ingest.database) == 0  # refused before anything was stored
    answer = post(udp, server.address, envelope, accept=60)
    assert code(answer) == "2.04"
    assert coap.option_value(answer.options, coap.CONTENT_FORMAT) == b"\x3c"
    assert coap.option_value(answer.options, coap.ETAG) is not None
    decoded = cbor.loads(answer.payload)
    assert isinstance(decoded, list) and len(decoded) == 1  # nothing due: the ACK alone
    assert gw.receive(decoded[0]) == 1 and len(gw.queue) == 0
