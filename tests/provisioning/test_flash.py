"""``bankiot flash`` against the virtual board (real MicroPython, its REPL on TCP, reached
through pyserial exactly as a USB board) and the real cloud app on a real HTTP server.

What the board holds is read from its flash on the host (its state folder) after it
stopped, not through the code under test; the certificate is checked with
``cryptography`` against the key found on the board, the envelope key against what the
cloud keeps. These runs use ``--no-wait``: the board coming online is
``test_flash_online.py``'s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.engine import URL

from cloud.db import database
from cloud.fleet.models import Device
from provisioning.firmware_bundle import build_bundle
from provisioning.release_signing import new_release_key, raw_public_key
from tests.cloud.fleet_actions import served_app
from tests.cloud.identity_actions import create_claim, enroll_new, running_cloud
from tests.provisioning.flash_support import (
    BROKER,
    UID,
    WIFI_KEY,
    WIFI_SSID,
    Served,
    board,
    flash_files,
    manifest_hashes,
    one_error_line,
    run_cli,
    sha256s,
)
from tests.support.environment import free_port

pytestmark = pytest.mark.micropython

WRONG_TOKEN = "bkc_" + "A" * 43  # well formed, never issued


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A bundle built once by ``bankiot firmware build``'s function, and its public key."""
    folder = tmp_path_factory.mktemp("release")
    key = folder / "release.pem"
    public = new_release_key(key)
    build_bundle(folder / "bundle", "esp32", "1.4.0", key)
    return folder / "bundle", public


@pytest.fixture
def served(migrated_sqlite_url: URL, tmp_path: Path) -> Iterator[Served]:
    with (
        running_cloud(migrated_sqlite_url, tmp_path / "cloud", broker_url=BROKER) as cloud,
        served_app(cloud.app) as url,
    ):
        yield Served(cloud, url)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "wifi.txt"
    path.write_text(WIFI_KEY + "\n")
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder and TMPDIR of the test's own, to look for local copies of keys."""
    work = tmp_path / "work"
    (work / "tmp").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(work / "tmp"))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    return work


def flash_args(
    served: Served, port: str, token: str, release: tuple[Path, Path], password: Path, *more: str
) -> list[str]:
    bundle, public = release
    return [
        "flash",
        "--port",
        port,
        "--claim",
        token,
        "--cloud",
        served.url,
        "--bundle",
        str(bundle),
        "--release-key",
        str(public),
        "--wifi-ssid",
        WIFI_SSID,
        "--wifi-password-file",
        str(password),
        "--no-wait",
        *more,
    ]


@dataclass
class Flasher:
    """``bankiot flash --no-wait`` against the served cloud, with the release and the Wi-Fi
    password file of the test, its output captured."""

    served: Served
    release: tuple[Path, Path]
    password: Path
    capsys: pytest.CaptureFixture[str]

    def __call__(self, port: str, token: str | None = None, *more: str) -> tuple[int, str, str]:
        """Flash the board on ``port`` with claim ``token`` (a new one when None) and the
        ``more`` options; the exit code, stdout and stderr."""
        token = create_claim(self.served.cloud) if token is None else token
        args = flash_args(self.served, port, token, self.release, self.password, *more)
        return run_cli(self.capsys, *args)

    def device_id(self) -> int:
        """The id of the device the cloud enrolled for the board (``UID``)."""
        with self.served.cloud.app.app_context(), database().sessions() as db:
            return db.scalars(select(Device.id).where(Device.uid == UID)).one()


