"""``bankiot gateway enroll`` and ``status`` against the real cloud app on a real HTTP server.

The cloud runs on SQLite only: its data layer is tested on both databases in tests/cloud;
what is tested here is the gateway's side. Stored files are checked with ``cryptography``'s
own path validation (trusting only the root from the cloud's offline folder), and the
stored envelope key by sealing with the portable core and opening with what the cloud keeps.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from sqlalchemy.engine import URL
from werkzeug.serving import make_server

from bankiot_core import cose
from cloud.db import database
from cloud.identity import claims
from cloud.identity.csr import check_uid as cloud_check_uid
from cloud.identity.errors import InvalidCSR
from cloud.identity.keys import envelope_key_lookup, load_wrapper
from edge import enroll as enrollment
from edge import identity as files
from edge.errors import BadAnswer, EnrollError, InsecureFile, NotEnrolled
from hw.micropython_runner import PROJECT_ROOT
from provisioning.cli import main
from tests.cloud.fleet_actions import served_app
from tests.cloud.identity_actions import Cloud, body, create_claim, enroll, running_cloud
from tests.support.pki import TestCA

BROKER = "mqtts://mqtt.bank.example:8883"
UID = "gw-pi-1"


@dataclass
class Served:
    cloud: Cloud
    url: str


@pytest.fixture
def served(migrated_sqlite_url: URL, tmp_path: Path) -> Iterator[Served]:
    """A cloud with a fleet CA and branches north and south, on a free local port."""
    with (
        running_cloud(migrated_sqlite_url, tmp_path / "cloud", broker_url=BROKER) as cloud,
        served_app(cloud.app) as url,
    ):
        yield Served(cloud, url)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "gateway"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["gateway", *args])
    out, err = capsys.readouterr()
    return code, out, err


def run_enroll(
    capsys: pytest.CaptureFixture[str], served: Served, token: str, data_dir: Path, *more: str
) -> tuple[int, str, str]:
    return run(
        capsys,
        "enroll",
        "--cloud",
        served.url,
        "--claim",
        token,
        "--data-dir",
        str(data_dir),
        *more,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def identity_left(data_dir: Path) -> list[str]:
    """What an enrollment left in the data folder besides its lock file."""
    if not data_dir.exists():
        return []
    return sorted(p.name for p in data_dir.iterdir() if p.name != ".enroll.lock")


def one_error_line(code: int, err: str) -> str:
    assert code == 1
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    return err


def test_enroll_stores_a_private_identity_the_cloud_recognises(
    served: Served, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_enroll(capsys, served, create_claim(served.cloud), data_dir, "--uid", UID)
    assert (code, err) == (0, "")
    north = served.cloud.branches["north"]
    assert out.startswith("enrolled %s: device " % UID)
    assert "(gateway) in branch %d" % north in out
    assert "uplinks: mqtt %s, coap coap://127.0.0.1:5683" % BROKER in out

    folder = data_dir / "identity"
    assert mode(data_dir) == 0o700 and mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == sorted(files.FILES)
    for path in folder.iterdir():
        assert stat.S_ISREG(path.lstat().st_mode) and mode(path) == 0o600, path

    # the key was made here and the certificate is for it, issued under the fleet root
    key = serialization.load_pem_private_key((folder / "device.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    cert = x509.load_pem_x509_certificate((folder / "device.crt").read_bytes())
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == UID
    root = x509.load_pem_x509_certificate((served.cloud.root_dir / "root.pem").read_bytes())
    chain = x509.load_pem_x509_certificates((folder / "ca.pem").read_bytes())
    verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
    assert verifier.verify(cert, chain).chain[-1] == root

    # the cloud lists this certificate for the device it created
    record = json.loads((folder / "enrollment.json").read_text())
    assert (record["uid"], record["branch_id"], record["kind"]) == (UID, north, "gateway")
    listed = served.cloud.client.get("/api/identity/devices/%d/certificates" % record["device_id"])
    assert [c["serial"] for c in body(listed)] == ["%x" % cert.serial_number]

    # the stored envelope key is the cloud's: the gateway seals, the cloud opens
    identity = files.load_identity(data_dir)
    topic = identity.topics["up"]
    assert topic == "devices/%s/up" % UID
    envelope = cose.seal_with(identity.keyring(), 1, b"batch", topic)
    with served.cloud.app.app_context(), database().sessions() as db:
        lookup = envelope_key_lookup(db, load_wrapper(served.cloud.data_dir))
        assert cose.open_envelope(envelope, lookup, topic).plaintext == b"batch"

    # no secret in what was printed, nor in status or the identity's repr
    code, status_json, err = run(capsys, "status", "--data-dir", str(data_dir), "--json")
    assert (code, err) == (0, "")
    shown = json.loads(status_json)
    assert (shown["uid"], shown["device_id"]) == (UID, record["device_id"])
    assert shown["uplinks"] == {"prefer": "mqtt", "mqtt": BROKER, "coap": "coap://127.0.0.1:5683"}
    code, status_text, _ = run(capsys, "status", "--data-dir", str(data_dir))
    assert code == 0 and status_text.startswith("device        %s" % UID)
    secret = identity.envelope_secret
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for text in (out, status_json, status_text, repr(identity)):
        for needle in (base64.b64encode(secret).decode(), secret.hex(), "PRIVATE KEY"):
            assert needle not in text
        assert base64.b64encode(key_der).decode()[30:60] not in text


@pytest.mark.parametrize("case", ["used", "expired", "cancelled", "garbage"])
def test_refused_claims_are_one_line_and_write_nothing(
    served: Served, data_dir: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    cloud = served.cloud
    if case == "used":
        token = create_claim(cloud)
        enroll(cloud, token, "gw-other")
        expected = "(HTTP 409): claim token was already used"
    elif case == "expired":
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        with cloud.app.app_context(), database().sessions() as db:
            _, token = claims.create_claim(
                db, "operator:ops", cloud.branches["north"], "gateway", past, dt.timedelta(days=1)
            )
            db.commit()
        expected = "(HTTP 410): claim token expired at "
    elif case == "cancelled":
        token = create_claim(cloud)
        claim_id = body(cloud.client.get("/api/identity/claims"))[0]["id"]
        assert cloud.client.delete("/api/identity/claims/%d" % claim_id).status_code == 204
        expected = "(HTTP 401): claim token was cancelled"
    else:
        token = "bkc_not-a-claim"
        expected = "(HTTP 422): Validation error"
    code, out, err = run_enroll(capsys, served, token, data_dir, "--uid", UID)
    assert expected in one_error_line(code, err) and out == ""
    assert token not in err
    assert identity_left(data_dir) == []


def test_unreachable_or_plain_http_cloud(
    data_dir: Path, capsys: pytest.CaptureFixture[str], free_tcp_port: int
) -> None:
    url = "http://127.0.0.1:%d" % free_tcp_port  # nothing listens there
    code, _, err = run(
        capsys, "enroll", "--cloud", url, "--claim", "bkc_x", "--data-dir", str(data_dir)
    )
    assert one_error_line(code, err).startswith("Error: cannot reach %s: " % url)
    assert identity_left(data_dir) == []

    # plain http leaves this machine never: refused before any connection or file
    other = data_dir.parent / "other"
    for cloud_url in ("http://cloud.bank.example", "http://10.0.0.1:5000", "ftp://x"):
        code, _, err = run(
            capsys, "enroll", "--cloud", cloud_url, "--claim", "x", "--data-dir", str(other)
        )
        assert cloud_url in one_error_line(code, err)
    assert not other.exists()
    code, _, err = run(capsys, "enroll", "--claim", "x", "--data-dir", str(other))
    assert "no cloud URL" in one_error_line(code, err)


def test_a_world_readable_or_foreign_identity_is_refused(
    served: Served,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, _ = run_enroll(capsys, served, create_claim(served.cloud), data_dir, "--uid", UID)
    assert code == 0
    folder = data_dir / "identity"
    key = folder / "device.key"

    key.chmod(0o644)
    code, out, err = run(capsys, "status", "--data-dir", str(data_dir))
    assert "device.key is readable by group or others (mode 0644)" in one_error_line(code, err)
    assert out == ""
    with pytest.raises(InsecureFile, match="refuses to run"):
        files.load_identity(data_dir)
    key.chmod(0o600)
    files.load_identity(data_dir)

    (folder / "envelope.json").chmod(0o640)
    with pytest.raises(InsecureFile, match=re.escape("envelope.json is readable")):
        files.load_identity(data_dir)
    (folder / "envelope.json").chmod(0o600)

    folder.chmod(0o755)
    with pytest.raises(InsecureFile, match="chmod 700"):
        files.load_identity(data_dir)
    folder.chmod(0o700)

    (folder / "device.crt").chmod(0o666)  # a public file, but others could swap it
    with pytest.raises(InsecureFile, match=re.escape("device.crt is writable")):
        files.load_identity(data_dir)
    (folder / "device.crt").chmod(0o644)
    files.load_identity(data_dir)  # readable by others is fine for a certificate

    # a key in another user's hands: the gateway's user differs from the files' owner
    owner = key.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(InsecureFile, match="is owned by uid %d" % owner):
        files.load_identity(data_dir)
    monkeypatch.undo()

    # a symbolic link in place of the key (to a private copy) is refused too
    copy = data_dir / "key-copy.pem"
    copy.write_bytes(key.read_bytes())
    copy.chmod(0o600)
    key.unlink()
    key.symlink_to(copy)
    with pytest.raises(InsecureFile, match=re.escape("device.key cannot be opened safely")):
        files.load_identity(data_dir)

    with pytest.raises(NotEnrolled, match="not enrolled"):
        files.load_identity(data_dir / "elsewhere")


def test_enrolling_again_needs_force_and_keeps_the_old_identity(
    served: Served,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cloud = served.cloud
    assert run_enroll(capsys, served, create_claim(cloud), data_dir, "--uid", UID)[0] == 0
    first = files.load_identity(data_dir)
    old_files = {p.name: p.read_bytes() for p in first.folder.iterdir()}

    # without --force: refused before the cloud is asked, so the claim stays unused
    token = create_claim(cloud)
    code, _, err = run_enroll(capsys, served, token, data_dir, "--uid", UID)
    assert "already enrolled as %s" % UID in one_error_line(code, err)

    # with --force, a new claim for a uid the cloud knows: the cloud refuses, nothing moves
    code, _, err = run_enroll(capsys, served, token, data_dir, "--uid", UID, "--force")
    assert "(HTTP 409): device uid %s is already enrolled" % UID in one_error_line(code, err)
    assert identity_left(data_dir) == ["identity"]
    assert {p.name: p.read_bytes() for p in first.folder.iterdir()} == old_files

    # a re-claim for this device record (pasted on stdin), with --force: new identity,
    # the old one kept aside
    answer = cloud.client.post("/api/identity/devices/%d/claims" % first.device_id, json={})
    monkeypatch.setattr(sys, "stdin", io.StringIO(body(answer)["token"] + "\n"))
    code, out, err = run_enroll(capsys, served, "-", data_dir, "--uid", UID, "--force")
    assert (code, err) == (0, "")
    assert "re-provisioned" in out and "previous identity kept in " in out
    aside = [data_dir / name for name in identity_left(data_dir) if name != "identity"]
    assert len(aside) == 1 and aside[0].name.startswith("identity.replaced-")
    assert {p.name: p.read_bytes() for p in aside[0].iterdir()} == old_files
    assert mode(aside[0]) == 0o700
    second = files.load_identity(data_dir)
    assert second.device_id == first.device_id and second.uid == UID
    assert second.key.public_key() != first.key.public_key()
    assert second.envelope_version > first.envelope_version


def test_answers_that_do_not_fit_the_request_are_refused(served: Served) -> None:
    key, answer = enroll(served.cloud, create_claim(served.cloud), "gw-answer")
    enrollment.check_answer(answer, key, "gw-answer", served.url)  # as it came: accepted
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(BadAnswer, match=r"not for this gateway's key.*ask for a re-claim"):
        enrollment.check_answer(answer, other, "gw-answer", served.url)
    with pytest.raises(BadAnswer, match="is for 'gw-answer', not 'gw-else'"):
        enrollment.check_answer(answer, key, "gw-else", served.url)
    chain = x509.load_pem_x509_certificates(answer["ca_chain"].encode())
    root_only = chain[-1].public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(BadAnswer, match="not signed by its CA chain's issuing CA"):
        enrollment.check_answer({**answer, "ca_chain": root_only}, key, "gw-answer", served.url)
    with pytest.raises(BadAnswer, match="lacks envelope_key"):
        enrollment.check_answer(
            {k: v for k, v in answer.items() if k != "envelope_key"}, key, "gw-answer", served.url
        )


def test_the_default_uid_is_a_keyed_hash_of_the_machine_id(tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    expected = hmac.new(
        bytes.fromhex("3d1219c7c4c5404aaa1f6d2a48adfda4"), b"bankiot gateway uid v1", "sha256"
    ).hexdigest()[:12]
    uid = enrollment.machine_uid((tmp_path / "missing", machine_id))
    assert uid == "rpi-" + expected
    assert "3d1219c7c4c5" not in uid and hashlib.sha256(b"").hexdigest()[:12] not in uid
    cloud_check_uid(uid)
    machine_id.write_text("not a machine id\n")
    with pytest.raises(EnrollError, match="give the device uid with --uid"):
        enrollment.machine_uid((machine_id,))


@pytest.mark.parametrize(
    "uid", ["gw-1", "A.b_c-9", "x" * 64, "x" * 65, "-gw", "gw/1", "gw+", "gw 1", "cloud", "Cloud"]
)
def test_uids_are_checked_as_the_cloud_checks_them(uid: str) -> None:
    try:
        cloud_check_uid(uid)
        cloud_accepts = True
    except InvalidCSR:
        cloud_accepts = False
    try:
        enrollment.check_uid(uid)
        accepted = True
    except EnrollError:
        accepted = False
    assert accepted == cloud_accepts


def test_files_are_private_from_the_start_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        target = tmp_path / "data"
        with files.StagedIdentity(target) as staged:
            staged.write(files.KEY_FILE, b"secret")
            written = staged.folder / files.KEY_FILE
            assert mode(written) == 0o600 and mode(staged.folder) == 0o700
        assert not staged.folder.exists()  # not committed: discarded
        assert mode(target) == 0o700
        files.write_private(target / "x.json", b"{}")
        files.write_private(target / "x.json", b"[]")  # replaced atomically, still private
        assert mode(target / "x.json") == 0o600 and (target / "x.json").read_bytes() == b"[]"
        assert sorted(p.name for p in target.iterdir()) == ["x.json"]
    finally:
        os.umask(previous)


def test_the_gateway_commands_load_no_cloud_packages(tmp_path: Path) -> None:
    """A Raspberry Pi has the gateway extra only: no Flask, no SQLAlchemy, no cloud code."""
    code = (
        "import sys\n"
        "from provisioning.cli import main\n"
        "assert main(['gateway', 'status', '--data-dir', sys.argv[1]]) == 1\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'apiflask', 'sqlalchemy', 'cloud'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "BANKIOT_GATEWAY_CONFIG": ""},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
    assert "is not enrolled" in done.stderr


@contextmanager
def served_tls(app: Any, cert: Path, key: Path) -> Iterator[str]:
    """``app`` over HTTPS on a free local port with the server certificate ``cert``."""
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "https://127.0.0.1:%d" % server.server_port
    finally:
        server.shutdown()
        thread.join()


def test_the_clouds_tls_certificate_is_verified(
    served: Served, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = TestCA(tmp_path / "web-ca")
    web = ca.issue("cloud.test", server=True)
    token = create_claim(served.cloud)
    with served_tls(served.cloud.app, web.cert, web.key) as url:
        args = ("enroll", "--cloud", url, "--claim", token, "--data-dir", str(data_dir))
        code, _, err = run(capsys, *args, "--uid", UID)  # the system does not trust this CA
        assert "CERTIFICATE_VERIFY_FAILED" in one_error_line(code, err)
        assert identity_left(data_dir) == []
        code, out, err = run(capsys, *args, "--uid", UID, "--cafile", str(ca.cert_path))
        assert out.startswith("enrolled %s: " % UID)
    assert (code, err) == (0, "")  # the refused attempt never reached the cloud: claim unused
    assert files.load_identity(data_dir).cloud_url == url
