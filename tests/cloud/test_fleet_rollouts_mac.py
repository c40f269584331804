"""Rollouts send boards their per-device release MAC, on SQLite and PostgreSQL.

A signed release is uploaded through the API and rolled out; the ``update`` command is
sealed by the fleet's delivery as the supervisor does it. The MAC it carries is checked
against one computed here with ``cryptography``'s HKDF and HMAC from the board's secret
(docs/firmware.md gives the construction), and, end to end, by the firmware's own update
code in the real MicroPython VM (``tests/firmware/update_scenario.py``), which downloads
the release as the cloud serves it and installs it only if the MAC checks out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from bankiot_core import batch, downlink
from bankiot_core.keyring import KeyRing
from bankiot_core.replay import ReplayWindow
from cloud.db import database
from cloud.fleet import commands, delivery, rollouts
from cloud.fleet.control_models import Command
from cloud.fleet.models import Device
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import Ingest
from hw.micropython_runner import MicroPythonRunner
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.ingest_support import SimGateway
from tests.cloud.people_actions import add_operator, bearer, make_token, sign_in
from tests.cloud.release_actions import FILES, Releases, signed_bundle, upload_body
from tests.cloud.test_fleet_releases import put_files
from tests.firmware.board import SECRET, provisioned
from tests.firmware.test_updates import boot, records

BOARD = "gw-board-1"  # the uid and secret the firmware tests provision (tests.firmware.board)
OTHER = "gw-board-2"
PICO = "gw-pico"
PI = "gw-pi"
SECRETS = {BOARD: SECRET, OTHER: bytes(range(64, 96)), PICO: bytes(range(96, 128))}
PI_SECRET = bytes(range(128, 160))


def expected_mac(secret: bytes, uid: str, key_version: int, manifest: bytes) -> str:
    """The MAC as docs/firmware.md defines it, from ``cryptography`` (RFC 5869, RFC 2104)."""
    info = b"bankiot release mac v1 " + uid.encode() + b" " + str(key_version).encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=info).derive(secret)
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(manifest)
    return mac.finalize().hex()


class Fleet:
    """The cloud app with the gateways' keys, an ingest, and an operations operator."""

    def __init__(self, rel: Releases) -> None:
        self.rel = rel
        self.client = rel.app.test_client()
        self.branch = add_branches(rel.app, "north")["north"]
        add_operator(rel.app, "ops", "operations")
        self.ops = bearer(make_token(sign_in(rel.app, "ops")))
        self.keys = MemoryKeySource()
        self.gateways: dict[str, SimGateway] = {}
        with rel.app.app_context():
            self.ingest = Ingest(database(), self.keys)

    def device(self, uid: str, model: str, secret: bytes) -> None:
        """A gateway in service running 0.0.0-dev (the firmware tree's version), which has
        sent one batch (delivery seals only for a gateway heard from)."""
        add_devices(
            self.rel.app,
            {
                "uid": uid,
                "branch_id": self.branch,
                "model": model,
                "status": "active",
                "firmware_version": "0.0.0-dev",
            },
        )
        gateway = SimGateway(uid)
        gateway.ring = KeyRing(uid, 1, secret)
        self.keys.add(KeyRing(uid, 1, secret))
        self.gateways[uid] = gateway
        self.uplink(uid)

    def uplink(self, uid: str) -> None:
        """One batch from ``uid`` through the real ingest."""
        gateway = self.gateways[uid]
        gateway.hear_many(1)
        gateway.flush()
        for _seq, envelope in gateway.outbox():
            result = self.ingest.handle(envelope, gateway.aad, "mqtt", uid)
            assert result.status == "accepted", result

    def release(self, name: str, board: str, version: str = "1.1.0") -> int:
        """A signed release uploaded and completed through the API; its id."""
        bundle = signed_bundle(self.rel, name, version=version, board=board)
        body = upload_body(bundle)
        release = self.client.post("/api/fleet/releases", json=body, headers=self.ops).json
        assert release is not None
        assert put_files(self.rel, self.ops, release["id"], bundle)["status"] == "ready"
        return release["id"]

    def roll_out(self, release_id: int) -> None:
        """A one-wave rollout of ``release_id`` to the branch, advanced once."""
        body = {"release_id": release_id, "branch": self.branch, "waves": [100]}
        response = self.client.post("/api/fleet/rollouts", json=body, headers=self.ops)
        assert response.status_code == 201, response.json
        with self.ingest.database.sessions() as db:
            rollouts.advance_all(db, dt.datetime.now(dt.UTC))
            db.commit()

    def seal(self, minutes: float = 0) -> dict[str, bytes]:
        """One delivery pass (as the supervisor's), ``minutes`` from now: uid -> envelope."""
        now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
        with self.ingest.database.sessions() as db:
            out = delivery.prepare(db, self.keys, now)
            db.commit()
        by_topic = {downlink.downlink_topic(uid): uid for uid in self.gateways}
        return {by_topic[item.topic]: item.payload for item in out}

    def served(self, release_id: int) -> dict[str, bytes]:
        """The release as the cloud serves it to devices, as the board's fake server's files."""
        base = "/releases/v1/%d/manifest.json" % release_id
        manifest = self.client.get(base).data
        out = {"/srv" + base: manifest}
        for entry in json.loads(manifest)["files"]:
            path = "/releases/v1/blobs/%s" % entry["sha256"]
            response = self.client.get(path)
            assert response.status_code == 200
            out["/srv" + path] = response.data
        return out

    def stored_args(self) -> dict[str, Any]:
        """Device uid -> the arguments stored with its update command."""
        with self.ingest.database.sessions() as db:
            rows = db.execute(
                select(Device.uid, Command.args).join(Device, Device.id == Command.device_id)
            ).all()
            return {uid: args for uid, args in rows}


