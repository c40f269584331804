"""A flood of repeated advertisements produces only the readings the filters should pass.

Theengs Gateway's users report one sensor heard 100 times a second, each repeat published.
Here one paired BTHome thermometer advertises every 10 ms of the gateway's clock for six
seconds (600 advertisements), mostly the same frame, with a change now and then: one within
the deadband, quick changes that outrun the rate limit, a value that comes back inside the
duplicate window. The advertisements go into bleak's real ``BleakScanner`` through the
virtual adapter (``hw/bleak_radio.py``), through the runtime and the engine (its clock
driven by the test) over SQLite, over MQTT (a private Mosquitto) to the cloud's ingest.

What the database must hold is computed here from the rules as ``bankiot_core.filters``
and ``filterconfig`` document them, not from the code: a frame id (plain BTHome has no
packet id: the readings are its identity) heard again within ``dedup_window_ms`` of the
last time it was let through is dropped (the last ``dedup_depth`` ids are remembered); a
number goes out when it moved by more than its deadband from the value last sent, or when
its heartbeat has passed since it was sent; a frame that would forward something spends a
token of a bucket of ``rate_burst`` tokens filling at ``rate_per_min``, and a frame refused
for want of a token commits nothing. The durations and the rate are chosen so that no frame
falls on the edge of a window or finds exactly one token (the model checks).
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from bankiot_core.backoff import Backoff
from bankiot_core.keyring import KeyRing
from cloud.db import Database
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.mqtt_worker import MqttWorker
from cloud.ingest.pipeline import Ingest
from edge import runtime
from edge.ble_source import BleSource
from edge.uplink import GatewayOutbox, Uplinks, uplink_aad
from edge.uplink_mqtt import MqttLink
from hw.bleak_radio import VirtualBleakRadio
from tests.cloud.ingest_support import stored_readings, url_text
from tests.edge.test_runtime import register
from tests.edge.waiting import run, until
from tests.support.mosquitto import MosquittoBroker

SECRET = bytes(range(96, 128))  # a test secret, never a real key
SENSOR = "A4:C1:38:00:00:42"
# BTHome v2 (bthome.io): flags, service data 0xFCD2, device info 0x40 (v2, plain), object
# 0x02 temperature (sint16 LE, x0.01 degC); the value is appended.
ADV_HEAD = bytes.fromhex("020106" + "0716d2fc4002")
STEP_MS = 10  # 100 advertisements a second
FLOOD_MS = 8000
START_MS = 1_000_000  # the gateway's clock when the flood starts
WINDOW_MS = 995
DEPTH = 2
DEADBAND_CENTI = 20  # 0.2 degC
HEARTBEAT_MS = 1995
RATE_PER_MIN = 310
BURST = 3
SETTINGS = {
    "paired": [SENSOR],
    "presence": False,
    "dedup_window_ms": WINDOW_MS,
    "dedup_depth": DEPTH,
    "deadband": {"temperature": DEADBAND_CENTI / 100},
    "heartbeat_ms": {"temperature": HEARTBEAT_MS},
    "rate_per_min": RATE_PER_MIN,
    "rate_burst": BURST,
    "batch_max_delay_ms": 1000,
}
# What the sensor measures, in 0.01 degC, from a time (ms into the flood) on.
SCHEDULE = (
    (0, 2000),
    (1500, 2010),  # 0.1 from what was sent: within the deadband
    (1800, 2030),  # 0.3 from what was sent: goes out
    (2600, 2100),  # five changes 40 ms apart: more than the bucket holds
    (2640, 2200),
    (2680, 2300),
    (2720, 2400),
    (2760, 2500),
    (3300, 2600),
    (3400, 2700),  # and back to 26.00 within its window: a duplicate, though it changed
    (3500, 2600),
    (4700, 1900),
)


def measured(t_ms: int) -> int:
    return [centi for start, centi in SCHEDULE if start <= t_ms][-1]


@dataclass
class Rules:
    """The filters' rules (module docstring) for one device, step by step."""

    remembered: list[list[int]] = field(default_factory=list)  # [frame id, let through at]
    sent: int | None = None
    sent_at: int = 0
    tokens: Fraction = Fraction(BURST)
    filled_at: int | None = None
    tally: Counter[str] = field(default_factory=Counter)

    def remember(self, frame_id: int, t: int) -> None:
        for entry in self.remembered:
            if entry[0] == frame_id:
                entry[1] = t
                return
        self.remembered = [[frame_id, t], *self.remembered][:DEPTH]

    def take_token(self, t: int) -> bool:
        if self.filled_at is not None:
            self.tokens = min(
                Fraction(BURST), self.tokens + Fraction((t - self.filled_at) * RATE_PER_MIN, 60000)
            )
        self.filled_at = t
        assert self.tokens != 1, "a frame on the edge of the rate limit: change the scenario"
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def frame(self, t: int, centi: int) -> int | None:
        """The temperature (0.01 degC) forwarded for a frame heard at ``t``, or None."""
        frame_id = centi  # the readings are the identity of a plain BTHome frame
        for remembered_id, let_at in self.remembered:
            if remembered_id == frame_id and t - let_at < WINDOW_MS:
                self.tally["duplicate"] += 1
                return None
        due = (
            self.sent is None
            or abs(centi - self.sent) > DEADBAND_CENTI
            or t - self.sent_at >= HEARTBEAT_MS
        )
        if not due:
            self.tally["unchanged"] += 1
            self.remember(frame_id, t)
            return None
        if not self.take_token(t):
            self.tally["rate_limited"] += 1
            return None
        if self.sent is not None and abs(centi - self.sent) <= DEADBAND_CENTI:
            self.tally["heartbeat"] += 1
        self.remember(frame_id, t)
        self.sent, self.sent_at = centi, t
        return centi


