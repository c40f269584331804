"""The production broker configuration, run by the real Mosquitto.

``bankiot cloud broker-config`` writes the configuration; the test only adds what a test
machine needs (log file, running as root) and starts Mosquitto with it. Devices are
enrolled through the API, so the certificates, the ACL and the CRL are the cloud's own.
"""

from __future__ import annotations

import os
import queue
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.engine import URL

from provisioning.cli import main
from tests.cloud.identity_actions import Cloud, device_id, enroll_new, running_cloud
from tests.support.environment import free_port
from tests.support.mosquitto import MosquittoBroker, find_mosquitto

pytestmark = pytest.mark.mosquitto


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path


def save_identity(folder: Path, uid: str, key: Any, answer: dict) -> Identity:
    folder.mkdir(parents=True, exist_ok=True)
    identity = Identity(folder / ("%s.pem" % uid), folder / ("%s.key" % uid))
    identity.cert.write_text(answer["certificate"])
    identity.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return identity


LIMIT_S = 60.0  # a bound on waiting for the broker under load, not a measurement


class Peer:
    """A synchronous MQTT 3.1.1 client over TLS with a client certificate."""

    def __init__(self, broker: MosquittoBroker, ca: Path, identity: Identity, name: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        connected: queue.Queue[ReasonCode] = queue.Queue()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(identity.cert), str(identity.key))
        # TLS 1.2: the broker checks the client certificate inside the handshake, so a
        # refused certificate fails connect() itself
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        client.tls_set_context(context)
        client.on_connect = lambda _c, _u, _f, code, _p: connected.put(code)
        client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, bytes(msg.payload)))
        client.on_subscribe = lambda _c, _u, _m, codes, _p: self.subacks.put(codes)
        client.connect(broker.host, broker.port)
        client.loop_start()
        self.client = client
        code = connected.get(timeout=LIMIT_S)
        assert not code.is_failure, code

    def subscribe(self, topic: str) -> int:
        """Subscribe at QoS 1; the granted QoS, or 128 when refused."""
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=LIMIT_S)[0].value

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=LIMIT_S)

    def received_until(self, marker: bytes) -> list[tuple[str, bytes]]:
        """Messages received up to and including the one with payload ``marker``."""
        seen = []
        while not seen or seen[-1][1] != marker:
            seen.append(self.messages.get(timeout=LIMIT_S))
        return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def cloud(database_url: URL, tmp_path: Path) -> Iterator[Cloud]:
    with running_cloud(database_url, tmp_path) as made:
        yield made


def start_generated_broker(
    cloud: Cloud, database_url: URL, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> MosquittoBroker:
    """``bankiot cloud broker-config`` into ``folder``, then Mosquitto on that config."""
    executable = find_mosquitto()
    assert executable is not None, "mosquitto is not installed"
    monkeypatch.setenv("BANKIOT_DATABASE_URL", database_url.render_as_string(hide_password=False))
    port = free_port()
    argv = ["cloud", "broker-config", "--data-dir", str(cloud.data_dir), "--out", str(folder)]
    assert main([*argv, "--listen", "127.0.0.1:%d" % port]) == 0
    config = folder / "mosquitto.conf"
    generated = config.read_text()
    for line in (
        "require_certificate true",
        "use_identity_as_username true",
        "crlfile %s" % (cloud.data_dir / "crl.pem"),
        "acl_file %s" % (cloud.data_dir / "mosquitto.acl"),
    ):
        assert line in generated.splitlines()
    # what only a test machine needs: a log to read, and no privilege drop when root
    test_lines = ["log_dest file %s" % (folder / "mosquitto.log"), "log_type all"]
    if os.geteuid() == 0:
        test_lines.insert(0, "user root")
    config.write_text("\n".join(test_lines) + "\n" + generated)
    assert main(argv) == 1  # never overwrites a configuration it made
    broker = MosquittoBroker(folder=folder, port=port, tls=True, ca=None, executable=executable)
    broker.start()
    return broker


def test_devices_stay_in_their_topics_and_revoked_ones_stay_out(
    cloud: Cloud, database_url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "devices"
    north, south = cloud.branches["north"], cloud.branches["south"]
    key_a, answer_a = enroll_new(cloud, "gw-a", "north")
    key_b, answer_b = enroll_new(cloud, "gw-b", "north")
    a, b = (
        save_identity(keys, "gw-a", key_a, answer_a),
        save_identity(keys, "gw-b", key_b, answer_b),
    )
    folder = tmp_path / "broker"
    broker = start_generated_broker(cloud, database_url, folder, monkeypatch)
    ca = folder / "ca.pem"
    peers: list[Peer] = []
    try:
        cloud_peer = Peer(
            broker, ca, Identity(folder / "cloud.pem", folder / "cloud.key"), "ingest"
        )
        peers.append(cloud_peer)
        assert cloud_peer.subscribe("devices/+/up/#") == 1
        device_a = Peer(broker, ca, a, "gw-a")
        peers.append(device_a)

        # A publishes under its own uplink; a message as B is dropped by the broker
        device_a.publish("devices/gw-a/up/batch", b"from a")
        device_a.publish("devices/gw-b/up/batch", b"forged as b")
        device_a.publish("devices/gw-a/up/batch", b"marker")
        assert cloud_peer.received_until(b"marker") == [
            ("devices/gw-a/up/batch", b"from a"),
            ("devices/gw-a/up/batch", b"marker"),
        ]

        # A may read its own downlink and its branch's, nothing of B's or another branch's
        assert device_a.subscribe("devices/gw-a/down/#") == 1
        assert device_a.subscribe("branches/%d/down/#" % north) == 1
        for topic in ("devices/gw-b/down/#", "branches/%d/down/#" % south, "devices/gw-a/up/#"):
            # Mosquitto grants these and filters at delivery: what counts is what arrives
            device_a.subscribe(topic)
        cloud_peer.publish("devices/gw-b/down/config", b"for b only")
        cloud_peer.publish("branches/%d/down/config" % south, b"for the south branch")
        cloud_peer.publish("devices/gw-a/up/batch", b"spoofed uplink")
        cloud_peer.publish("branches/%d/down/config" % north, b"for the north branch")
        cloud_peer.publish("devices/gw-a/down/config", b"for a")
        assert device_a.received_until(b"for a") == [
            ("branches/%d/down/config" % north, b"for the north branch"),
            ("devices/gw-a/down/config", b"for a"),
        ]
        for peer in peers:
            peer.close()
        peers.clear()

        # revoke A: the CRL is rewritten; once the broker reloads it, A cannot connect
        response = cloud.client.post(
            "/api/identity/devices/%d/revoke" % device_id(answer_a),
            json={"reason": "keyCompromise"},
        )
        assert response.status_code == 200
        broker.restart()
        with pytest.raises((ssl.SSLError, ConnectionError)):
            Peer(broker, ca, a, "gw-a-again")
        peers.append(Peer(broker, ca, b, "gw-b"))  # B is unaffected
    finally:
        for peer in peers:
            peer.close()
        broker.stop()