def opened(envelope: bytes, uid: str, ring: KeyRing) -> tuple[int, Any]:
    """The gateway's side: (key version, the command) of a sealed downlink."""
    topic = downlink.downlink_topic(uid)
    message = downlink.open_downlink(envelope, ring, ReplayWindow(size=64), topic)
    return message.key_version, message.message


def manifest_bytes(fleet: Fleet, release_id: int) -> bytes:
    return fleet.client.get("/releases/v1/%d/manifest.json" % release_id).data


@pytest.fixture
def fleet(rel: Releases) -> Fleet:
    return Fleet(rel)


def test_update_commands_carry_the_mac_of_the_key_version_sealing_them(fleet: Fleet) -> None:
    fleet.device(BOARD, "esp32", SECRETS[BOARD])
    fleet.device(OTHER, "esp32-s3", SECRETS[OTHER])
    release_id = fleet.release("b110", "esp32")
    manifest = manifest_bytes(fleet, release_id)
    fleet.roll_out(release_id)
    sealed = fleet.seal()
    assert sorted(sealed) == [BOARD, OTHER]
    macs = {}
    for uid, envelope in sealed.items():
        version, command = opened(envelope, uid, KeyRing(uid, 1, SECRETS[uid]))
        assert version == 1 and command.name == "update"
        assert command.args == {
            "release": release_id,
            "version": "1.1.0",
            "board": "esp32",
            "mac": expected_mac(SECRETS[uid], uid, 1, manifest),
        }
        macs[uid] = command.args["mac"]
    assert macs[BOARD] != macs[OTHER]  # bound to the device
    # Nothing about the MAC is stored: what the API shows of the command has none.
    assert all("mac" not in args for args in fleet.stored_args().values())

    # The board's key is rotated before it answers: the command, sent again after the
    # back-off, carries the MAC under the version it now seals with.
    new_secret = hashlib.sha256(b"rotated").digest()
    gateway = fleet.gateways[BOARD]
    gateway.ring.rotate(2, new_secret)
    fleet.keys.add(KeyRing(BOARD, 2, new_secret, previous=(1, SECRETS[BOARD])))
    fleet.uplink(BOARD)
    again = fleet.seal(minutes=1)
    version, command = opened(
        again[BOARD], BOARD, KeyRing(BOARD, 2, new_secret, previous=(1, SECRETS[BOARD]))
    )
    assert version == 2
    assert command.args["mac"] == expected_mac(new_secret, BOARD, 2, manifest)
    assert command.args["mac"] != macs[BOARD]


