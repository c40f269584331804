"""Software updates on a board, under real MicroPython: command, download, checks, trial.

Releases are made as the release manager makes them (``bankiot firmware build``:
``provisioning.firmware_bundle.build_bundle``, signed with ``cryptography``'s Ed25519) and
served over the fake socket as the cloud serves them (``/releases/v1/...``); the ``update``
command is sealed as the cloud seals it. Each boot is a fresh VM carrying the flash of the
one before (``/data``, ``/releases``), so a reset is a reset. What the board reported is
read by the CPython core: the batches it published are opened with the cloud's key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from bankiot_core import batch, cose, downlink
from bankiot_core.manifest import encode_manifest
from hw.micropython_runner import FAKES_DIR, MicroPythonRunner
from provisioning import firmware_bundle, release_signing
from tests.firmware.board import SECRET, provisioned, ring, run_board

SCENARIO = Path(__file__).resolve().parent / "update_scenario.py"
# Stand-ins the other firmware tests do not need: flash partitions and NTP.
EXTRA = {"/lib/%s.py" % n: (FAKES_DIR / ("%s.py" % n)).read_bytes() for n in ("esp32", "ntptime")}
SCENARIO_FILES = {"/lib/update_scenario.py": SCENARIO.read_bytes(), **EXTRA}
UP = "devices/gw-board-1/up"
DOWN = "devices/gw-board-1/down"
RELEASE_ID = 7
COMMAND = 5


@pytest.fixture(scope="module")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release key (PEM, mode 0600) and its public half beside it."""
    path = tmp_path_factory.mktemp("keys") / "release.pem"
    release_signing.new_release_key(path)
    return path


def raw_public(key_path: Path) -> str:
    key = release_signing.load_private_key(key_path)
    return release_signing.raw_public_key(key.public_key()).hex()


