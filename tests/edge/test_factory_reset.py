"""``factory_reset`` on the Raspberry Pi gateway: reported, acknowledged, wiped, not restarted.

The gateway is enrolled with the real cloud app (``edge.enroll``), runs the real engine over
its SQLite queue and MQTT to a private Mosquitto, where the cloud's real ingest stores what
it sends and acknowledges it; the command is issued in the cloud's database as the API
issues it and delivered by the cloud's fleet supervisor. What is expected comes from the
cloud (the command's status, a re-claim that enrolls the same device record again) and
from the file system (a hard link to the key shows the key's own bytes were overwritten
before the name went), not from the code under test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from bankiot_core import batch, cose
from bankiot_core.backoff import Backoff
from bankiot_core.gateway import Action
from bankiot_core.keyring import KeyRing
from cloud.db import Database
from cloud.fleet import commands, supervisor
from cloud.fleet.control_models import Command
from cloud.fleet.models import Device
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.mqtt_worker import MqttWorker
from cloud.ingest.pipeline import Ingest
from edge import factory_reset, runtime, updates
from edge import identity as files
from edge.enroll import enroll
from edge.uplink import GatewayOutbox, Uplinks, uplink_aad
from edge.uplink_mqtt import MqttLink
from provisioning.cli import main
from tests.cloud.fleet_actions import served_app
from tests.cloud.identity_actions import body, create_claim, running_cloud
from tests.cloud.ingest_support import url_text
from tests.edge.waiting import run, until
from tests.support.mosquitto import MosquittoBroker

SETTINGS = {"paired": [], "presence": False, "batch_max_delay_ms": 200}
SECRET = bytes(range(96, 128))  # a test secret, never a real key


def leftovers(data_dir: Path) -> list[str]:
    """The data folder's content, one level into ``releases``."""
    names = [p.name for p in data_dir.iterdir()]
    releases = data_dir / updates.RELEASES
    if releases.is_dir():
        names += ["releases/" + p.name for p in releases.iterdir()]
    return sorted(names)


def release_on_trial(data_dir: Path) -> None:
    """A release folder, ``current`` and a trial, as an update leaves them."""
    releases = data_dir / updates.RELEASES
    (releases / "1.0.0").mkdir(parents=True)
    (releases / "1.0.0" / "manifest.json").write_text("{}")
    updates.switch_current(releases, "1.0.0")
    (releases / updates.TRIAL_FILE).write_text("{}")


