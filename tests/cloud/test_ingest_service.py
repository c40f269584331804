"""Ingest as a service: the identity area's keys as a ``KeySource``, and the
``bankiot cloud ingest-mqtt`` / ``ingest-coap`` commands run as real processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.engine import URL

from bankiot_core import cose
from cloud.db import Database
from cloud.fleet.models import Branch, Device
from cloud.identity.keys import issue_envelope_key, load_wrapper
from cloud.ingest.identity_keys import IdentityKeySource
from cloud.ingest.pipeline import Ingest
from provisioning.cli import main
from tests.cloud.ingest_support import SimGateway, migrated
from tests.support.environment import free_port, unavailable
from tests.support.mosquitto import MosquittoBroker

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
LIMIT_S = 60.0  # a bound on waiting for a process under load, not a measurement
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason code


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def test_identity_keys_open_enrolled_gateways_and_revocation_shows_within_the_ttl(
    database: Database, tmp_path: Path
) -> None:
    wrapper = load_wrapper(tmp_path, environ={})
    with database.sessions() as session:
        branch = Branch(code="B001", name="Main street")
        device = Device(uid="gw-enrolled", kind="gateway", branch=branch, status="active")
        session.add_all([branch, device])
        session.flush()
        _row, secret = issue_envelope_key(session, device, wrapper, NOW)
        session.commit()
    now = [0.0]
    keys = IdentityKeySource(database, wrapper, ttl=30, clock=lambda: now[0])
    ingest = Ingest(database, keys)
    topic = "devices/gw-enrolled/up"
    envelope = cose.seal(secret, "gw-enrolled", 1, 0, b"not a batch", topic)
    result = ingest.handle(envelope, topic, "mqtt", "gw-enrolled")
    assert (result.status, result.reason) == ("rejected", "undecodable")  # it opened
    assert keys.lookup(b"gw-enrolled", 2) is None and keys.lookup(b"\xff", 1) is None
    assert "secret" not in repr(keys) and secret.hex() not in repr(keys)
    with database.sessions() as session:
        row = session.get(Device, device.id)
        assert row is not None
        row.status = "revoked"
        session.commit()
    assert not keys.is_revoked(b"gw-enrolled")  # cached ...
    now[0] += 31
    assert keys.is_revoked(b"gw-enrolled")  # ... for ttl seconds
    again = ingest.handle(envelope, topic, "mqtt", "gw-enrolled")
    assert (again.status, again.reason) == ("rejected", "revoked")


def test_ingest_commands_explain_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["cloud", "ingest-mqtt", "--data-dir", str(tmp_path)]) == 1
    assert "no broker" in capsys.readouterr().err
    args = ["cloud", "ingest-mqtt", "--data-dir", str(tmp_path), "--broker", "http://x"]
    assert main(args) == 1
    assert "is not mqtt://HOST:PORT" in capsys.readouterr().err
    assert main(["cloud", "ingest-coap", "--data-dir", str(tmp_path), "--coap", "nowhere"]) == 1
    assert "is not HOST:PORT" in capsys.readouterr().err


def bankiot(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", "from provisioning.cli import entry_point; entry_point()"]
    return subprocess.Popen(
        [*command, "cloud", *args, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline()


def metric(port: int, needle: str, seconds: float = LIMIT_S) -> str:
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=LIMIT_S) as response:
            text = response.read().decode()
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError("%r not in metrics:\n%s" % (needle, text))


def publish_once_subscribed(broker: MosquittoBroker, topic: str, payload: bytes) -> None:
    """Publish ``payload`` (QoS 1, MQTT 5) until the broker's PUBACK says a subscriber got
    it. The worker subscribes some time after it starts (how long depends on the machine's
    load); until then the broker answers "no matching subscribers" (0x10) and delivers the
    copy to no one, so exactly one copy reaches the worker."""
    codes: dict[int, int] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_publish = lambda _c, _u, mid, code, _p: codes.__setitem__(mid, int(code.value))
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        deadline = time.monotonic() + LIMIT_S
        while True:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(LIMIT_S)
            code = codes.get(info.mid)
            if code == 0:
                return
            assert code == NO_MATCHING_SUBSCRIBERS, "PUBACK reason code %r" % code
            assert time.monotonic() < deadline, "the worker never subscribed to %s" % topic
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=LIMIT_S)


def test_ingest_mqtt_runs_counts_and_stops_on_sigterm(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    assert main(["cloud", "db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    metrics_port = free_port()
    broker = "mqtt://%s:%d" % (mosquitto.host, mosquitto.port)
    process = bankiot(
        tmp_path,
        "ingest-mqtt",
        "--broker",
        broker,
        "--group",
        "cli",
        "--metrics",
        "127.0.0.1:%d" % metrics_port,
    )
    try:
        assert "ingesting from" in first_line(process)
        metric(metrics_port, "bankiot_ingest_batches")
        publish_once_subscribed(mosquitto, "devices/gw-unknown/up", b"\xd0garbage")
        metric(metrics_port, 'outcome="rejected",reason="malformed",transport="mqtt"} 1.0')
    finally:
        assert stop(process) == 0


def test_ingest_coap_serves_discovery_and_stops_on_sigterm(tmp_path: Path) -> None:
    if subprocess.run(["which", "coap-client-notls"], capture_output=True).returncode:
        unavailable("coap-client-notls not found: apt-get install libcoap3-bin")
    assert main(["cloud", "db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    port = free_port(kind=socket.SOCK_DGRAM)
    process = bankiot(tmp_path, "ingest-coap", "--coap", "127.0.0.1:%d" % port)
    try:
        assert "coap://127.0.0.1:%d/batches" % port in first_line(process)
        found = subprocess.run(
            [
                "coap-client-notls",
                "-B",
                "10",
                "-m",
                "get",
                "coap://127.0.0.1:%d/.well-known/core" % port,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "</batches>" in found.stdout, found
    finally:
        assert stop(process) == 0


def test_ingest_purge_deletes_what_outlived_its_class(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["cloud", "db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    with migrated("sqlite:///%s" % (tmp_path / "bankiot.sqlite3")) as database:
        gw = SimGateway("gw-purge", unix_ms=int(time.time() * 1000) - 3 * 86_400_000)
        gw.hear(bytes.fromhex("C0FFEE000002"), "heart_rate", 70, "bpm")  # three days old
        gw.flush()
        [(_s, envelope)] = gw.outbox()
        assert Ingest(database, gw.keys()).handle(envelope, gw.aad, "mqtt").status == "accepted"
    args = ["cloud", "ingest-purge", "--data-dir", str(tmp_path), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["health"]["deleted"] == 0  # 7 days by default
    assert main([*args, "--keep", "health=2d"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["health"] == {"deleted": 1, "kept_for": "2 days, 0:00:00"}
    assert main([*args, "--keep", "health"]) == 1
    assert "CLASS=DURATION" in capsys.readouterr().err
