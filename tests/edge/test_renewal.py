"""``edge.renewal`` against the real cloud app on a real HTTP server.

The gateway is enrolled the way a technician enrolls it (``edge.enroll``), then renews.
What is expected comes from the cloud (its certificate listing, its audit), from
``cryptography`` (path validation to the fleet root kept offline, the key on disk) and from
the cloud's documented rule (renew two thirds into a 30-day certificate, ten days before
it ends), not from the code under test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from sqlalchemy.engine import URL

from bankiot_core import batch, cose
from bankiot_core.gateway import Action
from cloud.identity.ca import load_ca, pem
from edge import identity as files
from edge import renewal, runtime
from edge.enroll import enroll
from edge.identity import Identity
from edge.renewal import Renewer, RenewRefused, RenewUnreachable, due, renew
from edge.uplink import uplink_aad
from edge.uplink_mqtt import MqttLink
from tests.cloud.fleet_actions import served_app
from tests.cloud.identity_actions import Cloud, audit_actions, body, create_claim, running_cloud
from tests.edge.waiting import run

UID = "gw-renew-1"
TEN_DAYS = dt.timedelta(days=10)  # the cloud renews a 30-day certificate 10 days before it ends


@dataclass
class Enrolled:
    cloud: Cloud
    url: str
    data_dir: Path
    identity: Identity

    def listed(self) -> list[tuple[str, str]]:
        """The device's certificates as the cloud lists them, newest first."""
        path = "/api/identity/devices/%d/certificates" % self.identity.device_id
        return [(c["serial"], c["status"]) for c in body(self.cloud.client.get(path))]

    def on_disk(self) -> dict[str, tuple[bytes, int]]:
        """Every file in the data folder's identity (name -> bytes, mode)."""
        folder = files.identity_folder(self.data_dir)
        return {p.name: (p.read_bytes(), mode(p)) for p in sorted(folder.iterdir())}

    def left(self) -> list[str]:
        """What is in the data folder besides the lock file."""
        return sorted(p.name for p in self.data_dir.iterdir() if p.name != ".enroll.lock")


@pytest.fixture
def enrolled(migrated_sqlite_url: URL, tmp_path: Path) -> Iterator[Enrolled]:
    """A gateway enrolled with a cloud served on a free local port."""
    with (
        running_cloud(migrated_sqlite_url, tmp_path / "cloud") as cloud,
        served_app(cloud.app) as url,
    ):
        data_dir = tmp_path / "gateway"
        done = enroll(url, create_claim(cloud), data_dir, uid=UID)
        yield Enrolled(cloud, url, data_dir, done.identity)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def validates(enrolled: Enrolled, identity: Identity) -> bool:
    """Whether the stored certificate and chain validate up to the cloud's offline root."""
    root_pem = (enrolled.cloud.root_dir / "root.pem").read_bytes()
    root = x509.load_pem_x509_certificate(root_pem)
    verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
    return verifier.verify(identity.certificate, list(identity.ca_chain)).chain[-1] == root


