"""The gateway's uplinks (``edge.uplink*``) with the real engine and the real cloud side.

The gateway is ``bankiot_core.gateway.Gateway`` over ``edge.queue_sqlite.SqliteStorage``,
hearing BTHome v2 temperature advertisements (0x02, signed 16-bit little-endian, factor
0.01, from the BTHome specification). The cloud is ``cloud.ingest``: the MQTT worker on a
private Mosquitto and the aiocoap server, in process, over a migrated SQLite database. What
each test expects comes from what the radio heard and from the protocols, never from the
code under test: every reading heard is stored exactly once, and only the cloud's
acknowledgements empty the queue. No timed assertions: tests wait for conditions.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import aiomqtt
import pytest
from sqlalchemy.engine import URL

from bankiot_core.backoff import Backoff
from bankiot_core.errors import CoreError
from bankiot_core.gateway import Gateway
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import Queue
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers
from cloud.db import Database
from cloud.identity.broker import ACL_HEAD
from cloud.ingest import coap_server
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.mqtt_worker import MqttWorker
from cloud.ingest.pipeline import Ingest
from edge.identity import Identity
from edge.queue_sqlite import SqliteStorage
from edge.settings import parse_settings
from edge.uplink import GatewayOutbox, Uplinks, make_links, monotonic_ms, uplink_aad
from edge.uplink_coap import CoapLink
from edge.uplink_link import Link, LinkDown, UplinkError, endpoint
from edge.uplink_mqtt import MqttLink, status_topic, tls_context
from tests.cloud.ingest_support import receipt_count, stored_readings, url_text
from tests.edge.waiting import run, until
from tests.support.environment import free_port
from tests.support.mosquitto import MosquittoBroker
from tests.support.pki import TestCA

SECRET = bytes(range(32, 64))  # a test secret, never a real key
SENSOR = bytes.fromhex("A4C138000001")
# BTHome v2 advertisement: flags, then service data 0xFCD2, device info 0x40 (v2, plain),
# object 0x02 (temperature, sint16 LE, x0.01 degC); the value is appended.
ADV_HEAD = bytes.fromhex("020106" + "0716d2fc4002")
SETTINGS = {"paired": ["A4:C1:38:00:00:01"], "presence": False, "batch_max_readings": 4}


class Branch:
    """One gateway: the real engine over SQLite, the readings its radio heard, and the
    handler the runtime gives the uplinks (acks and the rest go to ``engine.downlink``)."""

    def __init__(self, folder: Path, aad: str | None = None, resend_ms: int = 1000) -> None:
        self.uid = "gw-up-%s" % uuid.uuid4().hex[:8]
        self.ring = KeyRing(self.uid, 1, SECRET)
        self.queue = Queue(
            SqliteStorage(folder / ("%s.sqlite3" % self.uid)),
            1 << 20,
            resend_ms=resend_ms,
            max_in_flight=4,
        )
        self.engine = Gateway(
            self.ring,
            SequenceNumbers(MemoryCounterStore(), block=16),
            self.queue,
            aad or uplink_aad(self.uid),
            "1.0.0",
            SETTINGS,
        )
        self.radio_ms = 0  # the radio's clock: a second between advertisements
        self.heard: list[tuple[str, str, float]] = []
        self.downlinks_refused = 0

    def hear(self, count: int) -> None:
        """``count`` temperature advertisements, each a degree warmer, then close the batch."""
        for _ in range(count):
            self.radio_ms += 1000
            centi = 1500 + 100 * len(self.heard)
            self.engine.advertisement(
                SENSOR, -50, ADV_HEAD + struct.pack("<h", centi), self.radio_ms
            )
            self.heard.append((SENSOR.hex(), "temperature", centi / 100))
        self.engine.flush()

    def on_downlink(self, data: bytes, aad: str) -> None:
        try:
            self.engine.downlink(data, aad, monotonic_ms())
        except CoreError:
            self.downlinks_refused += 1

    def keys(self) -> MemoryKeySource:
        return MemoryKeySource([KeyRing(self.uid, 1, SECRET)])

    def uplinks(self, links: dict[str, Link], prefer: str = "mqtt", **options) -> Uplinks:
        return Uplinks(
            GatewayOutbox(self.engine),
            links,
            self.on_downlink,
            prefer,
            backoff=Backoff(20, 400),
            busy_backoff=Backoff(20, 400),
            fallback_after=2,
            **options,
        )

    def mqtt(self, broker: MosquittoBroker) -> MqttLink:
        return MqttLink(self.uid, broker.host, broker.port, keepalive_s=5)


def rounded(rows: list[tuple[str, str, object]]) -> Counter:
    return Counter((d, m, round(float(v), 2)) for d, m, v in rows)  # type: ignore[arg-type]


def assert_stored_once(database: Database, branch: Branch) -> None:
    assert len(branch.queue) == 0
    assert rounded(stored_readings(database)) == rounded(branch.heard)  # type: ignore[arg-type]


def stored_by_transport(ingest: Ingest) -> dict[str, int]:
    """Readings the cloud stored, per transport that brought them."""
    return dict(ingest.stats._readings)


@pytest.fixture
def database(migrated_sqlite_url: URL) -> Iterator[Database]:
    db = Database(url_text(migrated_sqlite_url))
    yield db
    db.dispose()


@asynccontextmanager
async def cloud(
    ingest: Ingest, broker: MosquittoBroker | None = None, coap_port: int | None = None
) -> AsyncIterator[MqttWorker | None]:
    """The cloud's ingest: an MQTT worker on ``broker`` and a CoAP server on ``coap_port``."""
    stop = asyncio.Event()
    worker = task = server = None
    if broker is not None:
        worker = MqttWorker(ingest, broker.host, broker.port, group=uuid.uuid4().hex[:8])
        task = asyncio.ensure_future(worker.run(stop))
        await worker.subscribed.wait()
    if coap_port is not None:
        server = await coap_server.start(ingest, "127.0.0.1", coap_port)
    try:
        yield worker
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 15)
        if server is not None:
            await server.shutdown()


