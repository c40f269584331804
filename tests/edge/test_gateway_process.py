"""``bankiot gateway run`` as a real process under faults: exactly once, radio to database.

The parts are the real ones, each its own process: the cloud is ``bankiot cloud up`` (web,
CoAP and MQTT ingest, the fleet supervisor, and its Mosquitto with mutual TLS); the gateway
is ``bankiot gateway run --config gateway.toml``, enrolled with ``bankiot gateway enroll``
against that cloud with a claim made in the cloud's database (as the API makes one), and
configured through the cloud: the test sets the desired configuration (``configs.
set_desired``, as the API stages it) and the supervisor inside ``up`` seals and delivers
it; the gateway reports it running. Its radio is an ESP32 in radio mode on a serial line:
the test writes framed adverts (``framing`` + ``radio``) of one paired BTHome thermometer
into the master of a pseudo-terminal whose slave ``gateway.toml`` names through a symlink,
at a steady pace, a new temperature each time.

Faults, in an order and at moments drawn from a seed (``BANKIOT_CAMPAIGN_SEED`` replays
one; a failure names it): the gateway killed with SIGKILL mid-stream and started again
(twice, and maybe more), the cloud stopped with SIGINT for a while and started again on the
same data folder and ports, and the cloud's broker killed (or terminated) and started again
under the running cloud.

What the gateway had a chance to hear. The configuration closes a batch at every reading
(``batch_max_readings`` 1), so a reading the engine accepts is sealed into the SQLite queue
before the radio callback returns. Heard means: in the gateway's queue (its sealed batches,
opened with its envelope key) or in the cloud's database. The radio writes only while a
gateway process runs and holds the line open (``/proc/PID/fd``); after each start it
writes one reading at a time until one is heard, because pyserial flushes the line's input
when it opens it, and a reading written in that instant is never read (an unheard run at
the start of a life, reported). Before a kill the radio stops, the test waits until its
last reading is heard, and kills the gateway at once: mid-send, mid-acknowledgement,
mid-health record, but with nothing of the radio's left unread, so every reading after the
first heard one must have been heard. At the end every heard reading is in the database
exactly once, nothing else from the sensor is there, and the queue is empty. Duplicate
deliveries (batches the cloud acknowledged more than once) are counted from the cloud's
database and printed.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bankiot_core import batch, cose, radio
from bankiot_core.keyring import KeyRing
from cloud.db import Database
from cloud.fleet import configs
from cloud.fleet.control_models import DeviceConfig
from cloud.fleet.models import Device
from cloud.ingest.models import BatchReceipt, DownlinkCounter, Reading
from edge import runtime
from edge.identity import load_identity
from edge.uplink import uplink_aad
from tests.edge.process_support import (
    LIMIT_S,
    Cloud,
    GatewayProcess,
    cloud_up,
    enroll,
    make_claim,
    queued_envelopes,
    tail,
    wait_until,
    write_gateway_toml,
)
from tests.edge.test_serial_source import Pty, advert_frame

UID = "gw-proc-1"
SENSOR = "A4:C1:38:00:00:07"
SENSOR_MAC = bytes.fromhex("a4c138000007")
# BTHome v2 (bthome.io): flags, service data 0xFCD2, device info 0x40 (v2, plain), object
# 0x02 temperature (sint16 LE, x0.01 degC); the value is appended.
ADV_HEAD = bytes.fromhex("020106" + "0716d2fc4002")
SETTINGS = {
    "paired": [SENSOR],
    "presence": False,
    "batch_max_readings": 1,  # sealed and queued at once (module docstring)
    "rate_per_min": 0,  # the radio sends faster than the default limit lets through
    "health_interval_ms": 5000,
}
FAULTS = ("kill_gateway", "kill_gateway", "stop_cloud", "restart_broker")
MORE_FAULTS = ("kill_gateway", "restart_broker")
PACE_S = 0.05  # a reading every 50 ms while the gateway runs


def centi(n: int) -> int:
    """The n-th temperature the sensor sends, in 0.01 degC: 0.3 apart, over the deadband
    (0.2) of the filters, so that every one is a reading the filters pass."""
    return -5000 + 30 * n


class Evidence:
    """What the gateway demonstrably heard: temperatures (0.01 degC) sealed in its queue,
    opened with its envelope key, or stored in the cloud's database."""

    def __init__(self, queue: Path, ring: KeyRing, aad: str, database: Database) -> None:
        self.queue = queue
        self.ring = ring
        self.aad = aad
        self.database = database

    def envelopes(self) -> list[bytes]:
        return queued_envelopes(self.queue)

    def queued(self) -> set[int]:
        values: set[int] = set()
        for envelope in self.envelopes():
            opened = cose.open_envelope(envelope, self.ring.lookup, self.aad)
            for record in batch.decode_batch(opened.plaintext).records:
                if isinstance(record, batch.BatchReading) and record.metric == "temperature":
                    values.add(round(record.value * 100))
        return values

    def stored(self) -> Counter[int]:
        """Temperatures of the sensor in the database, each with how often it is there."""
        with self.database.sessions() as session:
            rows = session.execute(
                select(Reading.device, Reading.value_num).where(Reading.metric == "temperature")
            ).all()
        return Counter(
            round(value * 100)
            for device, value in rows
            if device.replace(":", "").lower() == SENSOR_MAC.hex() and value is not None
        )

    def heard(self) -> set[int]:
        # The queue first: a batch leaves it only after the cloud committed it.
        queued = self.queued()
        return queued | set(self.stored())


