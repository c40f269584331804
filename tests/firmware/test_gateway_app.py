"""The board application under real MicroPython: scan, batch, seal, MQTT, cloud.

Advertisements go in through the fake ``bluetooth`` IRQ; the application (built by
``app.main.build_gateway``, over the stand-ins for the radios and the socket) decodes,
filters, batches, seals and publishes them. The bytes it sent are then judged by
independent parties: the CPython core and the cloud's ingest open and commit the batches
(SQLite and PostgreSQL), the real Mosquitto accepts the MQTT session replayed to it byte for
byte, and the cloud's own acknowledgements, delivered on the next boot, empty the board's
queue.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.engine import URL

from bankiot_core import batch, cose, downlink
from bankiot_core.gateway import VITALS
from bankiot_core.mqtt import decode_remaining_length
from cloud.db import Database
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import Ingest
from hw.micropython_runner import MicroPythonRunner
from tests.cloud.ingest_support import migrated, stored_readings
from tests.firmware.board import (
    SECRET,
    SENSOR,
    SETTINGS,
    STRANGER,
    UID,
    provisioned,
    ring,
    scenario,
    temperature,
)
from tests.support.mosquitto import MosquittoBroker

UP = "devices/%s/up" % UID
DOWN = "devices/%s/down" % UID
STATUS = "devices/%s/up/status" % UID
# Five temperatures from the paired sensor, one from a stranger (dropped at the edge).
ADVERTS = [temperature(2 * i, 2000 + 100 * i, i) for i in range(5)] + [
    temperature(3, 3000, 9, STRANGER)
]
EXPECTED = [20.0, 21.0, 22.0, 23.0, 24.0]


@pytest.fixture(scope="module")
def first_boot(micropython: MicroPythonRunner) -> tuple[dict, dict[str, bytes]]:
    """One boot of a provisioned board that hears ``ADVERTS``; its result and its flash."""
    return scenario(micropython, "run_gateway", ADVERTS, files=provisioned(), export=("/data",))


def opened_batches(result: dict) -> list[batch.Batch]:
    """Every batch the board published on its uplink topic, opened with the cloud's key."""
    out = []
    for topic, payload in result["published"]:
        if topic == UP:
            opened = cose.open_envelope(bytes.fromhex(payload), ring().lookup, UP)
            out.append(batch.decode_batch(opened.plaintext))
    return out


def temperatures(batches: list[batch.Batch]) -> list[tuple[str, float]]:
    return [
        (bytes(r.address).hex(), r.value)
        for b in batches
        for r in b.records
        if isinstance(r, batch.BatchReading) and r.metric == "temperature"
    ]


def test_the_board_seals_what_it_hears_and_the_core_opens_it(first_boot) -> None:
    result, _ = first_boot
    batches = opened_batches(result)
    values = [value for _, value in temperatures(batches)]
    assert values == EXPECTED  # the stranger never left the board
    assert {device for device, _ in temperatures(batches)} == {SENSOR}
    counters = result["counters"]
    assert counters["frames_not_paired"] == 1 and counters["scan_heard"] == 6
    health = [r for b in batches for r in b.records if isinstance(r, batch.Health)]
    assert health, "no health record"
    assert health[0].counters["wifi_rssi"] is None  # at start, before WiFi is up
    last = health[-1].counters
    assert last["wifi_rssi"] == -55 and last["reset_cause"] == 1  # machine.PWRON_RESET
    assert last["heap_free"] > 0 and last["uptime_s"] >= 1 and last["depth"] >= 1