def one_line(code: int, err: str) -> str:
    assert code == factory_reset.UNPROVISIONED
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.mosquitto
def test_factory_reset_reports_done_waits_for_the_cloud_then_wipes(
    migrated_sqlite_url: URL,
    mosquitto: MosquittoBroker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    uid = "gw-reset-%s" % uuid.uuid4().hex[:6]
    data_dir = tmp_path / "gateway"
    with (
        running_cloud(migrated_sqlite_url, tmp_path / "cloud") as cloud,
        served_app(cloud.app) as url,
    ):
        identity = enroll(url, create_claim(cloud), data_dir, uid=uid).identity
        database = Database(url_text(migrated_sqlite_url))
        keys = MemoryKeySource([identity.keyring()])
        release_on_trial(data_dir)
        key_link = tmp_path / "key-link"  # the key's inode, seen after its name is gone
        os.link(identity.key_path, key_link)
        key_size = key_link.stat().st_size
        engine = runtime.open_engine(
            data_dir, identity.keyring(), uplink_aad(uid), "1.0.0", 1 << 20, SETTINGS, 1000
        )
        gateway = runtime.GatewayRuntime(engine, data_dir / runtime.STATE_FILE)
        link = MqttLink(uid, mosquitto.host, mosquitto.port, keepalive_s=5)
        gateway.uplinks = Uplinks(
            GatewayOutbox(engine),
            {"mqtt": link},
            gateway.on_downlink,
            "mqtt",
            backoff=Backoff(20, 400),
            busy_backoff=Backoff(20, 400),
        )
        with database.sessions() as session:
            device = session.scalars(select(Device).where(Device.uid == uid)).one()
            device_id = device.id

        def command_status(command_id: int) -> str:
            with database.sessions() as session:
                command = session.get(Command, command_id)
                assert command is not None
                return command.status

        async def test() -> int:
            stop = asyncio.Event()
            worker = MqttWorker(
                Ingest(database, keys), mosquitto.host, mosquitto.port, group=uid[-6:]
            )
            worker_task = asyncio.ensure_future(worker.run(stop))
            await worker.subscribed.wait()
            task = asyncio.ensure_future(gateway.run(asyncio.Event()))
            # subscribed and heard: the cloud acknowledged the first batch on the downlink
            await until(lambda: gateway.uplinks.counters()["downlinks"] > 0, "a downlink")  # type: ignore[union-attr]
            with database.sessions() as session:
                device = session.get(Device, device_id)
                assert device is not None
                now = dt.datetime.now(dt.UTC)
                group = commands.issue(session, [device], "factory_reset", {}, actor="ops", now=now)
                session.commit()
                command_id = commands.group_members(session, group.id)[0].id
            publisher = supervisor.MqttPublisher(mosquitto.host, mosquitto.port)
            await supervisor.run_pass(database, keys, publisher, dt.datetime.now(dt.UTC))
            await publisher.close()
            status = await asyncio.wait_for(task, 30)
            # the gateway wiped only after the cloud had its result
            assert command_status(command_id) == "done"
            assert gateway.reset.acknowledged is True
            stop.set()
            await asyncio.wait_for(worker_task, 20)
            return status

        statuses: list[int] = []

        async def outer() -> None:
            statuses.append(await test())

        with caplog.at_level(logging.WARNING, logger="edge.factory_reset"):
            run(outer)
        database.dispose()
        assert statuses == [factory_reset.UNPROVISIONED]
        assert caplog.messages[-1] == factory_reset.RE_ENROLL
        # the key's bytes were overwritten before it was unlinked
        assert key_link.read_bytes() == bytes(key_size)
        # identity, engine state, sequence store, queue and trial gone; the release stays
        assert leftovers(data_dir) == [
            ".enroll.lock",
            "releases",
            "releases/1.0.0",
            "releases/current",
        ]

        # `gateway run` refuses in one line, with the status systemd does not restart
        code = main(["gateway", "run", "--data-dir", str(data_dir)])
        assert "this gateway is not enrolled" in one_line(code, capsys.readouterr().err)

        # an operator's re-claim enrolls the same device record again
        answer = cloud.client.post("/api/identity/devices/%d/claims" % device_id, json={})
        again = enroll(url, body(answer)["token"], data_dir, uid=uid)
        assert again.reprovisioned and again.identity.device_id == device_id
        assert again.identity.serial() != identity.serial()
        # a marker from the old identity (a power cut at the very end) is stale: kept clear
        factory_reset.mark(data_dir, uid, identity.serial())
        assert factory_reset.finish_interrupted(data_dir) is False
        assert files.load_identity(data_dir).serial() == again.identity.serial()
        assert not (data_dir / factory_reset.MARKER).exists()


def fake_identity(data_dir: Path) -> Path:
    """Identity files as a wipe finds them (their content is not read)."""
    folder = files.private_folder(files.identity_folder(data_dir))
    for name in files.FILES:
        files.write_private(folder / name, b"secret bytes of %s\n" % name.encode())
    aside = files.private_folder(data_dir / (files.REPLACED_PREFIX + "20260101T000000Z"))
    files.write_private(aside / files.KEY_FILE, b"an older key\n")
    return folder


def test_without_an_acknowledgement_it_wipes_all_the_same(tmp_path: Path) -> None:
    data_dir = tmp_path / "gateway"
    folder = fake_identity(data_dir)
    release_on_trial(data_dir)
    envelope_link = tmp_path / "envelope-link"
    os.link(folder / files.ENVELOPE_FILE, envelope_link)
    ring = KeyRing("gw-r", 1, SECRET)
    engine = runtime.open_engine(data_dir, ring, uplink_aad("gw-r"), "1.0.0", 1 << 20, SETTINGS)
    gateway = runtime.GatewayRuntime(engine, data_dir / runtime.STATE_FILE)
    gateway.reset = factory_reset.FactoryReset(wait_s=0.3)  # no uplink: nobody acknowledges

    async def test() -> None:
        task = asyncio.ensure_future(gateway.run(asyncio.Event()))
        await asyncio.sleep(0)
        gateway.carry_out(Action(4, "factory_reset", {}), 0)
        marker = json.loads((data_dir / factory_reset.MARKER).read_bytes())
        assert marker == {"uid": None, "serial": None}  # (the fake identity does not load)
        # what it reported, sealed for the cloud, before anything was wiped
        (seq,) = engine.queue.seqs()
        opened = cose.open_envelope(engine.queue._storage.get(seq), ring.lookup, uplink_aad("gw-r"))
        (result,) = batch.decode_batch(opened.plaintext).records
        assert (result.id, result.status, result.detail) == (
            4,
            batch.STATUS_DONE,
            factory_reset.DETAIL,
        )
        gateway.carry_out(Action(5, "factory_reset", {}), 0)  # a second one joins the first
        assert len(gateway._work) == 1 and len(engine.queue.seqs()) == 2
        assert await asyncio.wait_for(task, 20) == factory_reset.UNPROVISIONED

    run(test)
    assert gateway.reset.acknowledged is False
    assert envelope_link.read_bytes() == bytes(len(b"secret bytes of envelope.json\n"))
    assert leftovers(data_dir) == [".enroll.lock", "releases", "releases/1.0.0", "releases/current"]


def test_a_wipe_a_power_cut_interrupted_is_finished_at_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "gateway"
    folder = fake_identity(data_dir)
    (data_dir / "sequence").write_text("128\n")
    factory_reset.mark(data_dir, "gw-r", "abc")
    factory_reset.shred(folder / files.KEY_FILE)  # the power went here
    code = main(["gateway", "run", "--data-dir", str(data_dir)])
    assert "re-enroll it with 'bankiot gateway enroll'" in one_line(code, capsys.readouterr().err)
    assert leftovers(data_dir) == [".enroll.lock"]
    assert factory_reset.wipe(data_dir) == []  # nothing left: safe to repeat