@dataclass
class Life:
    """One gateway process, as the radio saw it: what it wrote while the process ran."""

    written: list[int] = field(default_factory=list)
    heard: set[int] = field(default_factory=set)
    synced: bool = False

    def unheard_at_start(self) -> int:
        """How many readings were written before the first one heard (module docstring);
        fails if any after it was not heard."""
        marks = [value in self.heard for value in self.written]
        assert any(marks), "a whole life heard nothing: %d written" % len(self.written)
        first = marks.index(True)
        lost = [value for value in self.written[first:] if value not in self.heard]
        assert not lost, "readings written after the first heard one, not heard: %s" % lost
        return first


class Radio(threading.Thread):
    """The ESP32 in radio mode: writes a new temperature frame every ``PACE_S`` while a
    life is open; at the start of a life, one at a time until one is heard."""

    def __init__(self, line: Pty, evidence: Evidence) -> None:
        super().__init__(name="radio", daemon=True)
        self.line = line
        self.evidence = evidence
        self.lock = threading.Lock()
        self.life: Life | None = None
        self.lives: list[Life] = []
        self.sent = 0
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def begin(self) -> None:
        with self.lock:
            self.life = Life()
            self.lives.append(self.life)

    def end(self) -> Life:
        """Stop writing (no frame is half-written: writes hold the lock)."""
        with self.lock:
            life, self.life = self.life, None
        assert life is not None
        return life

    def _write(self) -> tuple[Life, int] | None:
        with self.lock:
            life = self.life
            if life is None:
                return None
            value = centi(self.sent)
            self.sent += 1
            payload = ADV_HEAD + struct.pack("<h", value)
            self.line.write(advert_frame(SENSOR_MAC, radio.PUBLIC, -60, payload))
            life.written.append(value)
            return life, value

    def run(self) -> None:
        try:
            while not self.finished.is_set():
                wrote = self._write()
                if wrote is None:
                    self.finished.wait(0.01)
                    continue
                life, value = wrote
                if life.synced:
                    self.finished.wait(PACE_S)
                    continue
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline and not self.finished.is_set():
                    if value in self.evidence.heard():
                        life.synced = True
                        break
                    time.sleep(0.02)
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    with cloud_up(tmp_path) as running:
        yield running


def configure(database: Database) -> int:
    """The gateway's desired configuration, as the API stages it; the device's id."""
    with database.sessions() as session:
        device = session.scalars(select(Device).where(Device.uid == UID)).one()
        configs.set_desired(session, [device], SETTINGS, actor="test", now=dt.datetime.now(dt.UTC))
        session.commit()
        return device.id


def running_config(database: Database, device_id: int) -> bool:
    with database.sessions() as session:
        row = session.get(DeviceConfig, device_id)
        return row is not None and row.reported_revision == row.revision


def deliveries(database: Database, device_id: int) -> tuple[int, int]:
    """(batches stored, acknowledgements the cloud made): every ack takes one downlink
    number, as every configuration message does (cloud.ingest.store, cloud.fleet.delivery)."""
    with database.sessions() as session:
        receipts = session.scalar(
            select(func.count()).select_from(BatchReceipt).where(BatchReceipt.gateway == UID)
        )
        counter = session.get(DownlinkCounter, UID)
        row = session.get(DeviceConfig, device_id)
        assert counter is not None and row is not None
        return int(receipts or 0), counter.next_seq - row.send_count


