"""Configuration and commands to a gateway that speaks only CoAP, end to end, on SQLite and
PostgreSQL.

The operator uses the cloud's HTTP API (``PUT /api/fleet/devices/<id>/config``, ``POST
/api/fleet/commands``). The cloud is the real aiocoap ingest server with its default
delivery (``cloud.fleet.delivery.ResponseDownlinks``). The gateway is what a MicroPython
board runs: the engine (``bankiot_core.gateway.Gateway``) and the core's sans-I/O
``CoapClient`` over a UDP socket, asking for its downlink with ``Accept: 60`` and fetching a
big answer in blocks (Block2). Only what the gateway reports back (its running record, the
command's result) moves the cloud's records.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiocoap
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.engine import URL

from bankiot_core import cbor, coap, downlink
from bankiot_core.batch import STATUS_DONE
from bankiot_core.errors import AuthenticationError, ReplayError
from bankiot_core.gateway import Action, Gateway
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers
from cloud.fleet import configs, delivery
from cloud.fleet.models import Device
from cloud.identity.models import utcnow
from cloud.ingest.coap_server import start
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import Ingest
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers
from tests.cloud.ingest_support import migrated, secret_for
from tests.cloud.people_actions import body
from tests.support.environment import free_port

GATEWAY = "gw-coap-only"
HEALTH_MS = 60_000  # the engine's default health interval: how often a quiet gateway polls
PAIRED = ["C0:00:00:00:%02X:%02X" % (i >> 8, i & 0xFF) for i in range(150)]  # ~2.7 KB


class CoapServer:
    """The CoAP ingest server (default downlink delivery) on its own event loop thread."""

    def __init__(self, ingest: Ingest) -> None:
        self.port = free_port(kind=socket.SOCK_DGRAM)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.context: aiocoap.Context = self.run(start(ingest, "127.0.0.1", self.port))

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(20)

    def close(self) -> None:
        self.run(self.context.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def items(payload: bytes) -> list[bytes]:
    """The envelopes in an answer's body, ``[ack, * message]``."""
    decoded = cbor.loads(payload)
    assert isinstance(decoded, list) and all(type(item) is bytes for item in decoded)
    return decoded


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Board:
    """A CoAP-only gateway: the engine and the core's CoapClient over UDP, driven the way
    a board's firmware drives them (one request at a time)."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.ring = KeyRing(GATEWAY, 1, secret_for(GATEWAY))
        queue = Queue(MemoryStorage(), 1 << 16, resend_ms=5000, max_in_flight=16)
        sequence = SequenceNumbers(MemoryCounterStore(), block=16)
        self.engine = Gateway(self.ring, sequence, queue, "batches", "1.0.0", {}, None)
        self.client = coap.CoapClient(random.getrandbits, host="127.0.0.1")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.now = 0
        self.actions: list[Action] = []
        self.answers: list[tuple[bytes, int]] = []  # each 2.04 body, and requests it took

    def post(self, envelope: bytes) -> coap.Response:
        """POST one sealed batch, asking for the downlink; the whole answer."""
        accept = [(coap.ACCEPT, coap.uint_bytes(coap.CBOR))]
        first = self.client.request(
            coap.POST, "batches", envelope, now_ms(), coap.COSE_ENCRYPT0, options=accept
        )
        self.sock.sendto(first, self.server)
        requests = 1
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a measurement
        while time.monotonic() < deadline:
            wait = self.client.next_timeout_ms(now_ms())
            self.sock.settimeout(max(wait or 1, 1) / 1000)
            try:
                out = self.client.receive_datagram(self.sock.recv(2048), now_ms())
            except TimeoutError:
                out = self.client.tick(now_ms())
            for datagram in out.datagrams:
                requests += coap.decode_message(datagram).mtype == coap.CON
                self.sock.sendto(datagram, self.server)
            for event in out.events:
                assert isinstance(event, coap.Response), event
                assert event.code == coap.CHANGED, event
                self.answers.append((event.payload, requests))
                return event
        raise AssertionError("no CoAP answer")

    def sync(self, advance_ms: int = 0) -> None:
        """Time passes; the open batch closes when due (a board sleeps ``due_in``); send
        whatever the engine queued, act on every envelope answered."""
        self.now += advance_ms
        self.engine.poll(self.now)
        while self.engine.pending():
            self.now += max(self.engine.due_in(self.now), 1)
            self.engine.poll(self.now)
        while (item := self.engine.next_to_send(self.now)) is not None:
            answer = self.post(item[1])
            assert coap.option_value(answer.options, coap.CONTENT_FORMAT) == b"\x3c"  # 60
            for envelope in items(answer.payload):
                self.actions += self.engine.downlink(envelope, "batches", self.now)
            self.engine.poll(self.now)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def cloud(cloud_app: APIFlask, database_url: URL) -> Iterator[tuple[Board, Ingest, int]]:
    """The app, the CoAP ingest on the same database, the board, and its device id."""
    branches = add_branches(cloud_app, "north")
    (device_id,) = add_devices(
        cloud_app, {"uid": GATEWAY, "branch_id": branches["north"], "status": "active"}
    )
    keys = MemoryKeySource()
    keys.add(KeyRing(GATEWAY, 1, secret_for(GATEWAY)))
    with migrated(database_url) as database:
        ingest = Ingest(database, keys)
        server = CoapServer(ingest)
        board = Board(("127.0.0.1", server.port))
        try:
            yield board, ingest, device_id
        finally:
            board.close()
            server.close()


def config_of(client: FlaskClient, device_id: int) -> dict[str, Any]:
    return body(client.get("/api/fleet/devices/%d/config" % device_id))


def supervisor_pass(ingest: Ingest) -> list[delivery.Outgoing]:
    """What a fleet supervisor pass would publish on MQTT now."""
    with ingest.database.sessions() as session:
        out = delivery.prepare(session, ingest.key_source, dt.datetime.now(dt.UTC))
        session.commit()
    return out


def test_an_operators_configuration_and_command_reach_a_coap_only_gateway(
    cloud_app: APIFlask, client: FlaskClient, cloud: tuple[Board, Ingest, int]
) -> None:
    board, ingest, device_id = cloud
    Callers(cloud_app).as_operations()
    board.sync()  # at start: what it runs, its health; the answers carry acks only
    assert [len(items(payload)) for payload, _ in board.answers] == [1]

    settings = {"paired": PAIRED, "rate_per_min": 30, "uplink": "coap"}
    put = client.put("/api/fleet/devices/%d/config" % device_id, json={"settings": settings})
    assert put.status_code == 200, put.json
    revision = body(put)["revision"]
    assert supervisor_pass(ingest) == []  # no MQTT topic for it: its answers carry it
    board.answers.clear()

    board.sync(HEALTH_MS)  # its next health record polls
    payload, requests = board.answers[0]
    assert len(payload) > 2048 and requests >= 3  # fetched in 1024-byte blocks (Block2)
    assert board.engine.config_revision == revision
    assert board.engine.settings["paired"] == PAIRED
    shown = config_of(client, device_id)
    assert (shown["reported_revision"], shown["in_sync"]) == (revision, True)

    sent = client.post("/api/fleet/commands", json={"devices": [device_id], "name": "rescan"})
    assert sent.status_code == 201, sent.json
    group = body(sent)
    (command,) = group["commands"]
    board.sync(HEALTH_MS)
    assert board.actions == [Action(command["id"], "rescan", {})]
    board.engine.report(command["id"], STATUS_DONE, "rescanned", board.now)
    board.sync()
    done = body(client.get("/api/fleet/command-groups/%d" % group["id"]))["commands"][0]
    assert (done["status"], done["detail"]) == ("done", "rescanned")

    board.answers.clear()
    board.sync(HEALTH_MS)  # nothing is due any more: acknowledgements only
    assert {len(items(payload)) for payload, _ in board.answers} == {1}
    assert board.actions == [Action(command["id"], "rescan", {})]


def test_replayed_and_forged_answers_are_refused(cloud: tuple[Board, Ingest, int]) -> None:
    board, ingest, device_id = cloud
    board.sync()
    with ingest.database.sessions() as session:
        device = session.get(Device, device_id)
        assert device is not None
        configs.set_desired(
            session, [device], {"rate_per_min": 30}, actor="operator:ops", now=utcnow()
        )
        session.commit()
    board.sync(HEALTH_MS)
    assert board.engine.config_revision == 1
    captured = [p for p, _ in board.answers if len(items(p)) == 2]
    assert len(captured) == 1
    refused_before = board.engine.health_counters()["downlinks_refused"]

    # A captured answer played again: every envelope in it has used its number.
    for envelope in items(captured[0]):
        with pytest.raises(ReplayError):
            board.engine.downlink(envelope, "batches", board.now)
    newer = downlink.encode_config(2, {"rate_per_min": 1})
    forged = [
        # sealed with a key that is not the gateway's
        downlink.seal_downlink(KeyRing(GATEWAY, 1, bytes(32)), 1 << 20, newer, "batches"),
        # the gateway's key, but bound to its MQTT topic, not to the CoAP resource
        downlink.seal_downlink(board.ring, 1 << 20, newer, downlink.downlink_topic(GATEWAY)),
    ]
    altered = bytearray(forged[0])
    altered[-1] ^= 1
    for envelope in [*forged, bytes(altered)]:
        with pytest.raises(AuthenticationError):
            board.engine.downlink(envelope, "batches", board.now)
    assert board.engine.config_revision == 1
    counters = board.engine.health_counters()
    assert counters["downlinks_refused"] == refused_before + 2 + 3
