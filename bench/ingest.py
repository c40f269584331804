"""End-to-end ingest on SQLite, against the raw insert limit of the same database.

A report, not a pass/fail. In one run, on the same disk:

- the reference (``raw``): the readings of every batch inserted straight into a migrated
  ``readings`` table with SQLAlchemy Core, ``--chunk`` rows per transaction: no MQTT, no
  crypto, no receipts, no events: the most the database takes;
- the subject (``mqtt``): simulated gateways publish sealed batches (``--batches`` of
  ``--readings`` readings) with QoS 1 to a private Mosquitto as fast as the broker takes
  them, from a process of their own; one ``MqttWorker`` (shared subscription; the messages
  already received committed together, up to ``max_group``) opens, checks, commits
  (receipt, readings, events, downlink number) and publishes each acknowledgement; timed
  from the first publish to the last commit;
- latency at a steady load (``--rate`` batches per second, default half the measured
  throughput): from a gateway's publish to its acknowledgement opened on its downlink
  topic, p50 and p99.

Printed: readings per second of each, their ratio (goal: at least 0.25 per worker), the
latencies, and the figure per CPU core next to ThingsBoard's published 33,333 data points
per second on 36 vCPUs (926 per vCPU) for scale; the worker here uses about one core.

Run: ``.venv/bin/python bench/ingest.py [--batches 400] [--readings 64] [--gateways 4]
[--chunk 5000] [--dir D] [--json]`` (needs ``mosquitto``). ``bench/ingest_pg.py`` is the
PostgreSQL counterpart with several worker processes; it shares the pieces below.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The gateway simulator and the private broker are the test suite's (tests/): run from
# anywhere, the repository root must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt
from sqlalchemy import insert

from bankiot_core import cose, downlink
from bankiot_core.batch import decode_batch
from bankiot_core.keyring import KeyRing
from cloud.db import Database
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.models import BatchReceipt
from cloud.ingest.mqtt_worker import MqttWorker
from cloud.ingest.pipeline import Ingest
from cloud.ingest.records import batch_rows
from cloud.ingest.store import READINGS
from cloud.migrations import upgrade
from tests.cloud.ingest_support import SimGateway
from tests.support.mosquitto import start_mosquitto

THINGSBOARD_PER_VCPU = 33_333 / 36
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def sealed_batches(
    gateways: int,
    batches: int,
    readings: int,
    tag: str,
    ring: Callable[[str], KeyRing] | None = None,
    unix_ms: int = 1_790_000_000_000,
):
    """``(gateway, [(seq, envelope)])`` for each gateway, ``batches`` in all. ``ring``: the
    key ring of a gateway id (an enrolled key), instead of the simulator's test secret."""
    out = []
    per_gateway = max(1, batches // gateways)
    for g in range(gateways):
        gw = SimGateway(
            "bench-%s-%d" % (tag, g),
            unix_ms=unix_ms,
            max_readings=readings,
            max_bytes=65_000,
            max_in_flight=per_gateway + 1,
        )
        if ring is not None:
            gw.ring = ring(gw.gateway_id)
        # A sensor of its own per gateway, as in branches: per-device rows (threshold
        # states) are not one row that every gateway's batches contend for.
        gw.hear_many(per_gateway * readings, address=bytes((0xA4, 0xC1, 0x38, 0, g >> 8, g & 255)))
        gw.flush()
        out.append((gw, gw.outbox()))
    return out


def migrated(folder: Path, name: str) -> Database:
    url = "sqlite:///%s" % (folder / name)
    upgrade(url)
    return Database(url)


def run_raw(database: Database, fleet, chunk: int) -> tuple[float, int]:
    """Readings per second of plain bulk inserts of the same rows into ``database`` (migrated,
    empty), ``chunk`` rows per transaction; and the number of rows."""
    rows = []
    receipts = []
    for gw, items in fleet:
        for seq, envelope in items:
            opened = cose.open_envelope(envelope, gw.ring.lookup, gw.aad)
            batch_row = batch_rows(decode_batch(opened.plaintext), gw.gateway_id, _now())
            receipt_id = len(receipts) + 1
            receipts.append(
                {
                    "id": receipt_id,
                    "gateway": gw.gateway_id,
                    "key_version": 1,
                    "seq": seq,
                    "received_at": _now(),
                    "transport": "raw",
                    "readings": len(batch_row.readings),
                    "events": 0,
                    "envelope_bytes": len(envelope),
                }
            )
            for row in batch_row.readings:
                row["receipt_id"] = receipt_id
                rows.append(row)
    with database.engine.begin() as conn:  # receipts are not what is measured
        conn.execute(insert(BatchReceipt), receipts)
    start = time.perf_counter()
    for i in range(0, len(rows), chunk):
        with database.engine.begin() as conn:
            conn.execute(insert(READINGS), rows[i : i + chunk])
    elapsed = time.perf_counter() - start
    return len(rows) / elapsed, len(rows)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def publisher(host: str, port: int, items: list[tuple[str, bytes]], ready, go) -> None:
    """The gateways' side, in a process of its own (so it does not take the worker's CPU):
    connect, say ready, wait for go, publish every envelope with QoS 1."""

    async def publish() -> None:
        async with aiomqtt.Client(
            host, port, max_inflight_messages=200, socket_options=NODELAY
        ) as client:
            ready.set()
            await asyncio.to_thread(go.wait, 60)
            for topic, envelope in items:
                await client.publish(topic, envelope, qos=1)

    asyncio.run(publish())


async def run_mqtt(host: str, port: int, database: Database, fleet, timeout: float) -> float:
    """Readings per second through Mosquitto, one worker, commit and acknowledgement."""
    keys = MemoryKeySource()
    for gw, _items in fleet:
        gw.keys(keys)
    ingest = Ingest(database, keys)
    worker = MqttWorker(ingest, host, port, group="bench", receive_maximum=32)
    items = [(gw.aad, envelope) for gw, batches in fleet for _seq, envelope in batches]
    readings = sum(len(decode_batch(_plain(gw, e)).records) for gw, b in fleet for _s, e in b)
    stop = asyncio.Event()
    task = asyncio.ensure_future(worker.run(stop))
    await asyncio.wait_for(worker.subscribed.wait(), 10)
    context = multiprocessing.get_context("spawn")
    ready, go = context.Event(), context.Event()
    process = context.Process(target=publisher, args=(host, port, items, ready, go))
    process.start()
    if not await asyncio.to_thread(ready.wait, 60):
        raise SystemExit("the publisher process did not connect")
    start = time.perf_counter()
    go.set()
    deadline = start + timeout
    while ingest.stats.batches("accepted") < len(items):
        if time.perf_counter() > deadline:
            accepted = ingest.stats.batches("accepted")
            raise SystemExit("only %d of %d batches in %.0f s" % (accepted, len(items), timeout))
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    await asyncio.to_thread(process.join, 30)
    return readings / elapsed


def _plain(gw: SimGateway, envelope: bytes) -> bytes:
    return cose.open_envelope(envelope, gw.ring.lookup, gw.aad).plaintext


async def run_latency(host: str, port: int, database: Database, fleet, rate: float):
    """Publish-to-acknowledgement latencies (seconds) at ``rate`` batches per second."""
    keys = MemoryKeySource()
    for gw, _items in fleet:
        gw.keys(keys)
    ingest = Ingest(database, keys)
    worker = MqttWorker(ingest, host, port, group="bench-latency")
    stop = asyncio.Event()
    task = asyncio.ensure_future(worker.run(stop))
    await asyncio.wait_for(worker.subscribed.wait(), 10)
    latencies = await measure_latency(host, port, fleet, rate)
    stop.set()
    await task
    return latencies


async def measure_latency(host: str, port: int, fleet, rate: float) -> list[float]:
    """Publish ``fleet``'s batches at ``rate`` per second (the gateways interleaved) to
    whatever workers serve the broker; the latencies (seconds, sorted) from each publish to
    its acknowledgement opened on the gateway's downlink topic."""
    sent: dict[tuple[str, int], float] = {}
    latencies: list[float] = []
    rings = {gw.down_aad: gw for gw, _items in fleet}
    total = sum(len(items) for _gw, items in fleet)
    async with aiomqtt.Client(host, port, socket_options=NODELAY) as client:
        for topic in rings:
            await client.subscribe(topic, qos=1)

        async def read() -> None:
            async for message in client.messages:
                gw = rings[message.topic.value]
                assert isinstance(message.payload, bytes)
                opened = cose.open_envelope(
                    message.payload, gw.ring.lookup, gw.down_aad, cose.DOWNLINK
                )
                ack = downlink.decode_message(opened.plaintext)
                assert isinstance(ack, downlink.Ack)  # ingest sends acks only
                # Ingest acknowledges one batch per message: seq 0 travels as ``through``.
                seq = ack.through if ack.through is not None else ack.ranges[0][0]
                latencies.append(time.perf_counter() - sent[(gw.gateway_id, seq)])
                if len(latencies) >= total:
                    return

        reader = asyncio.ensure_future(read())
        interval = 1 / rate
        next_at = time.perf_counter()
        for gw, seq, envelope in interleaved(fleet):
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            sent[(gw.gateway_id, seq)] = time.perf_counter()
            await client.publish(gw.aad, envelope, qos=1)
            next_at += interval
        await asyncio.wait_for(reader, 60)
    latencies.sort()
    return latencies


def interleaved(fleet, seed: int = 1) -> list[tuple[SimGateway, int, bytes]]:
    """Every batch of ``fleet`` as ``(gateway, seq, envelope)``, the gateways merged in a
    random order (each one's batches in its own order), as independent gateways publish. A
    fixed pattern would not do: taken round robin by N workers of a shared group, it could
    send each gateway's batches always to the same worker."""
    rng = random.Random(seed)
    queues = [[(gw, seq, envelope) for seq, envelope in items] for gw, items in fleet]
    queues = [queue[::-1] for queue in queues if queue]  # pop() from the end: in order
    out = []
    while queues:
        queue = rng.choice(queues)
        out.append(queue.pop())
        if not queue:
            queues.remove(queue)
    return out


def percentile(ordered: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of sorted ``ordered`` (nearest rank below)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--readings", type=int, default=64)
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=0.0, help="batches/s for latency")
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        print("mosquitto not found: apt-get install mosquitto", file=sys.stderr)
        return 1
    folder = Path(tempfile.mkdtemp(prefix="bankiot-bench-", dir=args.dir))
    # set_tcp_nodelay: small packets at once (the production broker wants it as well).
    broker = start_mosquitto(folder / "mosquitto", persistence=False, extra="set_tcp_nodelay true")
    try:
        fleet = sealed_batches(args.gateways, args.batches, args.readings, "a")
        raw_database = migrated(folder, "raw.sqlite3")
        raw_rate, rows = run_raw(raw_database, fleet, args.chunk)
        raw_database.dispose()
        database = migrated(folder, "ingest.sqlite3")
        mqtt_rate = asyncio.run(run_mqtt(broker.host, broker.port, database, fleet, 300))
        batch_rate = mqtt_rate / args.readings
        rate = args.rate or max(1.0, batch_rate / 2)
        count = min(args.batches, int(rate * 10) + 20)
        steady = sealed_batches(args.gateways, count, args.readings, "b")
        latencies = asyncio.run(run_latency(broker.host, broker.port, database, steady, rate))
        database.dispose()
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    p50 = statistics.median(latencies)
    p99 = percentile(latencies, 0.99)
    report = {
        "readings": rows,
        "readings_per_batch": args.readings,
        "raw_readings_per_s": round(raw_rate),
        "mqtt_readings_per_s": round(mqtt_rate),
        "ratio_mqtt_over_raw": round(mqtt_rate / raw_rate, 3),
        "latency_rate_batches_per_s": round(rate, 1),
        "latency_p50_ms": round(p50 * 1000, 2),
        "latency_p99_ms": round(p99 * 1000, 2),
        "thingsboard_per_vcpu": round(THINGSBOARD_PER_VCPU),
        "ours_per_core_over_thingsboard_per_vcpu": round(mqtt_rate / THINGSBOARD_PER_VCPU, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("ingest on SQLite, %d readings in batches of %d" % (rows, args.readings))
    print("  raw bulk insert      %9.0f readings/s   (reference)" % raw_rate)
    print(
        "  MQTT+open+commit     %9.0f readings/s   ratio %.2f (goal >= 0.25 per worker)"
        % (mqtt_rate, mqtt_rate / raw_rate)
    )
    print(
        "  latency at %.0f batches/s: p50 %.1f ms, p99 %.1f ms (publish to acknowledgement)"
        % (rate, p50 * 1000, p99 * 1000)
    )
    print(
        "  per core: %.0f readings/s; ThingsBoard: %.0f data points/s per vCPU (x%.1f)"
        % (mqtt_rate, THINGSBOARD_PER_VCPU, mqtt_rate / THINGSBOARD_PER_VCPU)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