def test_every_reading_heard_reaches_the_cloud_once_through_kills_and_outages(
    cloud: Cloud, tmp_path: Path
) -> None:
    seed = int(os.environ.get("BANKIOT_CAMPAIGN_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    schedule = [*FAULTS, rng.choice(MORE_FAULTS)]
    rng.shuffle(schedule)
    database = cloud.database()
    line = Pty(tmp_path / "ttyRADIO")
    tty = os.ttyname(line.slave)
    gateway = GatewayProcess(write_gateway_toml(tmp_path, cloud, tmp_path / "ttyRADIO"), tmp_path)
    done: list[str] = []
    held: list[int] = []
    radio_thread: Radio | None = None

    def why() -> str:
        return "seed %d, faults %s\n-- gateway:\n%s\n-- cloud:\n%s" % (
            seed,
            done,
            tail(gateway.log),
            tail(cloud.log),
        )

    try:
        token = make_claim(database)
        enroll(gateway.config, token, UID)
        identity = load_identity(tmp_path / "gateway")
        evidence = Evidence(
            tmp_path / "gateway" / runtime.QUEUE_FILE,
            identity.keyring(),
            uplink_aad(UID),
            database,
        )
        device_id = configure(database)

        def wait_heard(life: Life) -> None:
            last = life.written[-1]
            wait_until(lambda: last in evidence.heard(), "the radio's last reading heard", why)

        # Unconfigured, the gateway holds its first records in a batch that closes after
        # 30 s (the default batch_max_delay_ms), and the cloud configures a gateway only
        # once it has had a batch from it. An orderly restart (SIGTERM, as systemctl
        # restart) queues the open batch on the way out; the next start sends it at once.
        gateway.start()
        wait_until(lambda: "connected over" in gateway.log.read_text(), "the uplink", why)
        assert gateway.stop() == 0, why()
        gateway.start()
        wait_until(lambda: running_config(database, device_id), "the configuration running", why)
        wait_until(lambda: gateway.holds(tty), "the serial line open", why)
        radio_thread = Radio(line, evidence)
        radio_thread.begin()
        radio_thread.start()
        for fault in schedule:
            time.sleep(rng.uniform(0.8, 1.6))
            if fault == "kill_gateway":
                life = radio_thread.end()
                wait_heard(life)
                time.sleep(rng.uniform(0, 0.05))
                gateway.kill()
                life.heard = evidence.heard() & set(life.written)
                gateway.start()
                wait_until(lambda: gateway.holds(tty), "the serial line open again", why)
                radio_thread.begin()
            elif fault == "stop_cloud":
                cloud.stop()
                time.sleep(rng.uniform(0.5, 1.5))
                # The radio goes on, so a batch closes and waits for the cloud: when depends
                # on the machine's load, so wait for it rather than assume it is there.
                wait_until(lambda: len(evidence.envelopes()) > 0, "a batch held", why)
                held.append(len(evidence.envelopes()))  # batches waiting for the cloud
                cloud.start()
            else:
                cloud.restart_broker(kill=rng.random() < 0.5, down_s=rng.uniform(0.2, 1.0))
            done.append(fault)
        time.sleep(rng.uniform(0.8, 1.6))
        last = radio_thread.end()
        radio_thread.finished.set()
        radio_thread.join(LIMIT_S)
        assert radio_thread.error is None, radio_thread.error

        # The last gateway runs on: what it heard arrives, and its queue empties.
        wait_heard(last)
        last.heard = evidence.heard() & set(last.written)
        wait_until(lambda: not evidence.envelopes(), "the gateway's queue to empty", why)
        assert gateway.stop() == 0, why()
        assert not evidence.envelopes(), why()  # nothing left open at an orderly stop

        why_text = why()
        unheard = [life.unheard_at_start() for life in radio_thread.lives]
        heard_all = set().union(*(life.heard for life in radio_thread.lives))
        stored = evidence.stored()
        duplicates = {value: n for value, n in stored.items() if n > 1}
        lost = heard_all - set(stored)
        unknown = set(stored) - heard_all
        assert (duplicates, lost, unknown) == ({}, set(), set()), why_text
        assert done == schedule, why_text
        assert len(radio_thread.lives) == gateway.lives - 1  # the first ran before the radio
        receipts, acks = deliveries(database, device_id)
        assert acks >= receipts > 0, why_text
        print(
            "gateway under faults (seed %d, %s): %d readings written, %d heard, all stored "
            "once; unheard at the start of each life: %s; %s batches held while the cloud was "
            "down; %d batches, %d duplicate deliveries"
            % (
                seed,
                ", ".join(done),
                radio_thread.sent,
                len(heard_all),
                unheard,
                held,
                receipts,
                acks - receipts,
            )
        )
    finally:
        if radio_thread is not None:
            radio_thread.finished.set()
        if gateway.alive():
            gateway.kill()
        line.unplug()
        database.dispose()
