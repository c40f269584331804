"""bankiot_core.mqtt: the sans-I/O MQTT 3.1.1 client.

- Golden byte vectors written by hand from the OASIS standard (``mqtt_vectors.py``), encoded
  and decoded on CPython and again under real MicroPython; the encodings are also checked
  against paho-mqtt's packet builder, an independent, maintained implementation.
- Hypothesis: the UTF-8 rule against CPython's strict decoder, PUBLISH round trips against
  paho's encoding, and a fuzzed decoder from which only core errors escape.
- A real Mosquitto broker, driven from CPython through plain blocking sockets by the tiny
  driver below (the same object the firmware's driver wraps): credentials, QoS 1 with
  PUBACK, a downlink published by aiomqtt, keepalive, DUP retransmission, and a broker
  restart survived with backoff and the unacknowledged message delivered.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from bankiot_core import mqtt
from bankiot_core.backoff import Backoff, Reconnector
from bankiot_core.errors import ConfigError, CoreError, DecodeError, LocalError
from tests.core import mqtt_vectors as vectors

VECTOR_SOURCE = Path(vectors.__file__).read_text()


# --- Golden vectors on both interpreters -----------------------------------------------------


@pytest.mark.parametrize("part", ["encodings", "decodings", "errors", "timeouts"])
def test_golden_vectors_on_cpython(part: str) -> None:
    got = json.loads(json.dumps(getattr(vectors, part)()))
    assert got == vectors.expected()[part]


def test_remaining_length_boundaries_both_ways_on_cpython() -> None:
    got = json.loads(json.dumps(vectors.remaining_lengths(vectors.PUBLISH_SIZES)))
    assert got == vectors.expected_remaining_lengths(vectors.PUBLISH_SIZES)


@pytest.mark.micropython
def test_golden_vectors_under_micropython(micropython) -> None:
    run = micropython.run(
        "import json, mqtt_vectors\nprint(json.dumps(mqtt_vectors.run_all()))",
        files={"/lib/mqtt_vectors.py": VECTOR_SOURCE},
    ).check()
    on_micropython = json.loads(run.stdout)
    assert on_micropython == vectors.expected()
    assert on_micropython == json.loads(json.dumps(vectors.run_all()))


def test_every_malformed_vector_is_rejected_for_its_own_reason() -> None:
    # The same bytes with the defect repaired are accepted: each vector tests one rule.
    repaired = {
        "PUBACK with flags": b"\x40\x02\x00\x01",
        "PUBLISH QoS 0 with DUP": b"\x30\x07\x00\x03a/bhi",
        "PUBLISH topic with #": b"\x30\x05\x00\x03a/c",
        "PUBLISH topic with a surrogate": b"\x30\x05\x00\x03\xed\x9f\xbf",  # U+D7FF
        "PUBLISH topic above U+10FFFF": b"\x30\x06\x00\x04\xf4\x8f\xbf\xbf",  # U+10FFFF
        "PUBLISH topic overlong /": b"\x30\x04\x00\x02\xc2\xa0",  # U+00A0
    }
    for name, data in repaired.items():
        assert name in dict((n, d) for n, _, d in vectors.MALFORMED)
        client = vectors.connected()
        client.publish("a/b", b"hi", 0, qos=1)  # packet id 1, for the PUBACK
        client.receive_data(data, 0)
        assert type(client.next_event()) in (mqtt.Publish, mqtt.PubAck)
        assert client.state == mqtt.CONNECTED


def test_the_remaining_length_limit_is_checked_before_buffering() -> None:
    # 268435455 announced: with max_packet at the protocol's limit the client waits for it;
    # with the default it refuses at once, without waiting for 256 MiB.
    header = b"\x30\xff\xff\xff\x7f\x00\x01t"
    client = vectors.connected(max_packet=mqtt.MAX_REMAINING_LENGTH)
    client.receive_data(header, 0)
    assert client.next_event() is mqtt.NEED_DATA
    client = vectors.connected()
    client.receive_data(header, 0)
    with pytest.raises(DecodeError, match="268435455 bytes exceeds max_packet 16384"):
        client.next_event()
    with pytest.raises(ConfigError):
        mqtt.encode_remaining_length(mqtt.MAX_REMAINING_LENGTH + 1)
    with pytest.raises(DecodeError):
        mqtt.decode_remaining_length(b"\x80\x80\x80\x80\x01")


# --- Cross-check with paho-mqtt's packet builder ---------------------------------------------


class _NoSocket:
    def close(self) -> None:
        pass


class PahoPackets(paho.Client):
    """paho-mqtt's own packet builder, captured instead of sent."""

    def __init__(self, client_id: str = "c", clean_session: bool = True) -> None:
        super().__init__(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
        )
        self.packets: list[bytes] = []
        self._sock = _NoSocket()  # type: ignore[assignment]  # _send_publish wants one

    def _packet_queue(self, command, packet, mid, qos, info=None):  # type: ignore[override]
        self.packets.append(bytes(packet))
        return paho.MQTT_ERR_SUCCESS

    def take(self) -> bytes:
        assert len(self.packets) == 1
        return self.packets.pop()