@pytest.fixture
def flash(
    served: Served,
    release: tuple[Path, Path],
    password_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> Flasher:
    """``bankiot flash`` as the tests below run it."""
    return Flasher(served, release, password_file, capsys)


def test_blank_board_gets_the_bundle_and_an_identity_the_cloud_issued(
    flash: Flasher, workdir: Path, tmp_path: Path
) -> None:
    served, release = flash.served, flash.release
    state = tmp_path / "board"
    token = create_claim(served.cloud, "north")
    with board(state) as vb:
        code, out, err = flash(vb.url, token)
    assert code == 0, err
    assert "%s restarted" % UID in out
    assert "copying 68 files (0 unchanged)" in err
    files = flash_files(state)
    on_board = sha256s(files)
    for path, digest in manifest_hashes(release[0]).items():
        assert on_board[path] == digest, path
    # The identity: a key whose certificate the fleet CA issued for this uid.
    key = serialization.load_pem_private_key(files["/identity/device.key"], None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate(files["/identity/device.crt"])
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.public_numbers() == key.public_key().public_numbers()
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [a.value for a in cn] == [UID]
    chain = x509.load_pem_x509_certificates(files["/identity/ca.pem"])
    cert.verify_directly_issued_by(chain[0])
    enrollment = json.loads(files["/identity/enrollment.json"])
    assert enrollment["uid"] == UID
    assert enrollment["endpoints"] == {
        "mqtt": BROKER,
        "coap": "coap://127.0.0.1:5683",  # the cloud's default CoAP address
        "releases": served.url,
    }
    assert json.loads(files["/config/wifi.json"]) == {"ssid": WIFI_SSID, "key": WIFI_KEY}
    public = serialization.load_pem_public_key(release[1].read_bytes())
    assert json.loads(files["/identity/release_keys.json"]) == {
        "keys": [raw_public_key(public).hex()]  # type: ignore[arg-type]
    }
    assert not any(p.endswith(".tmp") for p in files)
    with served.cloud.app.app_context(), database().sessions() as db:
        device = db.scalars(select(Device).where(Device.uid == UID)).one()
        assert (device.status, device.branch_id) == ("active", served.cloud.branches["north"])
        assert enrollment["device_id"] == device.id
    # No local copy: the private key is in no file on this machine's working or temp folder.
    key_der = files["/identity/device.key"].split(b"-----")[2].strip()
    for folder in (workdir, Path(os.environ["TMPDIR"])):
        for path in folder.rglob("*"):
            assert not path.is_file() or key_der not in path.read_bytes(), path


def test_second_run_skips_what_the_board_has_and_clears_the_old_identitys_data(
    flash: Flasher, tmp_path: Path
) -> None:
    state = tmp_path / "board"
    with board(state) as vb:
        first = flash(vb.url)
        assert first[0] == 0, first[2]
    old_key = flash_files(state)["/identity/device.key"]
    (state / "flash" / "data").mkdir(exist_ok=True)  # the firmware made it at its start
    (state / "flash" / "data" / "sequence").write_text("old identity's counter")
    (state / "flash" / "app" / "stale.py").write_text("print('shadow')\n")
    device_id = flash.device_id()
    response = flash.served.cloud.client.post(
        "/api/identity/devices/%d/claims" % device_id, json={}
    )
    reclaim = response.json["token"]  # type: ignore[index]
    with board(state) as vb:
        code, _out, err = flash(vb.url, reclaim)
    assert code == 0, err
    assert "copying 0 files (68 unchanged)" in err
    assert "(re-provisioned)" in err
    files = flash_files(state)
    assert files["/identity/device.key"] != old_key
    assert "/app/stale.py" not in files
    # The old identity's data went; what is there now the firmware wrote since its restart.
    assert files.get("/data/sequence") != b"old identity's counter"


def test_factory_source_tree_is_replaced_by_the_bundle(flash: Flasher, tmp_path: Path) -> None:
    """A board holding the firmware as source (.py) ends with exactly the bundle's files:
    a leftover app/x.py would shadow the bundle's app/x.mpy."""
    state = tmp_path / "board"
    with board(state, blank=False) as vb:
        code, _out, err = flash(vb.url)
    assert code == 0, err
    software = {
        path
        for path in flash_files(state)
        if path.startswith(("/app/", "/lib/", "/boards/")) or path in ("/boot.py", "/main.py")
    }
    assert software == set(manifest_hashes(flash.release[0]))


def test_refused_claim_is_one_line_and_the_board_is_untouched(
    flash: Flasher, tmp_path: Path
) -> None:
    state = tmp_path / "board"
    with board(state, blank=False) as vb:
        vb_before = None
        code, out, err = flash(vb.url, WRONG_TOKEN)
        vb_before = vb
    assert vb_before is not None
    line = one_error_line(code, err)
    assert "refused the enrollment (HTTP 401)" in line and "the board was not changed" in line
    assert WRONG_TOKEN not in err + out
    from hw.virtual_board import firmware_files

    factory = {path: host.read_bytes() for path, host in firmware_files().items()}
    assert flash_files(state) == factory


def test_board_that_does_not_answer_is_one_line(flash: Flasher) -> None:
    served = flash.served
    token = create_claim(served.cloud)
    port = "socket://127.0.0.1:%d" % free_port()
    code, _out, err = flash(port, token)
    line = one_error_line(code, err)
    assert line.startswith("Error: cannot open %s:" % port)
    # The claim was not spent: it still enrolls a device.
    enroll_new_with = served.cloud.client.get("/api/identity/claims").json
    assert [c["status"] for c in enroll_new_with] == ["pending"]  # type: ignore[union-attr]


def test_board_of_the_wrong_kind_is_refused_before_the_claim(
    flash: Flasher, tmp_path: Path
) -> None:
    token = create_claim(flash.served.cloud)
    with board(tmp_path / "board") as vb:
        code, _out, err = flash(vb.url, token, "--board", "picow")
    line = one_error_line(code, err)
    assert "bundle" in line and "is for a esp32, not a picow" in line


def test_replacing_board_takes_over_the_old_ones_configuration(
    flash: Flasher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANKIOT_TOKEN", "any: the test app knows its caller")
    cloud = flash.served.cloud
    _key, old = enroll_new(cloud, "gw-old-1")
    old_id = old["device"]["id"]
    settings = {"batch_max_delay_ms": 5000, "health_interval_ms": 30000}
    response = cloud.client.put(
        "/api/fleet/devices/%d/config" % old_id, json={"settings": settings}
    )
    assert response.status_code == 200, response.json
    with board(tmp_path / "board") as vb:
        code, _out, err = flash(vb.url, None, "--replaces", str(old_id))
    assert code == 0, err
    assert "%s replaces gw-old-1" % UID in err
    new_id = flash.device_id()
    config = cloud.client.get("/api/fleet/devices/%d/config" % new_id).json
    assert config is not None
    for name, value in settings.items():
        assert config["settings"][name] == value
    old_now = cloud.client.get("/api/devices/%d" % old_id).json
    assert old_now is not None and old_now["status"] == "revoked"


def test_decommission_revokes_and_wipes_only_that_devices_board(
    flash: Flasher,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANKIOT_TOKEN", "any: the test app knows its caller")
    monkeypatch.setenv("BANKIOT_URL", flash.served.url)
    cloud = flash.served.cloud
    state = tmp_path / "board"
    with board(state) as vb:
        code, _out, err = flash(vb.url)
        assert code == 0, err
        device_id = flash.device_id()
        _key, other = enroll_new(cloud, "gw-other")
        # Another device's id with this board on the port: refused, nothing changed.
        code, _out, err = run_cli(
            capsys, "fleet", "decommission", str(other["device"]["id"]), "--port", vb.url
        )
        line = one_error_line(code, err)
        assert "is %s, not gw-other: nothing was changed" % UID in line
        assert cloud.client.get("/api/devices/%d" % other["device"]["id"]).json["status"] == (  # type: ignore[index]
            "active"
        )
        code, out, err = run_cli(capsys, "fleet", "decommission", str(device_id), "--port", vb.url)
    assert code == 0, err
    assert "%s decommissioned" % UID in out and "is wiped" in out
    files = flash_files(state)
    assert not any(p.startswith(("/identity/", "/data/")) for p in files)
    assert "/config/wifi.json" not in files
    assert "/app/main.mpy" in files  # the firmware stays: the board says "not provisioned"
    device = cloud.client.get("/api/devices/%d" % device_id).json
    assert device is not None and device["status"] == "decommissioned"
