"""``bankiot cloud up`` as a real process: web, CoAP and MQTT ingest and its private broker.

A gateway of the fleet (its envelope key issued by the identity area, its client
certificate signed by the fleet CA that ``up`` made) delivers a sealed batch through the
embedded broker with mutual TLS and opens the acknowledgement; another delivers over CoAP
(aiocoap as the client); both batches are in the SQLite database. SIGINT stops every part.
The stale-CRL check that ``serve`` and ``up`` run at start is checked against
``cryptography``'s reading of the CRL it writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiocoap
import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bankiot_core import downlink
from bankiot_core.keyring import KeyRing
from cloud.config import load_config
from cloud.db import Database
from cloud.fleet import commands
from cloud.fleet.models import Device
from cloud.identity.ca import CRL_FILE, load_ca, pem
from cloud.identity.keyfiles import write_private_key
from cloud.ingest.pipeline import RESOURCE
from cloud.up import UpError, choose, refresh_stale_crl
from provisioning.cli import main
from tests.cloud.ingest_support import SimGateway, enroll_key, stored_readings
from tests.support.environment import free_port, unavailable
from tests.support.mosquitto import find_mosquitto

LAST_LINE = "Ctrl-C stops everything."
LIMIT_S = 60.0  # a bound on waiting for `up` under load, not a measurement


class Up:
    """A running ``bankiot cloud up`` on free ports; ``lines`` is what it printed."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.http = free_port()
        self.mqtt = free_port()
        self.coap = free_port(kind=socket.SOCK_DGRAM)
        command = [sys.executable, "-c", "from provisioning.cli import entry_point; entry_point()"]
        self.process = subprocess.Popen(
            [
                *command,
                "cloud",
                "up",
                "--data-dir",
                str(data_dir),
                "--http",
                "127.0.0.1:%d" % self.http,
                "--coap",
                "127.0.0.1:%d" % self.coap,
                "--mqtt",
                "127.0.0.1:%d" % self.mqtt,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        while LAST_LINE not in self.lines:
            line = self.process.stdout.readline()
            assert line, "up exited:\n%s" % "".join(self.lines)
            self.lines.append(line.rstrip("\n"))

    def get(self, path: str) -> int:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.http, path)) as response:
            return response.status

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed")
    data_dir = tmp_path / "data"
    # A CA made earlier whose CRL went missing: `up` must sign one before the broker reads it.
    assert main(["cloud", "ca", "init", "--data-dir", str(data_dir)]) == 0
    (data_dir / CRL_FILE).unlink()
    running = Up(data_dir)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def enroll(data_dir: Path, uid: str, folder: Path) -> tuple[KeyRing, ssl.SSLContext]:
    """A gateway of the fleet: its envelope key in the database, and a TLS context with a
    client certificate from the fleet CA (CN = uid), as enrollment would give it."""
    now = dt.datetime.now(dt.UTC)
    database = Database(load_config(overrides={"data_dir": str(data_dir)})["DATABASE_URL"])
    try:
        ring = enroll_key(database, data_dir, uid)
    finally:
        database.dispose()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = load_ca(data_dir).sign(key.public_key(), uid, "device", now, dt.timedelta(days=1))
    (folder / ("%s.pem" % uid)).write_bytes(pem(cert))
    write_private_key(folder / ("%s.key" % uid), key, None)
    context = ssl.create_default_context(cafile=str(data_dir / "broker" / "ca.pem"))
    context.load_cert_chain(str(folder / ("%s.pem" % uid)), str(folder / ("%s.key" % uid)))
    return ring, context


def gateway(uid: str, ring: KeyRing, resource: str | None = None) -> SimGateway:
    """A simulated gateway with the enrolled key: three readings and an event, sealed."""
    gw = SimGateway(uid, resource=resource)
    gw.ring = ring
    gw.hear_many(3)
    gw.hear(bytes.fromhex("A4C13800000B"), "button", "press", "event")
    gw.flush()
    return gw