def paho_connect(client_id: str, keepalive: int, clean: bool, **kw: Any) -> bytes:
    p = PahoPackets(client_id, clean)
    if "username" in kw:
        p.username_pw_set(kw["username"], kw.get("password"))
    if "will" in kw:
        p.will_set(*kw["will"])
    p._send_connect(keepalive)
    return p.take()


def test_connect_matches_paho() -> None:
    will = ("devices/gw-1/status", b"offline", 1, True)
    assert (
        paho_connect("bankiot-gw-1", 60, True, username="gw-1", password="s3cret", will=will)
        == vectors.CONNECT_FULL
    )
    assert paho_connect("c", 0, True) == vectors.CONNECT_MINIMAL
    assert paho_connect("gw", 65535, False, username="u") == vectors.CONNECT_USER_ONLY
    ours = mqtt.MqttClient().connect(
        "bankiot-gw-1", 0, "gw-1", b"s3cret", 60, True, mqtt.Will(*will)
    )
    assert ours == vectors.CONNECT_FULL


def test_other_packets_match_paho() -> None:
    p = PahoPackets()
    p._send_publish(1, b"a/b", b"hi", 1, False, True)
    assert p.take() == vectors.PUBLISH_QOS1_DUP
    p._send_publish(0, b"a/b", b"hi", 0, True)
    assert p.take() == vectors.PUBLISH_QOS0_RETAIN
    p._send_subscribe(False, [(b"a/b", 1), (b"c/+", 0)])
    assert p.take() == vectors.SUBSCRIBE
    p = PahoPackets()
    p._send_unsubscribe(False, [b"a/b"])
    assert p.take() == vectors.UNSUBSCRIBE
    p._send_pingreq()
    assert p.take() == vectors.PINGREQ
    p._send_disconnect()
    assert p.take() == vectors.DISCONNECT
    p._send_puback(10)
    assert p.take() == vectors.PUBACK_10


@pytest.mark.parametrize("n", vectors.PUBLISH_SIZES)
def test_publish_at_remaining_length_boundaries_matches_paho(n: int) -> None:
    p = PahoPackets()
    p._send_publish(0, b"t", bytes(n - 3), 0, False)
    assert p.take() == vectors.publish_of_length(n)


topics = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(topics, st.binary(max_size=300), st.sampled_from([0, 1]), st.booleans())
def test_publish_round_trips_and_matches_paho(
    topic: str, payload: bytes, qos: int, retain: bool
) -> None:
    sender = vectors.connected()
    packet = bytes(sender.publish(topic, payload, 0, qos=qos, retain=retain))
    p = PahoPackets()
    p._send_publish(sender.packet_id, topic.encode(), payload, qos, retain)
    assert packet == p.take()
    receiver = vectors.connected()
    receiver.receive_data(packet, 0)
    event = receiver.next_event()
    assert event == mqtt.Publish(topic, payload, qos, sender.packet_id, False, retain)
    assert receiver.next_event() is mqtt.NEED_DATA