def expected_readings() -> tuple[list[int], Counter[str]]:
    rules = Rules()
    rules.filled_at = START_MS  # a device's bucket starts full when it is first heard
    out = []
    for t in range(START_MS, START_MS + FLOOD_MS, STEP_MS):
        forwarded = rules.frame(t, measured(t - START_MS))
        if forwarded is not None:
            out.append(forwarded)
    return out, rules.tally


@pytest.fixture
def database(migrated_sqlite_url: URL) -> Iterator[Database]:
    db = Database(url_text(migrated_sqlite_url))
    yield db
    db.dispose()


def test_a_flood_of_repeats_yields_only_what_the_filter_rules_pass(
    database: Database, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    expected, tally = expected_readings()
    # The scenario exercises every rule (else it would prove less than it says).
    assert {"duplicate", "unchanged", "rate_limited", "heartbeat"} <= set(tally)
    assert len(expected) < FLOOD_MS // STEP_MS // 20

    uid = "gw-flood-%s" % uuid.uuid4().hex[:6]
    register(database, uid)
    ring = KeyRing(uid, 1, SECRET)
    clock = {"ms": START_MS}
    engine = runtime.open_engine(
        tmp_path, ring, uplink_aad(uid), "1.2.3", 1 << 20, settings=SETTINGS, resend_ms=1000
    )
    gateway = runtime.GatewayRuntime(
        engine, tmp_path / runtime.STATE_FILE, clock=lambda: clock["ms"]
    )
    radio = VirtualBleakRadio()
    ble = BleSource(
        "hci0", gateway.on_heard, backend=radio.backend, silence_s=None, backoff=Backoff(10, 100)
    )
    gateway.sources = [ble]
    gateway.uplinks = Uplinks(
        GatewayOutbox(engine),
        {"mqtt": MqttLink(uid, mosquitto.host, mosquitto.port, keepalive_s=5)},
        gateway.on_downlink,
        "mqtt",
        backoff=Backoff(20, 400),
    )
    ingest = Ingest(database, MemoryKeySource([ring]))

    def stored() -> list[int]:
        return sorted(
            round(float(value) * 100)  # type: ignore[arg-type]
            for device, metric, value in stored_readings(database)
            if metric == "temperature" and device == SENSOR.replace(":", "").lower()
        )

    async def test() -> None:
        stop = asyncio.Event()
        worker = MqttWorker(ingest, mosquitto.host, mosquitto.port, group=uuid.uuid4().hex[:8])
        worker_task = asyncio.ensure_future(worker.run(stop))
        await worker.subscribed.wait()
        gateway_stop = asyncio.Event()
        gateway_task = asyncio.ensure_future(gateway.run(gateway_stop))
        await until(lambda: bool(radio.scanning), "the scan to start")
        for t in range(START_MS, START_MS + FLOOD_MS, STEP_MS):
            clock["ms"] = t
            payload = ADV_HEAD + struct.pack("<h", measured(t - START_MS))
            assert radio.advertise(SENSOR, payload) == 1  # bleak's callback, at once
            if t % 100 == 0:
                await asyncio.sleep(0)  # let the uplink run now and then
        clock["ms"] = START_MS + FLOOD_MS + 5000  # the routine batch is due: the ticker sends
        await until(lambda: stored() == sorted(expected), "the filtered readings stored")
        await until(lambda: len(engine.queue) == 0, "every batch acknowledged")
        counters = engine.health_counters()
        assert counters["frames_heard"] == FLOOD_MS // STEP_MS
        assert counters["readings_out"] == len(expected)
        gateway_stop.set()
        assert await asyncio.wait_for(gateway_task, 20) == 0
        stop.set()
        await asyncio.wait_for(worker_task, 20)

    run(test)
    assert Counter(stored()) == Counter(expected)