@asynccontextmanager
async def running(uplinks: Uplinks) -> AsyncIterator[Uplinks]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(uplinks.run(stop))
    try:
        yield uplinks
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def emptied(branch: Branch) -> Callable[[], bool]:
    return lambda: len(branch.queue) == 0


# ---- configuration ---------------------------------------------------------------------


def test_endpoints_take_standard_ports_and_refuse_what_cannot_work() -> None:
    assert endpoint("mqtts://broker.example", ("mqtt", "mqtts")) == (
        "mqtts",
        "broker.example",
        8883,
    )
    assert endpoint("coap://[::1]", ("coap",)) == ("coap", "::1", 5683)  # RFC 7252: 5683
    with pytest.raises(UplinkError, match="coaps"):
        CoapLink.from_url("coaps://coap.example")
    with pytest.raises(UplinkError, match="mqtt"):
        endpoint("http://broker.example", ("mqtt", "mqtts"))
    with pytest.raises(UplinkError, match="port"):
        endpoint("mqtt://broker.example:99999", ("mqtt",))
    with pytest.raises(UplinkError, match="links"):
        Uplinks(GatewayOutbox(object()), {}, lambda _d, _a: None)


def test_links_come_from_gateway_toml_else_from_enrollment() -> None:
    enrolled = cast(
        Identity,
        SimpleNamespace(uid="gw-1", endpoints={"mqtt": None, "coap": "coap://cloud.example"}),
    )
    settings = parse_settings({"uplink": {"mqtt": "mqtt://127.0.0.1:1884"}})
    links = make_links(settings, enrolled)
    mqtt, coap = links["mqtt"], links["coap"]
    assert isinstance(mqtt, MqttLink) and (mqtt.uid, mqtt.port, mqtt.tls) == ("gw-1", 1884, None)
    assert isinstance(coap, CoapLink) and coap.uri == "coap://cloud.example:5683/batches"
    nowhere = cast(Identity, SimpleNamespace(uid="gw-1", endpoints={}))
    with pytest.raises(UplinkError, match="no uplink endpoint"):
        make_links(parse_settings({}), nowhere)