# --- Strings, arguments and state ------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=12))
def test_utf8_rule_agrees_with_cpython_strict_decoder(data: bytes) -> None:
    try:
        text = data.decode("utf-8")  # strict: no surrogates, no overlong forms
        valid = "\x00" not in text
    except UnicodeDecodeError:
        valid = False
    assert (mqtt.utf8_problem(data) is None) == valid


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_utf8_rule_accepts_every_encoded_text_without_nul(text: str) -> None:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be sent
        with pytest.raises(ConfigError):
            mqtt.MqttClient().connect(text, 0)
        return
    assert (mqtt.utf8_problem(data) is None) == ("\x00" not in text)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda c: c.publish("a/+", b"", 0), ConfigError, "wildcard"),
        (lambda c: c.publish("", b"", 0), ConfigError, "empty"),
        (lambda c: c.publish("a", b"", 0, qos=2), ConfigError, "QoS"),
        (lambda c: c.publish("a", 5, 0), ConfigError, "payload"),
        (lambda c: c.publish("a\x00b", b"", 0), ConfigError, "U+0000"),
        (lambda c: c.publish("a" * 65536, b"", 0), ConfigError, "65535"),
        (lambda c: c.subscribe([("a/#/b", 0)], 0), ConfigError, "#"),
        (lambda c: c.subscribe([("a/b+", 0)], 0), ConfigError, "+"),
        (lambda c: c.subscribe([("a", 2)], 0), ConfigError, "QoS"),
        (lambda c: c.subscribe([], 0), ConfigError, "at least one"),
        (lambda c: c.unsubscribe([], 0), ConfigError, "at least one"),
        (lambda c: c.connect("c", 0), LocalError, "state CONNECTED"),
    ],
)
def test_bad_requests_raise_local_errors_and_change_nothing(
    call: Callable[[mqtt.MqttClient], Any], error: type[CoreError], words: str
) -> None:
    client = vectors.connected()
    with pytest.raises(error, match=words.replace("+", r"\+")):
        call(client)
    assert client.state == mqtt.CONNECTED
    assert client.inflight == []
    assert client.publish("a/b", b"hi", 0) == vectors.PUBLISH_QOS0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"password": b"x"}, "needs a user name"),
        ({"clean_session": False, "client_id": ""}, "empty client id"),
        ({"keepalive": 65536}, "keepalive"),
        ({"will": ("a/#", b"", 0, False)}, "wildcard"),
        ({"will": ("a", b"", 3, False)}, "QoS"),
        ({"client_id": "\ud800"}, "surrogate"),
    ],
)
def test_bad_connect_arguments(kwargs: dict[str, Any], words: str) -> None:
    client = mqtt.MqttClient()
    client_id = kwargs.pop("client_id", "c")
    with pytest.raises(ConfigError, match=words):
        client.connect(client_id, 0, **kwargs)
    assert client.state == mqtt.IDLE


def test_requests_that_need_a_connection() -> None:
    client = mqtt.MqttClient()
    for call in (
        lambda: client.publish("a", b"", 0),
        lambda: client.subscribe([("a", 0)], 0),
        lambda: client.ping(0),
        lambda: client.disconnect(),
    ):
        with pytest.raises(LocalError, match="state IDLE"):
            call()
    assert client.tick(0) == b""
    client.receive_data(vectors.CONNACK_OK, 0)  # not connecting: ignored
    assert client.next_event() is mqtt.NEED_DATA


def test_inflight_limit_and_packet_ids() -> None:
    client = vectors.connected(max_inflight=3)
    for _ in range(3):
        client.publish("a", b"", 0, qos=1)
    assert client.inflight == [1, 2, 3]
    with pytest.raises(LocalError, match="max_inflight"):
        client.publish("a", b"", 0, qos=1)
    client.receive_data(b"\x40\x02\x00\x02", 0)
    assert client.next_event() == mqtt.PubAck(2)
    client.publish("a", b"", 0, qos=1)
    assert client.packet_id == 4
    assert client.inflight == [1, 3, 4]
    # Identifiers wrap from 65535 to 1 (0 is not an identifier) and skip those in use.
    client._next_id = 65535
    client.receive_data(b"\x40\x02\x00\x04", 0)
    client.next_event()
    client.publish("a", b"", 0, qos=1)
    client.receive_data(b"\x40\x02\x00\x03", 0)
    client.next_event()
    client.publish("a", b"", 0, qos=1)
    assert client.inflight == [1, 65535, 2]


def test_retransmission_never_changes_bytes_already_handed_out() -> None:
    client = vectors.connected(retry_ms=100)
    first = client.publish("a/b", b"hi", 0, qos=1)
    kept = bytes(first)
    again = client.tick(100)
    assert first == kept == vectors.PUBLISH_QOS1
    assert again == vectors.PUBLISH_QOS1_DUP
    assert client.tick(199) == b""
    assert client.tick(200) == vectors.PUBLISH_QOS1_DUP
    assert client.retransmitted == 2