async def deliver_over_mqtt(gw: SimGateway, port: int, context: ssl.SSLContext) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=gw.gateway_id, tls_context=context
    ) as client:
        await client.subscribe(gw.down_aad, qos=1)
        for _seq, envelope in gw.outbox():
            await client.publish(gw.aad, envelope, qos=1)
        async with asyncio.timeout(LIMIT_S):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                gw.receive(message.payload, message.topic.value)
                if not len(gw.queue):
                    return


def issue_reboot(data_dir: Path, uid: str) -> int:
    """A reboot command for ``uid``, as the API stages it (the API is tested elsewhere)."""
    database = Database("sqlite:///%s" % (data_dir / "bankiot.sqlite3"))
    try:
        with database.sessions() as session:
            device = session.query(Device).filter_by(uid=uid).one()
            group = commands.issue(
                session, [device], "reboot", {}, actor="test", now=dt.datetime.now(dt.UTC)
            )
            session.commit()
            return commands.group_members(session, group.id)[0].id
    finally:
        database.dispose()


async def command_arrives(
    gw: SimGateway, port: int, context: ssl.SSLContext, data_dir: Path
) -> downlink.Downlink:
    """The gateway listens on its downlink; a command is issued; the supervisor inside `up`
    seals and publishes it through the embedded broker (whose ACL lets only the cloud
    publish there)."""
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=gw.gateway_id, tls_context=context
    ) as client:
        await client.subscribe(gw.down_aad, qos=1)
        command_id = await asyncio.to_thread(issue_reboot, data_dir, gw.gateway_id)
        async with asyncio.timeout(LIMIT_S):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                opened = downlink.open_downlink(message.payload, gw.ring, gw.window, gw.down_aad)
                assert opened.message == downlink.Command(command_id, "reboot", {})
                return opened
    raise AssertionError("no downlink message")