def test_every_batch_the_board_sends_carries_its_vital_signs(first_boot) -> None:
    result, _ = first_boot
    batches = opened_batches(result)
    assert len(batches) >= 3
    for sent in batches:
        health = [r.counters for r in sent.records if isinstance(r, batch.Health)]
        assert len(health) == 1  # the vitals, or the full record (which holds them too)
        assert set(VITALS) <= set(health[0])
        assert health[0]["heap_free"] > 0 and health[0]["reset_cause"] == 1
    # Sealed, each still fits one CoAP datagram's 1024 bytes (RFC 7252 4.6; batcher).
    assert all(len(payload) // 2 <= 1024 for _, payload in result["published"])


def test_tls_is_asked_to_verify_the_broker(first_boot) -> None:
    result, _ = first_boot
    [context] = result["tls"]
    verify_mode, hostname, cafile, certfile, keyfile = context
    assert verify_mode == 2  # ssl.CERT_REQUIRED
    assert hostname == "broker.test"
    assert (cafile, certfile, keyfile) == (
        "/identity/ca.pem",
        "/identity/device.crt",
        "/identity/device.key",
    )


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def test_the_cloud_commits_the_boards_batches_and_its_acks_empty_the_queue(
    first_boot, database: Database, micropython: MicroPythonRunner
) -> None:
    result, flash = first_boot
    ingest = Ingest(database, MemoryKeySource([ring()]))
    acks = []
    sent = []
    for topic, payload in result["published"]:
        if topic == UP:
            sent.append(cose.peek_envelope(bytes.fromhex(payload)).seq)
            verdict = ingest.handle(bytes.fromhex(payload), UP, "mqtt", UID)
            assert verdict.status == "accepted", verdict.detail
            assert verdict.ack is not None
            acks.append([DOWN, verdict.ack.hex()])
    stored = sorted(float(str(v)) for _, m, v in stored_readings(database) if m == "temperature")
    assert stored == EXPECTED
    assert set(sent) <= set(result["queue"])  # sent, not acknowledged: still on flash
    # Next boot, with the same flash: the cloud's acknowledgements arrive on the downlink.
    files = {**provisioned(), **flash}
    again, _ = scenario(micropython, "run_gateway", [], 20, 100, acks, files=files)
    assert again["counters"]["acked"] == len(acks)
    assert not set(again["queue"]) & set(sent)
    new = set(again["queue"]) - set(result["queue"])
    assert new and min(new) >= 64  # reserved ahead in blocks of 64: none reused


def packets(data: bytes) -> list[tuple[int, bytes]]:
    """MQTT control packets in ``data``: (first byte, body)."""
    out = []
    buf = bytearray(data)
    while buf:
        header = decode_remaining_length(buf, 1)
        assert header is not None, "truncated packet"
        length, start = header
        out.append((buf[0], bytes(buf[start : start + length])))
        del buf[: start + length]
    return out


def replay(broker: MosquittoBroker, stream: bytes) -> bytes:
    """Send the board's bytes to the broker as they were sent; what it answered, to EOF
    (the board's DISCONNECT ends the session)."""
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(stream)
        answer = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return answer
            answer += chunk


def test_mosquitto_accepts_the_boards_mqtt_session(first_boot, mosquitto: MosquittoBroker) -> None:
    result, _ = first_boot
    [stream] = [bytes.fromhex(s) for s in result["streams"]]
    sent = packets(stream)
    assert sent[0][0] == 0x10 and sent[-1][0] == 0xE0  # CONNECT ... DISCONNECT
    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    done = threading.Event()
    expected = sum(1 for topic, _ in result["published"] if topic == UP)

    def on_message(_c, _u, message) -> None:
        if message.topic == UP:
            got.append((message.topic, message.payload))
            if len(got) == expected:
                done.set()

    watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id="cloud-watch")
    watcher.on_message = on_message
    watcher.on_subscribe = lambda *_a: subscribed.set()
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe("devices/#", qos=1)
    watcher.loop_start()
    try:
        assert subscribed.wait(10)
        answer = packets(replay(mosquitto, stream))
        assert done.wait(10), "the broker delivered %d of %d batches" % (len(got), expected)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    assert answer[0] == (0x20, b"\x00\x00")  # CONNACK: accepted, no session
    suback = [body for first, body in answer if first == 0x90]
    assert suback and suback[0][2:] == b"\x01"  # the downlink topic, granted QoS 1
    published_ids = {
        body[2 + int.from_bytes(body[:2], "big") :][:2]
        for first, body in sent
        if first >> 4 == 3 and (first >> 1) & 3 == 1
    }
    acked_ids = {body for first, body in answer if first == 0x40}
    assert acked_ids == published_ids  # every QoS 1 PUBLISH got its PUBACK
    published = [bytes.fromhex(p) for t, p in result["published"] if t == UP]
    assert [payload for _, payload in got] == published


def test_with_the_broker_unreachable_the_board_falls_back_to_coap(
    micropython: MicroPythonRunner,
) -> None:
    files = provisioned(coap="coap://coap.test:5683")
    result, _ = scenario(micropython, "run_fallback", ADVERTS, SECRET.hex(), files=files)
    assert result["choice"] == "coap" and result["uplink"]["uplink_fallbacks"] == 1
    assert result["uplink"]["uplink_connect_failures"] >= 3  # MQTT, before falling back
    posted = [bytes.fromhex(p) for p in result["posted"]]
    batches = [
        batch.decode_batch(cose.open_envelope(p, ring().lookup, UP).plaintext) for p in posted
    ]
    assert [value for _, value in temperatures(batches)] == EXPECTED  # sealed for the topic
    assert result["acked"] == len(posted) and result["queue"] == []  # acked over CoAP


def test_commands_and_configuration_from_the_cloud_are_acted_on(
    micropython: MicroPythonRunner,
) -> None:
    cloud = ring()
    settings = {**SETTINGS, "scan_interval_ms": 200, "scan_window_ms": 40}
    messages = [
        downlink.encode_command(7, "collect_diagnostics"),
        downlink.encode_command(8, "factory_reset"),
        downlink.encode_config(3, settings),
        downlink.encode_command(7, "collect_diagnostics"),  # the same id again: not run twice
    ]
    sealed = [
        [DOWN, downlink.seal_downlink(cloud, i, m, DOWN).hex()] for i, m in enumerate(messages)
    ]
    result, _ = scenario(micropython, "run_gateway", ADVERTS, 40, 100, sealed, files=provisioned())
    records = [r for b in opened_batches(result) for r in b.records]
    results = {
        (r.id, batch.STATUS_NAMES[r.status]): r.detail
        for r in records
        if isinstance(r, batch.CommandResult)
    }
    assert sorted(results) == [(7, "done"), (8, "refused")]
    assert results[(7, "done")].startswith("0.0.0-dev heard=")
    assert "not supported" in results[(8, "refused")]
    assert result["counters"]["configs_applied"] == 1
    assert result["scan"] == [200, 40]  # the new scan interval and window are in use