def test_qos1_messages_survive_connection_loss_in_order_and_clean_session_too() -> None:
    client = vectors.connected()
    client.publish("a/b", b"hi", 0, qos=1)
    client.publish("a/b", b"ho", 0, qos=1)
    client.subscribe([("x", 1)], 0)
    client.receive_data(b"\x40\x02", 0)  # half a PUBACK, then the link breaks
    client.connection_lost()
    client.connect("c", 10)  # clean session: the messages are sent again as new ones
    client.receive_data(vectors.CONNACK_OK, 10)
    assert client.next_event() == mqtt.ConnAck(False, 0)
    resent = client.tick(10)
    assert resent == vectors.PUBLISH_QOS1_DUP + b"\x3a\x09\x00\x03a/b\x00\x02ho"
    # The SUBSCRIBE died with its connection: a SUBACK for it now is a violation.
    client.receive_data(b"\x90\x03\x00\x03\x01", 10)
    with pytest.raises(DecodeError, match="answers no SUBSCRIBE"):
        client.next_event()


# --- Fuzzing the decoder ---------------------------------------------------------------------

GOLDEN_INPUT = [
    vectors.CONNACK_OK,
    vectors.PUBLISH_QOS0,
    vectors.PUBLISH_QOS1_DUP_RETAIN_10,
    vectors.PUBACK_1,
    vectors.SUBACK,
    vectors.UNSUBACK,
    vectors.PINGRESP,
]


def feed_all(client: mqtt.MqttClient, chunks: list[bytes]) -> None:
    """Feed chunks and drain events; only a core DecodeError may escape, and it closes."""
    try:
        for chunk in chunks:
            client.receive_data(chunk, 0)
            for _ in range(1000):
                if client.next_event() is mqtt.NEED_DATA:
                    break
            client.tick(0)
    except DecodeError:
        assert client.state == mqtt.CLOSING
        assert client.next_event() is mqtt.NEED_DATA


@settings(max_examples=400, deadline=None)
@given(st.booleans(), st.lists(st.binary(max_size=40), max_size=6))
def test_fuzzed_bytes_raise_only_decode_errors(connected: bool, chunks: list[bytes]) -> None:
    client = vectors.connecting()
    if connected:
        client = vectors.connected()
        client.subscribe([("a/b", 1), ("c/+", 0)], 0)
    feed_all(client, chunks)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(GOLDEN_INPUT), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3),
    st.integers(1, 7),
)
def test_mutated_golden_packets_raise_only_decode_errors(
    packets: list[bytes], flips: list[tuple[int, int]], split: int
) -> None:
    stream = bytearray(vectors.CONNACK_OK + b"".join(packets))
    for pos, value in flips:
        if pos < len(stream):
            stream[pos] = value
    client = vectors.connecting()
    feed_all(client, [bytes(stream[i : i + split]) for i in range(0, len(stream), split)])


# --- Against the real Mosquitto broker, through plain sockets --------------------------------


class Clock:
    """Milliseconds for the core: the monotonic clock plus a shift tests use to jump ahead."""

    def __init__(self) -> None:
        self.shift = 0

    def __call__(self) -> int:
        return int(time.monotonic() * 1000) + self.shift