async def refused_without_certificate(port: int, cafile: Path) -> bool:
    """True if the broker refuses a client without a certificate in the TLS handshake
    (TLS 1.2: under TLS 1.3 the refusal comes after the handshake and the client would only
    notice by timing out, which a slow broker does too)."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        async with aiomqtt.Client("127.0.0.1", port, tls_context=context, timeout=LIMIT_S):
            return False
    except aiomqtt.MqttError as exc:
        return "alert handshake failure" in str(exc)


async def deliver_over_coap(gw: SimGateway, port: int) -> None:
    context = await aiocoap.Context.create_client_context()
    try:
        for _seq, envelope in gw.outbox():
            request = aiocoap.Message(
                code=aiocoap.POST, uri="coap://127.0.0.1:%d/%s" % (port, RESOURCE), payload=envelope
            )
            response = await asyncio.wait_for(context.request(request).response, LIMIT_S)
            assert response.code == aiocoap.CHANGED, response
            gw.receive(response.payload)
    finally:
        await context.shutdown()


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def udp_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_up_serves_web_coap_and_mqtt_and_stops_on_sigint(up: Up, tmp_path: Path) -> None:
    assert any("CRL was stale or missing: re-signed" in line for line in up.lines), up.lines
    assert "  web   http://127.0.0.1:%d (API docs at /docs)" % up.http in up.lines
    assert "  coap  coap://127.0.0.1:%d/batches" % up.coap in up.lines
    assert "  mqtt  mqtts://127.0.0.1:%d" % up.mqtt in up.lines
    assert up.get("/healthz") == 200
    assert up.get("/readyz") == 200  # database and the embedded broker answer

    ca_file = up.data_dir / "broker" / "ca.pem"
    assert asyncio.run(refused_without_certificate(up.mqtt, ca_file))
    over_mqtt, context = enroll(up.data_dir, "gw-up-mqtt", tmp_path)
    over_coap, _ = enroll(up.data_dir, "gw-up-coap", tmp_path)
    gw_mqtt = gateway("gw-up-mqtt", over_mqtt)
    gw_coap = gateway("gw-up-coap", over_coap, resource=RESOURCE)
    asyncio.run(deliver_over_mqtt(gw_mqtt, up.mqtt, context))
    asyncio.run(deliver_over_coap(gw_coap, up.coap))
    # each sent a routine batch (the temperatures) and an urgent one (the button press)
    assert (gw_mqtt.acks, gw_coap.acks) == (2, 2)
    assert len(gw_mqtt.queue) == len(gw_coap.queue) == 0
    opened = asyncio.run(command_arrives(gw_mqtt, up.mqtt, context, up.data_dir))
    assert opened.kind == downlink.KIND_COMMAND

    database = Database("sqlite:///%s" % (up.data_dir / "bankiot.sqlite3"))
    try:
        stored = Counter(stored_readings(database))
    finally:
        database.dispose()
    assert stored == Counter(gw_mqtt.accepted + gw_coap.accepted)

    assert up.interrupt() == 0
    assert not listening(up.http)
    assert not listening(up.mqtt)
    assert not udp_taken(up.coap)


def test_an_explicit_http_port_that_is_taken_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        args = ["cloud", "up", "--data-dir", str(tmp_path), "--http", "127.0.0.1:%d" % port]
        assert main(args) == 1
    err = capsys.readouterr().err
    assert err == "Error: 127.0.0.1:%d for HTTP is taken by another program\n" % port


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_a_taken_default_port_is_replaced_by_a_free_one_and_said(kind: int) -> None:
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        taken = "127.0.0.1:%d" % holder.getsockname()[1]
        chosen = choose("CoAP", taken, False, socket.SocketKind(kind))
        assert chosen.host == "127.0.0.1" and chosen.address != taken
        assert chosen.note == "%s is taken by another program; CoAP uses port %d" % (
            taken,
            chosen.port,
        )
        with socket.socket(socket.AF_INET, kind) as other:
            other.bind(("127.0.0.1", chosen.port))  # it was free
        with pytest.raises(UpError, match="is taken by another program"):
            choose("CoAP", taken, True, socket.SocketKind(kind))


def test_a_stale_crl_is_re_signed_at_start_and_a_fresh_one_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = load_config(overrides={"data_dir": str(tmp_path)})
    assert refresh_stale_crl(config) is None  # no CA: nothing to sign with
    assert main(["cloud", "ca", "init", "--data-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    path = tmp_path / CRL_FILE
    first = x509.load_pem_x509_crl(path.read_bytes())
    assert refresh_stale_crl(config) is None  # just signed: fresh
    assert path.read_bytes() == first.public_bytes(serialization.Encoding.PEM)

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=5)  # past half of its 7 days
    line = refresh_stale_crl(config, now=later)
    assert line == "CRL was stale or missing: re-signed %s" % path
    second = x509.load_pem_x509_crl(path.read_bytes())
    issuing = load_ca(tmp_path).issuing
    assert second.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    # valid for 7 days from the time it was signed (docs/operations.md), in whole seconds
    assert second.next_update_utc == (later + dt.timedelta(days=7)).replace(microsecond=0)
    assert second.last_update_utc <= later
    number = x509.CRLNumber
    assert (
        second.extensions.get_extension_for_class(number).value.crl_number
        == first.extensions.get_extension_for_class(number).value.crl_number + 1
    )


def test_a_broker_left_by_a_killed_up_is_stopped_by_the_next(up: Up) -> None:
    pid = int((up.data_dir / "broker" / "mosquitto.pid").read_text())
    up.process.kill()  # SIGKILL: `up` cannot stop its broker
    up.process.wait()
    assert Path("/proc/%d" % pid).exists()  # the broker outlived it (its own session)
    again = Up(up.data_dir)
    try:
        assert not Path("/proc/%d" % pid).exists() or _zombie(pid)
        assert again.get("/readyz") == 200
    finally:
        assert again.interrupt() == 0
    assert not (up.data_dir / "broker" / "mosquitto.pid").exists()


def _zombie(pid: int) -> bool:
    """True if ``pid`` has exited and waits only to be reaped by its (gone) parent."""
    try:
        return Path("/proc/%d/stat" % pid).read_text().split()[2] == "Z"
    except OSError:
        return True