def stored_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(
        (files.identity_folder(data_dir) / files.KEY_FILE).read_bytes(), None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_renewal_with_a_new_key(enrolled: Enrolled) -> None:
    old = enrolled.identity
    renewed = renew(old, enrolled.url, new_key=True)

    # the cloud lists the new serial first, and still the presented one (a lost answer
    # could be retried with it)
    assert renewed.serial() != old.serial()
    assert enrolled.listed() == [(renewed.serial(), "active"), (old.serial(), "active")]
    renewals = [
        d for _, action, d in audit_actions(enrolled.cloud) if action == "certificate.renew"
    ]
    assert [(d["serial"], d["presented"], d["new_key"]) for d in renewals] == [
        (renewed.serial(), old.serial(), True)
    ]

    # the stored key is new and the stored certificate is its own, for the uid, valid to root
    key = stored_key(enrolled.data_dir)
    cert = x509.load_pem_x509_certificate(
        (files.identity_folder(enrolled.data_dir) / files.CERT_FILE).read_bytes()
    )
    assert cert.public_key() == key.public_key() != old.key.public_key()
    assert "%x" % cert.serial_number == renewed.serial()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == UID
    assert validates(enrolled, renewed)

    # files private, nothing left beside the identity, the rest of it unchanged
    folder = files.identity_folder(enrolled.data_dir)
    assert mode(folder) == 0o700
    assert {name: m for name, (_, m) in enrolled.on_disk().items()} == dict.fromkeys(
        files.FILES, 0o600
    )
    assert enrolled.left() == ["identity"]
    same = ("device_id", "topics", "config", "envelope_version", "envelope_secret")
    assert [getattr(renewed, name) for name in same] == [getattr(old, name) for name in same]
    # the cloud's renewal hint is kept: ten days before the new certificate ends
    assert renewed.renew_after == cert.not_valid_after_utc - TEN_DAYS


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_renewal_with_the_same_key(
    enrolled: Enrolled, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:  # a kernel or C library without RENAME_EXCHANGE
        monkeypatch.setattr(renewal, "_exchange", lambda a, b: False)
    old = enrolled.identity
    key_before = enrolled.on_disk()[files.KEY_FILE]
    renewed = renew(old, enrolled.url)
    assert renewed.serial() != old.serial()
    assert enrolled.listed()[0] == (renewed.serial(), "active")
    assert enrolled.on_disk()[files.KEY_FILE] == key_before
    assert renewed.certificate.public_key() == stored_key(enrolled.data_dir).public_key()
    assert validates(enrolled, renewed)
    assert enrolled.left() == ["identity"]

    # a second renewal presents the newest certificate: the first one is superseded
    again = renew(old, enrolled.url)  # a stale identity in hand: the files are what counts
    assert enrolled.listed() == [
        (again.serial(), "active"),
        (renewed.serial(), "active"),
        (old.serial(), "revoked"),
    ]


def test_a_revoked_gateway_is_refused_and_nothing_changes(enrolled: Enrolled) -> None:
    path = "/api/identity/devices/%d/revoke" % enrolled.identity.device_id
    response = enrolled.cloud.client.post(path, json={"reason": "keyCompromise"})
    assert response.status_code == 200, response.json
    before = enrolled.on_disk()
    with pytest.raises(RenewRefused) as caught:
        renew(enrolled.identity, enrolled.url, new_key=True)
    assert caught.value.status == 403
    assert "\n" not in caught.value.message and "revoked" in caught.value.message
    assert enrolled.on_disk() == before
    assert enrolled.left() == ["identity"]


def test_a_renewal_while_the_cloud_is_down_leaves_the_identity(
    enrolled: Enrolled, free_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    down = "http://127.0.0.1:%d" % free_tcp_port  # nothing listens there
    before = enrolled.on_disk()
    for new_key in (True, False):
        with pytest.raises(RenewUnreachable, match="^cannot reach %s: " % down):
            renew(enrolled.identity, down, new_key=new_key)
    assert enrolled.on_disk() == before
    assert enrolled.left() == ["identity"]

    # in the runtime: not fatal, one line logged, tried again after a backoff delay
    engine = runtime.open_engine(
        enrolled.data_dir, enrolled.identity.keyring(), uplink_aad(UID), "1.0.0", 1 << 20
    )
    gateway = runtime.GatewayRuntime(engine, enrolled.data_dir / runtime.STATE_FILE)
    late = enrolled.identity.certificate.not_valid_after_utc - dt.timedelta(days=1)
    renewer = Renewer(enrolled.data_dir, down, clock=lambda: late, random=lambda: 0.5)

    async def test() -> None:
        with caplog.at_level(logging.WARNING, logger="edge.renewal"):
            assert await renewer.check(gateway) is False

    run(test)
    engine.queue.close()
    assert [r.getMessage().count("\n") for r in caplog.records] == [0]
    assert caplog.records[0].getMessage().startswith("certificate renewal failed")
    assert renewer.next_check_ms(False) == 30_000  # half of the first minute of backoff
    assert enrolled.on_disk() == before


def test_due_at_the_boundary(enrolled: Enrolled) -> None:
    identity = enrolled.identity
    # recorded at enrollment: the cloud's hint, ten days before the certificate ends
    hint = identity.certificate.not_valid_after_utc - TEN_DAYS
    assert identity.renew_after == hint
    assert not due(identity, hint - dt.timedelta(microseconds=1))
    assert due(identity, hint)
    assert due(identity, hint.astimezone(dt.timezone(dt.timedelta(hours=2))))

    # not recorded: two thirds into the certificate's validity (20 of 30 days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, UID)])
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    bare = dataclasses.replace(identity, certificate=cert, renew_after=None)
    boundary = dt.datetime(2030, 1, 21, tzinfo=dt.UTC)
    assert not due(bare, boundary - dt.timedelta(seconds=1))
    assert due(bare, boundary)


class Links:
    """What the runtime's uplinks offer, with a real MQTT-over-TLS link (not connected)."""

    def __init__(self, identity: Identity) -> None:
        self.links = {"mqtt": MqttLink.from_url("mqtts://127.0.0.1:8883", identity)}
        self.woken = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        return None

    def wake(self) -> None:
        self.woken += 1

    def set_preferred(self, name: str) -> None:
        return None

    def counters(self) -> dict[str, int]:
        return {}


def presented_serial(context: ssl.SSLContext, enrolled: Enrolled, tmp: Path) -> str:
    """The serial of the certificate a client with ``context`` presents to a TLS server
    like the broker: its certificate from the fleet CA, client certificates required."""
    ca = load_ca(enrolled.cloud.data_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = ca.sign(
        key.public_key(), "127.0.0.1", "server", now, dt.timedelta(hours=1), ["127.0.0.1"]
    )
    tmp.mkdir(exist_ok=True)
    (tmp / "server.pem").write_bytes(pem(cert, ca.issuing))
    (tmp / "server.key").write_bytes(files.key_pem(key))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "server.pem", tmp / "server.key")
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cadata=pem(ca.root).decode())
    seen: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True) as tls:
                seen.append(tls.getpeercert(binary_form=True) or b"")
                tls.recv(1)

        thread = threading.Thread(target=accept)
        thread.start()
        address = listener.getsockname()
        with (
            socket.create_connection(address) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b".")
        thread.join()
    return "%x" % x509.load_der_x509_certificate(seen[0]).serial_number


def command_results(engine: object, identity: Identity) -> list[tuple[int, str, object]]:
    """The command results queued by the engine, opened as the cloud opens them."""
    queue = engine.queue  # type: ignore[attr-defined]
    results = []
    for seq in queue.seqs():
        opened = cose.open_envelope(
            queue._storage.get(seq), identity.keyring().lookup, uplink_aad(identity.uid)
        )
        for record in batch.decode_batch(opened.plaintext).records:
            if isinstance(record, batch.CommandResult):
                results.append((record.id, batch.STATUS_NAMES[record.status], record.detail))
    return results


def test_rotate_key_in_the_runtime_reports_the_new_certificate(
    enrolled: Enrolled, free_tcp_port: int, tmp_path: Path
) -> None:
    old = enrolled.identity
    engine = runtime.open_engine(
        enrolled.data_dir, old.keyring(), uplink_aad(UID), "1.0.0", 1 << 20
    )
    gateway = runtime.GatewayRuntime(engine, enrolled.data_dir / runtime.STATE_FILE)
    links = Links(old)
    gateway.uplinks = links
    old_tls = links.links["mqtt"].tls
    assert old_tls is not None

    async def rotate(command_id: int) -> None:
        gateway.carry_out(Action(command_id, "rotate_key", {}), 0)
        await asyncio.gather(*gateway._work)

    assert presented_serial(old_tls, enrolled, tmp_path) == old.serial()
    gateway.renewer = Renewer(enrolled.data_dir, enrolled.url)
    run(lambda: rotate(7))
    newest, status = enrolled.listed()[0]
    assert status == "active" and newest != old.serial()
    renewed = files.load_identity(enrolled.data_dir)
    assert renewed.serial() == newest
    assert renewed.certificate.public_key() != old.key.public_key()
    # the MQTT link's next connection presents the new certificate (a fresh TLS context)
    new_tls = links.links["mqtt"].tls
    assert new_tls is not None and links.woken == 1
    assert presented_serial(new_tls, enrolled, tmp_path) == newest

    # the cloud down: the command fails with the reason, and the identity stays
    gateway.renewer = Renewer(enrolled.data_dir, "http://127.0.0.1:%d" % free_tcp_port)
    before = enrolled.on_disk()
    run(lambda: rotate(8))
    assert enrolled.on_disk() == before

    until = renewed.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    results = command_results(engine, old)
    engine.queue.close()
    assert results[0] == (7, "done", "certificate %s until %s" % (newest, until))
    assert results[1][:2] == (8, "failed")
    assert str(results[1][2]).startswith("cannot reach http://127.0.0.1:%d: " % free_tcp_port)
    assert len(results) == 2


# ---- `bankiot gateway status` and `bankiot gateway renew` -----------------------------------


def gateway_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from provisioning.cli import main

    code = main(["gateway", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_shows_when_to_renew_and_renew_renews_now(
    enrolled: Enrolled, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ("--data-dir", str(enrolled.data_dir))
    code, out, err = gateway_cli(capsys, "status", *data, "--json")
    assert (code, err) == (0, "")
    cert = json.loads(out)["certificate"]
    not_after = enrolled.identity.certificate.not_valid_after_utc
    assert dt.datetime.fromisoformat(cert["not_after"]) == not_after
    assert dt.datetime.fromisoformat(cert["renew_after"]) == not_after - TEN_DAYS  # the cloud's
    code, out, _ = gateway_cli(capsys, "status", *data)
    assert "renew after   %s\n" % (not_after - TEN_DAYS).isoformat() in out

    key_before = enrolled.on_disk()[files.KEY_FILE]
    code, out, err = gateway_cli(capsys, "renew", *data)  # the enrollment's cloud
    assert (code, err) == (0, "")
    serial, status = enrolled.listed()[0]
    renewed = files.load_identity(enrolled.data_dir)
    assert (serial, status) == (renewed.serial(), "active") and serial != enrolled.identity.serial()
    assert out == "certificate %s valid until %s, renew after %s\n" % (
        serial,
        renewed.certificate.not_valid_after_utc.isoformat(),
        (renewed.certificate.not_valid_after_utc - TEN_DAYS).isoformat(),
    )
    assert enrolled.on_disk()[files.KEY_FILE] == key_before  # the same key
    assert validates(enrolled, renewed)


def test_renew_that_fails_says_why_in_one_line(
    enrolled: Enrolled, free_tcp_port: int, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = enrolled.on_disk()
    config = tmp_path / "gateway.toml"
    config.write_text(
        'data_dir = "%s"\n[cloud]\nurl = "http://127.0.0.1:%d"\n'
        % (enrolled.data_dir, free_tcp_port)  # nothing listens there
    )
    code, out, err = gateway_cli(capsys, "renew", "--config", str(config))
    assert (code, out) == (1, "")
    assert err.startswith("Error: cannot reach http://127.0.0.1:%d: " % free_tcp_port)
    assert err.count("\n") == 1
    path = "/api/identity/devices/%d/revoke" % enrolled.identity.device_id
    assert enrolled.cloud.client.post(path, json={"reason": "keyCompromise"}).status_code == 200
    code, out, err = gateway_cli(capsys, "renew", "--data-dir", str(enrolled.data_dir))
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("Error: the cloud refused the renewal (HTTP 403): ") and "revoked" in err
    assert enrolled.on_disk() == before