class Link:
    """A tiny blocking driver: one TCP socket at a time around one MqttClient."""

    def __init__(self, client: mqtt.MqttClient, host: str, port: int, clock: Clock) -> None:
        self.client = client
        self.address = (host, port)
        self.clock = clock
        self.sock: socket.socket | None = None
        self.sent: list[bytes] = []
        self.events: list[Any] = []

    def open(self, client_id: str, **options: Any) -> mqtt.ConnAck:
        self.sock = socket.create_connection(self.address, timeout=2)
        self.sock.settimeout(0.02)
        self.send(self.client.connect(client_id, self.clock(), **options))
        return self.wait(mqtt.ConnAck)

    def send(self, data: bytes | bytearray) -> None:
        if data:
            assert self.sock is not None
            self.sock.sendall(data)
            self.sent.append(bytes(data))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.client.connection_lost()

    def wait(self, kind: type, timeout: float = 60.0, read: bool = True) -> Any:
        """Run the loop until an event of ``kind``; others are kept in ``events``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if read:
                self._read()
            while True:
                event = self.client.next_event()
                if event is mqtt.NEED_DATA:
                    break
                self.events.append(event)
                if isinstance(event, kind):
                    self.send(self.client.tick(self.clock()))
                    return event
            self.send(self.client.tick(self.clock()))
        raise AssertionError(
            "no %s within %.1f s; events %r" % (kind.__name__, timeout, self.events)
        )

    def _read(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise ConnectionResetError("the broker closed the connection")
        self.client.receive_data(data, self.clock())


async def subscriber_session(broker: Any, identifier: str, topic: str, **auth: Any) -> None:
    """Create a persistent aiomqtt session subscribed to ``topic`` at QoS 1, then leave."""
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=identifier, clean_session=False, **auth
    ) as sub:
        await sub.subscribe(topic, qos=1)


async def collect(broker: Any, identifier: str, count: int, **auth: Any) -> list[Any]:
    """Rejoin the persistent session and take ``count`` messages queued for it."""
    got = []
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=identifier, clean_session=False, **auth
    ) as sub:
        async with asyncio.timeout(5):
            async for message in sub.messages:
                got.append(message)
                if len(got) == count:
                    break
    return got


USERS = {"gw1": "gw1-secret", "cloud": "cloud-secret"}
CLOUD = {"username": "cloud", "password": "cloud-secret"}


@pytest.mark.mosquitto
def test_credentials_and_qos1_publish_reach_an_aiomqtt_subscriber(mosquitto_factory) -> None:
    broker = mosquitto_factory(users=USERS)
    asyncio.run(subscriber_session(broker, "cloud-1", "devices/gw1/up", **CLOUD))
    clock = Clock()
    link = Link(mqtt.MqttClient(), broker.host, broker.port, clock)
    refused = link.open("gw1", username="gw1", password=b"wrong")
    assert refused == mqtt.ConnAck(False, 5)  # Mosquitto answers 3.1.1 clients "not authorized"
    assert link.client.state == mqtt.CLOSING
    link.close()
    assert link.open("gw1", username="gw1", password=b"gw1-secret") == mqtt.ConnAck(False, 0)
    assert link.sent[-1][8:10] == b"\x04\xc2"  # level 4; user name, password, clean session
    link.send(link.client.publish("devices/gw1/up", b"batch-1", clock(), qos=1))
    pid = link.client.packet_id
    assert link.wait(mqtt.PubAck) == mqtt.PubAck(pid)
    assert link.client.inflight == []
    link.send(link.client.disconnect())
    link.close()
    (message,) = asyncio.run(collect(broker, "cloud-1", 1, **CLOUD))
    assert (str(message.topic), message.payload, message.qos) == ("devices/gw1/up", b"batch-1", 1)


@pytest.mark.mosquitto
def test_downlink_from_aiomqtt_is_received_and_acknowledged(mosquitto) -> None:
    clock = Clock()
    link = Link(mqtt.MqttClient(), mosquitto.host, mosquitto.port, clock)
    assert link.open("gw-down", clean_session=False).return_code == 0
    link.send(link.client.subscribe([("devices/gw-down/cmd/#", 1)], clock()))
    assert link.wait(mqtt.SubAck).return_codes == (1,)

    async def command() -> None:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as cloud:
            await cloud.publish("devices/gw-down/cmd/reboot", b'{"delay":5}', qos=1)

    asyncio.run(command())
    message = link.wait(mqtt.Publish)
    assert message[:3] == ("devices/gw-down/cmd/reboot", b'{"delay":5}', 1)
    assert not message.dup
    assert link.sent[-1] == b"\x40\x02" + message.packet_id.to_bytes(2, "big")  # PUBACK

    # Not acknowledged this time: the link drops first, and the broker delivers the message
    # again with DUP on the next connection of the persistent session (MQTT-4.4.0-1).
    asyncio.run(command())
    assert link.sock is not None
    link.sock.settimeout(5)
    assert link.sock.recv(1) == b"\x32"  # the PUBLISH (QoS 1) arrived; it is never handled
    link.close()
    assert link.open("gw-down", clean_session=False) == mqtt.ConnAck(True, 0)
    again = link.wait(mqtt.Publish)
    assert again[:3] == message[:3]
    assert again.dup
    assert link.sent[-1] == b"\x40\x02" + again.packet_id.to_bytes(2, "big")
    link.send(link.client.disconnect())
    link.close()


@pytest.mark.mosquitto
def test_keepalive_pings_the_broker(mosquitto) -> None:
    clock = Clock()
    link = Link(mqtt.MqttClient(), mosquitto.host, mosquitto.port, clock)
    link.open("gw-ping", keepalive=30)
    assert link.client.tick(clock()) == b""
    clock.shift += 30000  # the core's time jumps; no real waiting
    link.wait(mqtt.PingResp)
    assert link.sent[-1] == vectors.PINGREQ
    link.close()


@pytest.mark.mosquitto
def test_lost_puback_means_retransmission_with_dup(mosquitto) -> None:
    asyncio.run(subscriber_session(mosquitto, "retry-sub", "devices/gw-retry/up"))
    clock = Clock()
    link = Link(mqtt.MqttClient(retry_ms=5000), mosquitto.host, mosquitto.port, clock)
    link.open("gw-retry")
    first = link.client.publish("devices/gw-retry/up", b"once", clock(), qos=1)
    link.send(first)
    pid = link.client.packet_id
    # The PUBACK is in the socket, unread; after retry_ms the message goes again with DUP.
    clock.shift += 5000
    link.send(link.client.tick(clock()))
    assert link.sent[-1] == bytes([first[0] | 0x08]) + bytes(first[1:])
    assert link.wait(mqtt.PubAck) == mqtt.PubAck(pid)
    # The second PUBACK answers nothing in flight any more: dropped and counted.
    deadline = time.monotonic() + 5
    while link.client.stray_acks == 0 and time.monotonic() < deadline:
        link._read()
        assert link.client.next_event() is mqtt.NEED_DATA
    assert link.client.stray_acks == 1
    assert link.client.retransmitted == 1
    link.close()
    # QoS 1 is at least once: the subscriber gets both copies.
    got = asyncio.run(collect(mosquitto, "retry-sub", 2))
    assert [m.payload for m in got] == [b"once", b"once"]


@pytest.mark.mosquitto
def test_broker_restart_reconnect_with_backoff_and_redelivery(mosquitto_factory) -> None:
    broker = mosquitto_factory()
    asyncio.run(subscriber_session(broker, "restart-sub", "devices/gw-r/up"))
    clock = Clock()
    client = mqtt.MqttClient(response_timeout_ms=2000)
    link = Link(client, broker.host, broker.port, clock)
    reconnector = Reconnector(Backoff(base_ms=40, cap_ms=160), random.Random(4).random)
    assert reconnector.due(clock())
    link.open("gw-r", clean_session=False)
    reconnector.succeeded()

    broker.stop()  # a broker restart, in two halves to see the client ride it out
    try:
        link.send(client.publish("devices/gw-r/up", b"unacked", clock(), qos=1))
        link.wait(mqtt.PubAck, timeout=2)
    except OSError:  # EOF or reset: the old connection is gone
        link.close()
    assert client.inflight == [1]
    reconnector.lost(clock())
    delays = [reconnector.delay_ms]
    while reconnector.failures < 2:
        time.sleep((reconnector.wait_ms(clock()) or 0) / 1000)
        assert reconnector.due(clock())
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(link.address, timeout=1)
        reconnector.failed(clock())
        delays.append(reconnector.delay_ms)
    broker.start()
    while not reconnector.due(clock()):
        time.sleep((reconnector.wait_ms(clock()) or 0) / 1000)
    assert link.open("gw-r", clean_session=False) == mqtt.ConnAck(True, 0)
    reconnector.succeeded()
    # Jittered delays under ceilings 40, 80, 160 ms, and reset after the success.
    assert [d < c for d, c in zip(delays, (40, 80, 160), strict=True)] == [True] * 3
    assert reconnector.backoff.ceiling() == 40

    assert link.wait(mqtt.PubAck) == mqtt.PubAck(1)
    assert b"\x3a\x1a\x00\x0fdevices/gw-r/up\x00\x01unacked" in link.sent
    link.send(client.disconnect())
    link.close()
    (message,) = asyncio.run(collect(broker, "restart-sub", 1))
    assert message.payload == b"unacked"