@pytest.fixture(scope="module")
def bundle(release_key: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The whole firmware as release 1.1.0 for the ESP32 (``bankiot firmware build``), as
    the cloud's release downloads serve it."""
    out = tmp_path_factory.mktemp("bundle") / "esp32"
    firmware_bundle.build_bundle(out, "esp32", "1.1.0", release_key)
    return served(
        (out / "manifest.json").read_bytes(),
        (out / "manifest.sig").read_bytes(),
        {p: f.read_bytes() for p, f in release_signing.bundle_files(out).items()},
    )


def served(manifest: bytes, signature: bytes, files: dict[str, bytes]) -> dict[str, bytes]:
    """The files of the fake release server (``update_scenario.FakeReleases``)."""
    out = {
        "/srv/releases/v1/%d/manifest.json" % RELEASE_ID: manifest,
        "/srv/releases/v1/%d/manifest.sig" % RELEASE_ID: signature,
    }
    for content in files.values():
        out["/srv/releases/v1/blobs/%s" % hashlib.sha256(content).hexdigest()] = content
    return out


def small_release(
    key_path: Path, board: str = "esp32", version: str = "1.1.0", files: dict | None = None
) -> tuple[bytes, bytes, dict[str, bytes]]:
    """A signed release of a few files: manifest, signature, files."""
    files = files or {"/app/extra.py": b"X = 1\n", "/lib/more/data.bin": bytes(range(256)) * 9}
    manifest = encode_manifest(
        board,
        version,
        [(p, hashlib.sha256(c).hexdigest(), len(c)) for p, c in files.items()],
    )
    key = release_signing.load_private_key(key_path)
    return manifest, release_signing.sign_manifest(manifest, key).to_json(), files


def board_files(key_path: Path, releases: str = "http://releases.test:80") -> dict[str, bytes]:
    """A provisioned board that may update: the releases endpoint, the trusted key."""
    files = provisioned()
    enrollment = json.loads(files["/identity/enrollment.json"])
    enrollment["endpoints"]["releases"] = releases
    files["/identity/enrollment.json"] = json.dumps(enrollment).encode()
    files["/identity/release_keys.json"] = json.dumps({"keys": [raw_public(key_path)]}).encode()
    return files


def update_command(version: str = "1.1.0", board: str = "esp32", **extra: Any) -> list[str]:
    args = {"release": RELEASE_ID, "version": version, "board": board, **extra}
    message = downlink.encode_command(COMMAND, "update", args)
    return [DOWN, downlink.seal_downlink(ring(), 0, message, DOWN).hex()]


def boot(
    micropython: MicroPythonRunner, files: dict[str, bytes], function: str = "run_boot", **kw: Any
) -> tuple[dict, dict[str, bytes]]:
    """One boot of ``update_scenario.<function>`` (keyword arguments); its result and the
    flash it leaves (``/data``, ``/releases``)."""
    code = (
        "import json, update_scenario\n"
        "print(json.dumps(update_scenario.%s(%r, **json.loads(%r))))\n"
        % (function, SECRET.hex(), json.dumps(kw))
    )
    run = run_board(micropython, code, {**SCENARIO_FILES, **files}, export=("/data", "/releases"))
    return json.loads(run.stdout.splitlines()[-1]), run.files


def records(result: dict) -> list[Any]:
    """Every record of every batch the board published, opened with the cloud's key."""
    out = []
    for topic, payload in result["published"]:
        if topic == UP:
            opened = cose.open_envelope(bytes.fromhex(payload), ring().lookup, UP)
            out.extend(batch.decode_batch(opened.plaintext).records)
    return out


def results(result: dict) -> list[tuple[str, str]]:
    """The update command's results: (status name, detail)."""
    return [
        (batch.STATUS_NAMES[r.status], r.detail)
        for r in records(result)
        if isinstance(r, batch.CommandResult) and r.id == COMMAND
    ]


def running(result: dict) -> list[str]:
    """The software versions of the running records published (a boot resends what the
    one before left unacknowledged, so older ones may come first)."""
    return [r.software for r in records(result) if isinstance(r, batch.Running)]


# ---- a good release ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(micropython: MicroPythonRunner, release_key: Path, bundle: dict[str, bytes]):
    """Boot 1: the update command arrives; the board downloads, checks and switches."""
    files = {**board_files(release_key), **bundle}
    first, flash = boot(micropython, files, downlinks=[update_command()])
    return files, first, flash


def test_a_signed_release_is_installed_then_switched_to(installed) -> None:
    _, first, flash = installed
    assert results(first) == [("accepted", "installing 1.1.0")]
    assert first["reboot"] and first["pointer"] == "1.1.0"
    trial = first["trial"]
    assert (trial["version"], trial["previous"], trial["state"]) == ("1.1.0", None, "trial")
    assert "/releases/1.1.0/app/gateway.mpy" in flash
    assert "/releases/1.1.0/lib/bankiot_core/manifest.mpy" in flash
    assert "/releases/1.1.0/manifest.sig" in flash
    assert not [p for p in flash if p.startswith("/releases/.incoming")]
    assert running(first) == ["0.0.0-dev"]  # what ran until the reset


def test_the_new_version_becomes_current_once_the_cloud_acknowledges_it(
    micropython: MicroPythonRunner, installed
) -> None:
    files, _, flash = installed
    second, after = boot(micropython, {**files, **flash}, select=True, ack=True)
    assert second["selected"] == "1.1.0" and second["software"] == "1.1.0"
    assert "1.1.0" in running(second)  # the release's own app/version, from /releases
    assert ("done", "running 1.1.0") in results(second)
    assert second["trial"] is None and not second["reboot"]
    assert second["pointer"] == "1.1.0" and second["previous"] is None
    assert "/releases/trial.json" not in after


def test_a_version_never_acknowledged_is_rolled_back(
    micropython: MicroPythonRunner, installed
) -> None:
    files, _, flash = installed
    # Over ten minutes pass (130 turns of 5 s); the cloud never acknowledges the new version.
    second, flash2 = boot(
        micropython, {**files, **flash}, select=True, ack=False, steps=130, step_ms=5000
    )
    assert second["selected"] == "1.1.0" and second["software"] == "1.1.0"
    assert second["reboot"] and second["pointer"] is None  # back to the base install
    assert second["trial"]["state"] == "rolled_back"
    assert "not healthy within 600 s" in second["trial"]["reason"]
    assert "done" not in [s for s, _ in results(second)]
    third, _ = boot(micropython, {**files, **flash2}, select=True, ack=True)
    assert third["selected"] is None and third["software"] == "0.0.0-dev"
    [(status, detail)] = [r for r in results(third) if r[0] != "accepted"]
    assert status == "failed" and detail.startswith("rolled back: 1.1.0 was not healthy")
    assert third["trial"] is None


def test_a_release_that_keeps_resetting_the_board_is_rolled_back_at_boot(
    micropython: MicroPythonRunner, installed
) -> None:
    files, _, flash = installed
    for _ in range(3):  # three starts of the new version, each reset before any ack
        one, new = boot(micropython, {**files, **flash}, select=True, steps=3)
        assert one["selected"] == "1.1.0"
        flash = {**flash, **new}
    fourth, _ = boot(micropython, {**files, **flash}, select=True, ack=True)
    assert fourth["selected"] is None and fourth["software"] == "0.0.0-dev"
    [(status, detail)] = [r for r in results(fourth) if r[0] != "accepted"]
    assert status == "failed" and "1.1.0 started 3 times without reporting healthy" in detail


# ---- refused: nothing changes --------------------------------------------------------------


def tamper_signature(signature: bytes) -> bytes:
    record = json.loads(signature)
    raw = bytearray(release_signing.decode_signature(record["signature"]))
    raw[40] ^= 1
    record["signature"] = __import__("base64").b64encode(bytes(raw)).decode()
    return json.dumps(record).encode()


CASES = ["other_key", "tampered_signature", "bad_file_hash", "wrong_board", "older", "no_mac"]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_release_is_refused_and_nothing_changes(
    micropython: MicroPythonRunner, release_key: Path, tmp_path: Path, case: str
) -> None:
    manifest, signature, files = small_release(release_key)
    command = update_command()
    expect = ""
    served_files: dict[str, bytes] = {}
    if case == "other_key":
        other = tmp_path / "other.pem"
        release_signing.new_release_key(other)
        manifest, signature, files = small_release(other)
        expect = "which is not trusted"
    elif case == "tampered_signature":
        signature = tamper_signature(signature)
        expect = "the signature does not match the manifest"
    elif case == "bad_file_hash":
        served_files = served(manifest, signature, files)
        blob = "/srv/releases/v1/blobs/%s" % hashlib.sha256(files["/app/extra.py"]).hexdigest()
        served_files[blob] = b"X = 2\n"  # same size, other bytes
        expect = "/app/extra.py does not match its SHA-256"
    elif case == "wrong_board":
        manifest, signature, files = small_release(release_key, board="picow")
        expect = "release 1.1.0 is for board picow, not esp32"
    elif case == "older":
        manifest, signature, files = small_release(release_key, version="0.0.0-a")
        command = update_command("0.0.0-a")
        expect = "release 0.0.0-a is not newer than 0.0.0-dev"
    elif case == "no_mac":
        expect = "this board checks releases by MAC"
    all_files = {**board_files(release_key)}
    all_files.update(served(manifest, signature, files))
    all_files.update(served_files)
    kw: dict[str, Any] = {"downlinks": [command], "steps": 120}
    if case == "no_mac":
        kw["check"] = "mac"
    result, flash = boot(micropython, all_files, **kw)
    outcome = results(result)
    assert outcome[-1][0] in ("failed", "refused") and expect in outcome[-1][1], outcome
    assert not result["reboot"] and result["pointer"] is None and result["trial"] is None
    assert [p for p in flash if p.startswith("/releases/")] == []  # nothing left behind
    assert running(result) == ["0.0.0-dev"]


def test_a_release_checked_by_its_per_device_mac_installs(
    micropython: MicroPythonRunner, release_key: Path
) -> None:
    from cloud.fleet.release_mac import manifest_mac

    manifest, _, files = small_release(release_key)
    good = manifest_mac(SECRET, "gw-board-1", 1, manifest).hex()
    bad = manifest_mac(SECRET, "gw-board-2", 1, manifest).hex()  # another board's
    all_files = {**board_files(release_key), **served(manifest, b"unused", files)}
    refused, flash = boot(micropython, all_files, downlinks=[update_command(mac=bad)], check="mac")
    assert results(refused)[-1] == ("failed", "the MAC does not match the manifest")
    assert [p for p in flash if p.startswith("/releases/")] == []
    done, flash = boot(micropython, all_files, downlinks=[update_command(mac=good)], check="mac")
    assert results(done) == [("accepted", "installing 1.1.0")] and done["pointer"] == "1.1.0"
    assert flash["/releases/1.1.0/app/extra.py"] == files["/app/extra.py"]
    assert flash["/releases/1.1.0/manifest.mac"] == good.encode()


# ---- a power cut in the middle ---------------------------------------------------------------


def test_a_power_cut_mid_download_leaves_the_old_version_running(
    micropython: MicroPythonRunner, release_key: Path, bundle: dict[str, bytes]
) -> None:
    files = {**board_files(release_key), **bundle}
    cut, flash = boot(micropython, files, downlinks=[update_command()], stop_after_requests=20)
    assert cut["stage"] == "files" and cut["pointer"] is None
    assert [p for p in flash if p.startswith("/releases/.incoming/")]  # half a release
    again, after = boot(micropython, {**files, **flash}, select=True)
    assert again["selected"] is None and again["software"] == "0.0.0-dev"
    assert [r for r in results(again) if r[0] != "accepted"] == [
        ("failed", "the download was cut by a restart; nothing was installed")
    ]
    assert [p for p in after if p.startswith("/releases/")] == []


# ---- ESP32 firmware images ---------------------------------------------------------------


def image_release(key_path: Path, image: bytes) -> dict[str, bytes]:
    manifest, signature, files = small_release(
        key_path, version="1.2.0", files={"/image.bin": image}
    )
    return served(manifest, signature, files)


def test_an_esp32_image_is_written_checked_switched_and_kept_only_once_healthy(
    micropython: MicroPythonRunner, release_key: Path
) -> None:
    image = bytes((i * 7 + i // 251) & 0xFF for i in range(10000))  # 2 blocks and a part
    files = {**board_files(release_key), **image_release(release_key, image)}
    command = update_command("1.2.0")[1]
    result, _ = boot(micropython, files, "run_image", command_hex=command, image_software="1.2.0")
    installed = [tuple(c) for c in result["calls_installed"]]
    assert ("writeblocks", "ota_1", 0) in installed and ("writeblocks", "ota_1", 2) in installed
    assert installed[-1] == ("set_boot", "ota_1")  # after every block was written
    assert ("mark_app_valid_cancel_rollback",) not in installed  # on probation
    slot = bytes.fromhex(result["slot"])
    assert slot[: len(image)] == image and slot[len(image) : 3 * 4096] == b"\xff" * (
        3 * 4096 - len(image)
    )
    first = result["first"]
    assert first["reboot"] and first["trial"]["kind"] == "image"
    assert first["pointer"] is None  # an image is not a release folder
    second = result["second"]
    assert ("done", "running 1.2.0") in results(second)
    assert result["calls"][-1] == ["mark_app_valid_cancel_rollback"]  # once acknowledged
    assert second["trial"] is None and result["boot"] == "ota_1"


def test_an_esp32_image_that_does_not_match_never_becomes_bootable(
    micropython: MicroPythonRunner, release_key: Path
) -> None:
    image = bytes(range(256)) * 20
    served_files = image_release(release_key, image)
    blob = "/srv/releases/v1/blobs/%s" % hashlib.sha256(image).hexdigest()
    served_files[blob] = image[:-1] + b"\x00"
    files = {**board_files(release_key), **served_files}
    code = (
        "import json, esp32, update_scenario\n"
        "r = update_scenario.run_boot(%r, [[%r, %r]], extra=('esp32',))\n"
        "print(json.dumps([r['trial'], r['reboot'], [list(c) for c in esp32._calls]]))\n"
        % (SECRET.hex(), *update_command("1.2.0"))
    )
    run = run_board(micropython, code, {**SCENARIO_FILES, **files})
    trial, reboot, calls = json.loads(run.stdout.splitlines()[-1])
    assert trial is None and not reboot
    assert ["set_boot", "ota_1"] not in calls and any(c[0] == "writeblocks" for c in calls)


# ---- the clock before TLS ----------------------------------------------------------------


def test_the_clock_is_set_by_ntp_with_backoff_before_the_first_tls_connection(
    micropython: MicroPythonRunner,
) -> None:
    code = (
        "import json, update_scenario\n"
        "print(json.dumps(update_scenario.run_clock(%r, 2)))\n" % SECRET.hex()
    )
    run = run_board(micropython, code, {**SCENARIO_FILES, **provisioned()})
    result = json.loads(run.stdout.splitlines()[-1])
    turns = result["turns"]
    set_at = next(i for i, (is_set, _) in enumerate(turns) if is_set)
    connected_at = next(i for i, (_, conns) in enumerate(turns) if conns)
    assert result["failures"] == 2 and result["queries"] == 3  # two lost, retried later
    assert set_at > 0 and connected_at >= set_at  # no TLS connection before the clock
    opened = [
        batch.decode_batch(cose.open_envelope(bytes.fromhex(p), ring().lookup, UP).plaintext)
        for t, p in result["published"]
        if t == UP
    ]
    health = [r.counters for b in opened for r in b.records if isinstance(r, batch.Health)]
    assert health[0]["clock_set"] == 0 and health[-1]["clock_set"] == 1
    assert health[-1]["ntp_failures"] == 2
    unix = [b for b in opened if b.clock == batch.CLOCK_UNIX_MS]
    assert unix and all(b.base_ms > 1_600_000_000_000 for b in unix)  # Unix times once set
    assert opened[0].clock == batch.CLOCK_TICKS  # before: ticks since boot