# ---- MQTT ------------------------------------------------------------------------------


@pytest.mark.mosquitto
def test_mqtt_delivers_and_only_the_cloud_acks_empty_the_queue(
    database: Database, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    branch = Branch(tmp_path)
    branch.hear(10)  # batches of 4, 4 and 2
    batches = len(branch.queue)
    assert batches == 3
    ingest = Ingest(database, branch.keys())

    async def test() -> None:
        uplinks = branch.uplinks({"mqtt": branch.mqtt(mosquitto)})
        async with running(uplinks):
            # No cloud yet: the broker PUBACKs every batch, and the queue keeps them all.
            await until(lambda: uplinks.counters()["sent"] >= batches, "PUBACKs")
            assert len(branch.queue) == batches
            async with cloud(ingest, broker=mosquitto):
                await until(emptied(branch), "the acknowledgements")
                branch.hear(3)
                uplinks.wake()
                await until(emptied(branch), "the acknowledgement of a new batch")

    run(test)
    assert_stored_once(database, branch)
    assert receipt_count(database) == 4
    assert branch.downlinks_refused == 0


@pytest.mark.mosquitto
def test_a_broker_restarted_mid_stream_loses_and_duplicates_nothing(
    database: Database, mosquitto_factory: Callable[..., MosquittoBroker], tmp_path: Path
) -> None:
    broker = mosquitto_factory()
    branch = Branch(tmp_path, resend_ms=500)
    ingest = Ingest(database, branch.keys())

    async def test() -> None:
        uplinks = branch.uplinks({"mqtt": branch.mqtt(broker)})
        async with cloud(ingest, broker=broker) as worker, running(uplinks):
            assert worker is not None
            await until(uplinks.connected.is_set, "the first connection")
            for round_ in range(3):
                branch.hear(6)
                uplinks.wake()
                if round_ == 1:
                    broker.restart(kill=True)  # a crash with batches in flight
                    await until(lambda: uplinks.counters()["lost"] >= 1, "the loss noticed")
                    branch.hear(5)  # heard while the broker is away
            await until(emptied(branch), "every batch acknowledged")
            counters = uplinks.counters()
            assert counters["connects"] >= 2
            assert counters["fallbacks"] == 0  # nothing to fall back to

    run(test)
    assert_stored_once(database, branch)


@pytest.mark.mosquitto
def test_the_will_marks_the_gateway_offline_when_its_connection_dies(
    mosquitto: MosquittoBroker,
) -> None:
    uid = "gw-will-%s" % uuid.uuid4().hex[:8]
    link = MqttLink(uid, mosquitto.host, mosquitto.port, keepalive_s=5)

    async def retained_status() -> tuple[bytes, bool]:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as observer:
            await observer.subscribe(status_topic(uid), qos=1)
            message = await anext(aiter(observer.messages))
            assert isinstance(message.payload, bytes)
            return message.payload, message.retain

    async def test() -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
            await watcher.subscribe(status_topic(uid), qos=1)
            live = aiter(watcher.messages)
            await link.connect(lambda _d, _a: None)
            assert (await anext(live)).payload == b"online"
            assert await retained_status() == (b"online", True)
            client = link.client
            assert client is not None
            # A crash: the socket closes under the client, no DISCONNECT is sent.
            client._client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
            assert (await anext(live)).payload == b"offline"
            assert await retained_status() == (b"offline", True)
            await link.wait_lost()
            await link.close()

    run(test)


def nodelay(client: aiomqtt.Client) -> bool:
    """Whether the connected client's TCP socket has Nagle's algorithm off."""
    sock = client._client.socket()  # paho's socket: aiomqtt does not expose it
    assert isinstance(sock, socket.socket)
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.mosquitto
def test_the_gateways_mqtt_socket_sends_at_once_without_nagles_delay(
    mosquitto: MosquittoBroker,
) -> None:
    link = MqttLink("gw-nodelay-%s" % uuid.uuid4().hex[:8], mosquitto.host, mosquitto.port)

    async def test() -> None:
        # A client that asks for nothing has Nagle's algorithm on (the kernel's default):
        # a small publish may wait up to an ACK's delay (~40 ms) per hop.
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as plain:
            assert not nodelay(plain)
        await link.connect(lambda _d, _a: None)
        assert link.client is not None and nodelay(link.client)
        await link.close()

    run(test)


@pytest.mark.mosquitto
def test_mqtts_with_the_gateway_certificate_under_the_production_acl(
    mosquitto_factory: Callable[..., MosquittoBroker], tmp_path: Path
) -> None:
    broker = mosquitto_factory(tls=True, acl=ACL_HEAD)
    ca = broker.ca
    assert ca is not None
    uid = "gw-tls-%s" % uuid.uuid4().hex[:8]
    mine, cloud_user = broker.client_cert(uid), broker.client_cert("cloud")
    link = MqttLink(
        uid, "localhost", broker.port, tls=tls_context(ca.cert_path, mine.cert, mine.key)
    )
    # The same client certificate, but trusting another CA: the broker is not believed.
    elsewhere = TestCA(tmp_path / "elsewhere")
    misled = MqttLink(
        uid, "localhost", broker.port, tls=tls_context(elsewhere.cert_path, mine.cert, mine.key)
    )

    async def test() -> None:
        with pytest.raises(LinkDown, match="cannot connect"):
            await misled.connect(lambda _d, _a: None)
        watcher_tls = tls_context(ca.cert_path, cloud_user.cert, cloud_user.key)
        async with aiomqtt.Client("localhost", broker.port, tls_context=watcher_tls) as watcher:
            await watcher.subscribe("devices/#", qos=1)
            live = aiter(watcher.messages)
            await link.connect(lambda _d, _a: None)
            assert link.client is not None and nodelay(link.client)  # under TLS too
            await link.send(0, b"sealed")
            seen = [await anext(live), await anext(live)]
            assert [(m.topic.value, m.payload) for m in seen] == [
                (status_topic(uid), b"online"),
                (uplink_aad(uid), b"sealed"),
            ]
            await link.close()

    run(test)


# ---- CoAP and fallback -----------------------------------------------------------------


def test_with_the_broker_down_the_gateway_falls_back_to_coap_which_delivers(
    database: Database, tmp_path: Path
) -> None:
    branch = Branch(tmp_path)  # sealed with the MQTT uplink topic all the same
    branch.hear(9)
    ingest = Ingest(database, branch.keys())
    coap_port = free_port(kind=socket.SOCK_DGRAM)
    nobody = free_port()  # the broker's port, and no broker on it

    async def test() -> None:
        uplinks = branch.uplinks(
            {
                "mqtt": MqttLink(branch.uid, "127.0.0.1", nobody),
                "coap": CoapLink("127.0.0.1", coap_port),
            },
            retry_preferred_ms=3_600_000,
        )
        async with cloud(ingest, coap_port=coap_port), running(uplinks):
            await until(emptied(branch), "delivery over CoAP")
            counters = uplinks.counters()
            assert uplinks.current == "coap"
            assert counters["fallbacks"] == 1
            assert counters["connect_failures"] == 2  # fallback_after
            assert counters["refused"] == 0

    run(test)
    assert_stored_once(database, branch)
    assert stored_by_transport(ingest) == {"coap": 9}


def test_coap_counts_as_connected_only_once_the_cloud_answers(
    database: Database, tmp_path: Path
) -> None:
    """CoAP has no connection, so connecting asks the cloud's resource list: with no cloud
    on the port the link is down (a kiosk's page would otherwise say "online" with the cloud
    stopped, as it did in CI); with the cloud there it connects."""
    ingest = Ingest(database, Branch(tmp_path).keys())
    coap_port = free_port(kind=socket.SOCK_DGRAM)

    def ignore(_envelope: bytes, _resource: str) -> None:
        return None

    async def test() -> None:
        link = CoapLink("127.0.0.1", coap_port, timeout_s=5.0)
        with pytest.raises(LinkDown, match="the cloud does not answer"):
            await link.connect(ignore)
        async with cloud(ingest, coap_port=coap_port):
            await link.connect(ignore)
            await link.close()

    run(test)


@pytest.mark.mosquitto
def test_batches_sealed_for_mqtt_go_over_coap_after_a_fallback_and_mqtt_is_taken_back(
    database: Database, mosquitto_factory: Callable[..., MosquittoBroker], tmp_path: Path
) -> None:
    broker = mosquitto_factory()
    branch = Branch(tmp_path)  # sealed with the MQTT uplink topic, whatever carries it
    ingest = Ingest(database, branch.keys())
    coap_port = free_port(kind=socket.SOCK_DGRAM)

    async def test() -> None:
        uplinks = branch.uplinks(
            {"mqtt": branch.mqtt(broker), "coap": CoapLink("127.0.0.1", coap_port)},
            retry_preferred_ms=400,
        )
        async with cloud(ingest, broker=broker, coap_port=coap_port), running(uplinks):
            branch.hear(4)
            uplinks.wake()
            await until(emptied(branch), "delivery over MQTT")
            assert uplinks.current == "mqtt"
            broker.stop()
            await until(lambda: uplinks.current == "coap", "the fallback to CoAP")
            branch.hear(8)
            uplinks.wake()
            await until(emptied(branch), "delivery over CoAP")
            assert uplinks.counters()["refused"] == 0
            broker.start()
            await until(lambda: uplinks.current == "mqtt", "the return to MQTT")
            branch.hear(4)
            uplinks.wake()
            await until(emptied(branch), "delivery over MQTT again")
            counters = uplinks.counters()
            assert counters["fallbacks"] == 1
            assert counters["returns"] == 1

    run(test)
    assert_stored_once(database, branch)
    assert stored_by_transport(ingest) == {"mqtt": 8, "coap": 8}


def test_a_forged_batch_refused_over_coap_is_counted_and_stays_queued(
    database: Database, tmp_path: Path
) -> None:
    branch = Branch(tmp_path, resend_ms=200)
    branch.hear(4)
    genuine = branch.queue.seqs()
    # A batch sealed with a key the cloud does not know for this gateway: forged.
    forger = Gateway(
        KeyRing(branch.uid, 1, bytes(32)),
        SequenceNumbers(MemoryCounterStore(), block=16),
        Queue(SqliteStorage(tmp_path / "forger.sqlite3"), 1 << 20),
        uplink_aad(branch.uid),
        "1.0.0",
        SETTINGS,
    )
    forger.advertisement(SENSOR, -50, ADV_HEAD + struct.pack("<h", 999), 1000)
    forger.flush()
    forged_seq = genuine[-1] + 1000
    [(_seq, envelope)] = [forger.next_to_send(0)]  # type: ignore[misc]
    branch.queue.enqueue(forged_seq, envelope)  # the gateway's queue holds it like any other
    ingest = Ingest(database, branch.keys())
    coap_port = free_port(kind=socket.SOCK_DGRAM)

    async def test() -> None:
        uplinks = branch.uplinks({"coap": CoapLink("127.0.0.1", coap_port)}, prefer="coap")
        async with cloud(ingest, coap_port=coap_port), running(uplinks):
            await until(lambda: uplinks.counters()["refused"] >= 2, "the refusal, twice")
            assert branch.queue.seqs() == [forged_seq]  # the genuine batch acknowledged
            assert uplinks.current == "coap"  # a refusal is no link failure
            assert uplinks.counters()["fallbacks"] == 0

    run(test)
    assert ingest.stats.batches("rejected") >= 2
    assert rounded(stored_readings(database)) == rounded(branch.heard)  # type: ignore[arg-type]


def test_a_busy_cloud_makes_the_gateway_back_off_without_falling_back(tmp_path: Path) -> None:
    branch = Branch(tmp_path)
    branch.hear(4)
    # A database that cannot be opened: the cloud answers 5.03 (with Max-Age), stores nothing.
    gone = Database("sqlite:///%s" % (tmp_path / "no-such-folder" / "bankiot.sqlite3"))
    ingest = Ingest(gone, branch.keys())
    coap_port = free_port(kind=socket.SOCK_DGRAM)

    async def test() -> None:
        uplinks = branch.uplinks({"coap": CoapLink("127.0.0.1", coap_port)}, prefer="coap")
        async with cloud(ingest, coap_port=coap_port), running(uplinks):
            await until(lambda: uplinks.counters()["busy"] >= 1, "the 5.03")
            counters = uplinks.counters()
            assert counters["lost"] == 0 and counters["send_failures"] == 0
            assert uplinks.current == "coap"
            assert len(branch.queue) == 1  # nothing acknowledged, nothing deleted

    run(test)
    gone.dispose()


def test_a_gateway_on_coap_only_gets_its_configuration_and_commands_in_the_answers(
    tmp_path: Path, database: Database
) -> None:
    from bankiot_core.gateway import Action
    from cloud.fleet import commands, configs
    from cloud.fleet.control_models import DeviceConfig
    from cloud.fleet.models import Branch as BranchRow
    from cloud.fleet.models import Device
    from cloud.identity.models import utcnow

    branch = Branch(tmp_path)
    actions: list[Action] = []
    engine_downlink = branch.engine.downlink

    def downlink_keeping_actions(data: bytes, aad: str, now_ms: int) -> list[Action]:
        found = engine_downlink(data, aad, now_ms)
        actions.extend(found)
        return found

    branch.engine.downlink = downlink_keeping_actions  # type: ignore[method-assign]
    # 150 paired addresses: a CONFIG of about 2.7 KB, which comes in Block2 blocks.
    paired = ["A4:C1:38:00:%02X:%02X" % (i >> 8, i & 0xFF) for i in range(1, 151)]
    with database.sessions() as db:
        row = BranchRow(code="up", name="Up")
        db.add(row)
        db.flush()
        device = Device(uid=branch.uid, kind="gateway", branch_id=row.id, status="active")
        db.add(device)
        db.commit()
        device_id = device.id
    ingest = Ingest(database, branch.keys())
    coap_port = free_port(kind=socket.SOCK_DGRAM)

    def reported() -> int | None:
        with database.sessions() as db:
            config = db.get(DeviceConfig, device_id)
            return None if config is None else config.reported_revision

    async def test() -> None:
        uplinks = branch.uplinks({"coap": CoapLink("127.0.0.1", coap_port)}, prefer="coap")
        async with cloud(ingest, coap_port=coap_port), running(uplinks):
            branch.hear(1)
            uplinks.wake()
            await until(emptied(branch), "the first batch acknowledged")
            with database.sessions() as db:
                target = db.get(Device, device_id)
                assert target is not None
                settings = {**SETTINGS, "paired": paired}
                configs.set_desired(db, [target], settings, actor="operator:ops", now=utcnow())
                commands.issue(db, [target], "rescan", {}, actor="operator:ops", now=utcnow())
                db.commit()
            branch.hear(1)  # the next batch polls
            uplinks.wake()
            await until(lambda: reported() == 1, "the configuration applied and reported")
            await until(lambda: bool(actions), "the command")

    run(test)
    assert branch.engine.config_revision == 1
    assert branch.engine.settings["paired"] == paired
    assert [(a.name, a.args) for a in actions] == [("rescan", {})]
    assert branch.downlinks_refused == 0
