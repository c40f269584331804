"""``edge.runtime``: the gateway wired end to end, radio to database and back.

Advertisements go into bleak's real ``BleakScanner`` through the virtual adapter
(``hw/bleak_radio.py``), through the runtime and the real engine over SQLite, over MQTT
(a private Mosquitto) to the cloud's real ingest; then the cloud's fleet supervisor seals a
command and a configuration, the gateway carries them out and reports back in its batches,
and the cloud's database shows the command done and the configuration in sync. What is
expected comes from what the radio heard and the protocols, not from the code under test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import stat
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from bankiot_core.backoff import Backoff
from bankiot_core.keyring import KeyRing
from cloud.db import Database
from cloud.fleet import commands, configs, supervisor
from cloud.fleet.control_models import Command, DeviceConfig
from cloud.fleet.models import Branch, Device
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.mqtt_worker import MqttWorker
from cloud.ingest.pipeline import Ingest
from edge import runtime
from edge.ble_source import BleSource
from edge.uplink import GatewayOutbox, Uplinks, uplink_aad
from edge.uplink_mqtt import MqttLink
from hw.bleak_radio import VirtualBleakRadio
from tests.cloud.ingest_support import stored_readings, url_text
from tests.edge.waiting import run, until
from tests.support.mosquitto import MosquittoBroker

SECRET = bytes(range(64, 96))  # a test secret, never a real key
SENSOR = "A4:C1:38:00:00:01"
# BTHome v2 (bthome.io): flags, service data 0xFCD2, device info 0x40 (v2, plain), object
# 0x02 temperature (sint16 LE, x0.01 degC); the value is appended.
ADV_HEAD = bytes.fromhex("020106" + "0716d2fc4002")
SETTINGS = {"paired": [SENSOR], "presence": False, "batch_max_delay_ms": 200}


@pytest.fixture
def database(migrated_sqlite_url: URL) -> Iterator[Database]:
    db = Database(url_text(migrated_sqlite_url))
    yield db
    db.dispose()


def register(database: Database, uid: str) -> int:
    with database.sessions() as session:
        branch = Branch(code="B-%s" % uid[-4:], name="Branch")
        device = Device(uid=uid, kind="gateway", branch=branch, status="active")
        session.add(device)
        session.commit()
        return device.id


def command_and_config(database: Database, device_id: int) -> tuple[int, int]:
    """An operator asks for a rescan and a new configuration (as the API stages them)."""
    now = dt.datetime.now(dt.UTC)
    with database.sessions() as session:
        device = session.get(Device, device_id)
        assert device is not None
        group = commands.issue(session, [device], "rescan", {}, actor="test", now=now)
        (row,) = configs.set_desired(
            session, [device], {**SETTINGS, "rate_per_min": 30}, actor="test", now=now
        )
        session.commit()
        return commands.group_members(session, group.id)[0].id, row.revision


def cloud_view(database: Database, command_id: int, device_id: int) -> tuple[str, bool]:
    with database.sessions() as session:
        command = session.get(Command, command_id)
        row = session.get(DeviceConfig, device_id)
        assert command is not None and row is not None
        return command.status, row.reported_revision == row.revision


class Gateway:
    """A gateway as ``runtime.build`` makes one, with the virtual adapter and a plain broker."""

    def __init__(self, data_dir: Path, broker: MosquittoBroker) -> None:
        self.uid = "gw-rt-%s" % uuid.uuid4().hex[:6]
        self.radio = VirtualBleakRadio()
        engine = runtime.open_engine(
            data_dir,
            KeyRing(self.uid, 1, SECRET),
            uplink_aad(self.uid),
            "1.2.3",
            1 << 20,
            settings=SETTINGS,
            resend_ms=1000,
        )
        self.runtime = runtime.GatewayRuntime(engine, data_dir / runtime.STATE_FILE)
        self.ble = BleSource(
            "hci0",
            self.runtime.on_heard,
            backend=self.radio.backend,
            silence_s=None,
            backoff=Backoff(10, 100),
        )
        self.runtime.sources = [self.ble]
        link = MqttLink(self.uid, broker.host, broker.port, keepalive_s=5)
        self.runtime.uplinks = Uplinks(
            GatewayOutbox(engine),
            {"mqtt": link},
            self.runtime.on_downlink,
            "mqtt",
            backoff=Backoff(20, 400),
            busy_backoff=Backoff(20, 400),
        )
        self.heard: list[tuple[str, str, float]] = []

    def advertise(self, count: int) -> None:
        for _ in range(count):
            centi = 1800 + 100 * len(self.heard)  # a degree apart: over the deadband
            payload = ADV_HEAD + struct.pack("<h", centi)
            if self.radio.advertise(SENSOR, payload):
                self.heard.append((SENSOR.replace(":", "").lower(), "temperature", centi / 100))


@pytest.mark.mosquitto
def test_radio_to_database_and_commands_back(
    database: Database, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    data_dir = tmp_path / "gateway"
    gateway = Gateway(data_dir, mosquitto)
    device_id = register(database, gateway.uid)
    keys = MemoryKeySource([KeyRing(gateway.uid, 1, SECRET)])
    ingest = Ingest(database, keys)

    def stored() -> list[tuple[str, str, float]]:
        return sorted(
            (d.replace(":", "").lower(), m, round(float(v), 2))  # type: ignore[arg-type]
            for d, m, v in stored_readings(database)
        )

    async def test() -> int:
        stop = asyncio.Event()
        worker = MqttWorker(ingest, mosquitto.host, mosquitto.port, group=uuid.uuid4().hex[:8])
        worker_task = asyncio.ensure_future(worker.run(stop))
        await worker.subscribed.wait()
        gateway_stop = asyncio.Event()
        gateway_task = asyncio.ensure_future(gateway.runtime.run(gateway_stop))
        await until(lambda: bool(gateway.radio.scanning), "the scan to start")
        gateway.advertise(12)
        assert len(gateway.heard) == 12
        await until(lambda: stored() == sorted(gateway.heard), "every reading in the database")
        gateway.runtime.refresh_health()
        health = gateway.runtime.engine.health_counters()
        assert health["source0_rssi"] == -60  # what the virtual adapter reports
        assert health["source0_advertisements"] == 12 and health["uptime_s"] >= 0
        # The cloud asks; its supervisor seals and publishes; the gateway does and reports.
        command_id, _revision = command_and_config(database, device_id)
        starts_before = gateway.ble.counters()["starts"]
        publisher = supervisor.MqttPublisher(mosquitto.host, mosquitto.port)
        await supervisor.run_pass(database, keys, publisher, dt.datetime.now(dt.UTC))
        await publisher.close()
        await until(
            lambda: cloud_view(database, command_id, device_id) == ("done", True),
            "the rescan done and the configuration in sync",
        )
        assert gateway.ble.counters()["starts"] > starts_before  # it did rescan
        assert gateway.runtime.engine.options["uplink"] == "mqtt"
        gateway_stop.set()
        status = await asyncio.wait_for(gateway_task, 20)
        left.append(gateway.runtime.engine.queue.seqs())  # what stop closed stays queued
        stop.set()
        await asyncio.wait_for(worker_task, 20)
        return status

    status = 0
    left: list[list[int]] = []

    async def outer() -> None:
        nonlocal status
        status = await test()

    run(outer)
    assert status == 0
    # What the gateway must remember across a power cut is on disk, for its user only.
    state_file = data_dir / runtime.STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = runtime.load_state(state_file)
    assert state is not None and state["config_revision"] == 1
    again = runtime.open_engine(
        data_dir, KeyRing(gateway.uid, 1, SECRET), uplink_aad(gateway.uid), "1.2.3", 1 << 20
    )
    assert again.config_revision == 1 and again.settings["rate_per_min"] == 30
    assert again.queue.seqs() == left[0]  # only an acknowledgement removes a batch
    again.queue.close()


def test_reboot_asks_systemd_for_a_restart_and_unsupported_commands_are_refused(
    tmp_path: Path,
) -> None:
    from bankiot_core import batch, cose
    from bankiot_core.gateway import Action

    engine = runtime.open_engine(
        tmp_path, KeyRing("gw-x", 1, SECRET), uplink_aad("gw-x"), "1.0.0", 1 << 20, SETTINGS
    )
    gateway_runtime = runtime.GatewayRuntime(engine, tmp_path / runtime.STATE_FILE)

    async def test() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(gateway_runtime.run(stop))
        await asyncio.sleep(0)
        gateway_runtime.carry_out(Action(9, "rotate_key", {}), 0)  # no renewer here
        gateway_runtime.carry_out(Action(10, "reboot", {}), 0)
        assert await asyncio.wait_for(task, 20) == runtime.RESTART

    run(test)
    reopened = runtime.open_engine(
        tmp_path, KeyRing("gw-x", 1, SECRET), uplink_aad("gw-x"), "1.0.0", 1 << 20, SETTINGS
    )
    results = []
    for seq in reopened.queue.seqs():
        envelope = reopened.queue._storage.get(seq)
        opened = cose.open_envelope(envelope, KeyRing("gw-x", 1, SECRET).lookup, uplink_aad("gw-x"))
        for record in batch.decode_batch(opened.plaintext).records:
            if isinstance(record, batch.CommandResult):
                results.append((record.id, batch.STATUS_NAMES[record.status], record.detail))
    assert results == [
        (9, "refused", "rotate_key is not supported by this gateway yet"),
        (10, "done", "restarting the gateway"),
    ]
    reopened.queue.close()


def test_a_run_that_dies_with_an_open_batch_has_its_loss_counted(tmp_path: Path) -> None:
    """Readings wait in RAM for their batch to close; a power cut loses them. The marker
    makes the next start count that loss instead of letting it pass in silence."""
    ring = KeyRing("gw-m", 1, SECRET)
    settings = {**SETTINGS, "batch_max_delay_ms": 60_000}
    engine = runtime.open_engine(tmp_path, ring, uplink_aad("gw-m"), "1.0.0", 1 << 20, settings)
    first = runtime.GatewayRuntime(engine, tmp_path / runtime.STATE_FILE, clock=lambda: 5)
    marker = tmp_path / runtime.OPEN_MARKER
    assert not marker.exists()
    from edge.heard import Heard  # what a serial radio hands on: raw AD structures

    payload = ADV_HEAD + struct.pack("<h", 2100)
    first.on_heard(Heard("serial:x", bytes.fromhex("A4C138000001"), 0, -60, None, payload, 5))
    assert engine.pending() == 1 and marker.exists()
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    engine.queue.close()  # the process dies here: no flush, the marker stays

    again = runtime.open_engine(tmp_path, ring, uplink_aad("gw-m"), "1.0.0", 1 << 20, settings)
    second = runtime.GatewayRuntime(again, tmp_path / runtime.STATE_FILE)

    async def test() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(second.run(stop))
        await until(lambda: not marker.exists(), "the marker counted")
        assert again.health_counters()["open_batches_lost"] == 1
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0

    run(test)
    assert not marker.exists()  # an orderly stop queues what was open: nothing to count