def test_a_pico_gets_a_mac_and_a_raspberry_pi_none(fleet: Fleet) -> None:
    fleet.device(PICO, "picow", SECRETS[PICO])
    fleet.device(PI, "rpi", PI_SECRET)
    pico_release = fleet.release("p110", "picow")
    pi_release = fleet.release("r110", "rpi")
    fleet.roll_out(pico_release)
    fleet.roll_out(pi_release)
    sealed = fleet.seal()
    _, pico = opened(sealed[PICO], PICO, KeyRing(PICO, 1, SECRETS[PICO]))
    _, pi = opened(sealed[PI], PI, KeyRing(PI, 1, PI_SECRET))
    manifest = manifest_bytes(fleet, pico_release)
    assert pico.args["mac"] == expected_mac(SECRETS[PICO], PICO, 1, manifest)
    assert pi.args == {"release": pi_release, "version": "1.1.0", "board": "rpi"}


def test_an_update_whose_release_does_not_exist_fails_with_one_line(fleet: Fleet) -> None:
    fleet.device(BOARD, "esp32", SECRETS[BOARD])
    with fleet.ingest.database.sessions() as db:
        device = db.scalars(select(Device).where(Device.uid == BOARD)).one()
        args = {"release": 999, "version": "1.1.0", "board": "esp32"}
        commands.issue(db, [device], "update", args, actor="test", now=dt.datetime.now(dt.UTC))
        db.commit()
    assert fleet.seal() == {}  # nothing sealed, nothing half-sent
    with fleet.ingest.database.sessions() as db:
        command = db.scalars(select(Command)).one()
        assert (command.status, command.detail) == ("failed", "release 999 does not exist")


@pytest.mark.micropython
def test_the_board_installs_a_rollout_by_its_mac_and_refuses_another_boards(
    fleet: Fleet, micropython: MicroPythonRunner
) -> None:
    fleet.device(BOARD, "esp32", SECRETS[BOARD])
    fleet.device(OTHER, "esp32", SECRETS[OTHER])
    release_id = fleet.release("b110", "esp32")
    fleet.roll_out(release_id)
    sealed = fleet.seal()
    topic = downlink.downlink_topic(BOARD)
    _, mine = opened(sealed[BOARD], BOARD, KeyRing(BOARD, 1, SECRET))
    _, theirs = opened(sealed[OTHER], OTHER, KeyRing(OTHER, 1, SECRETS[OTHER]))
    files = provisioned()
    enrollment = json.loads(files["/identity/enrollment.json"])
    enrollment["endpoints"]["releases"] = "http://releases.test:80"
    files["/identity/enrollment.json"] = json.dumps(enrollment).encode()
    files.update(fleet.served(release_id))

    def outcome(result: dict) -> list[tuple[str, str]]:
        return [
            (batch.STATUS_NAMES[r.status], r.detail)
            for r in records(result)
            if isinstance(r, batch.CommandResult) and r.id == mine.id
        ]

    # The other board's MAC, sealed for this board: authentic, but not this board's.
    forged = downlink.encode_command(mine.id, "update", theirs.args)
    wrong = downlink.seal_downlink(KeyRing(BOARD, 1, SECRET), 0, forged, topic)
    refused, flash = boot(micropython, files, downlinks=[[topic, wrong.hex()]], check="mac")
    assert outcome(refused)[-1] == ("failed", "the MAC does not match the manifest")
    assert refused["pointer"] is None and [p for p in flash if p.startswith("/releases/")] == []

    # What the cloud sealed for this board: installed, checked by the MAC alone.
    done, flash = boot(micropython, files, downlinks=[[topic, sealed[BOARD].hex()]], check="mac")
    assert outcome(done) == [("accepted", "installing 1.1.0")] and done["pointer"] == "1.1.0"
    assert flash["/releases/1.1.0/lib/app.py"] == FILES["lib/app.py"]
    assert flash["/releases/1.1.0/manifest.mac"] == mine.args["mac"].encode()
