"""End-to-end ingest on PostgreSQL with one and with N worker processes: the speed-up, against
the raw insert limit of the same server.

A report, not a pass/fail. In one run, on the machine's PostgreSQL (scratch databases made
for the run and dropped after it), ``--rounds`` rounds (default 3) of:

- the reference (``raw``): the readings of a phase's batches inserted straight into a
  migrated ``readings`` table over one connection, ``--chunk`` rows per transaction (no
  MQTT, no crypto, no receipts): the most the server takes (``bench/ingest.py``'s
  ``run_raw``);
- the subject, with 1 worker and with ``--workers`` N (the order alternates per round):
  ``bankiot cloud ingest-mqtt`` processes (processes: threads would share one GIL) in one
  shared group on a private Mosquitto, with keys enrolled in the identity tables as
  enrollment leaves them. The load is ``--batches`` batches of ``--readings`` readings from
  ``--gateways`` simulated gateways (a sensor each), sealed before anything is timed and
  merged in a random order. To keep the gateways' side off the CPU while the workers run,
  the workers are paused (SIGSTOP) once subscribed and warmed up, the whole load is
  published into the broker (which queues it for them, round robin), and the clock runs
  from resuming them (SIGCONT) to the last acknowledgement received on the gateways'
  downlink topics. Every batch and reading is then checked in the database.

Each figure is the best of the rounds (another process's load only ever slows a run down);
every round's is printed too. Then latency with N workers at a steady load (``--rate``
batches per second, default half of the N-worker throughput): from a gateway's publish to
its acknowledgement opened on its downlink topic, p50 and p99 (``bench/ingest.py``'s
``measure_latency``).

Printed as well, for what bounds the speed-up: the CPU used in each timed window by the
workers, PostgreSQL's backends for the scratch database, Mosquitto, the bench and the rest
of the machine (other processes, and the hypervisor's steal time; from ``/proc``);
readings per core-second of serving CPU with 1 and N workers (what contention costs,
whatever the other load); the speed-up the cores left to ingest allow at the 1-worker cost
per reading; what the backends were doing (sampled from ``pg_stat_activity``: running SQL,
waiting on a lock, idle in a transaction); and the CPU a live load generator would take at
the N-worker rate (measured per batch).

Run: ``.venv/bin/python bench/ingest_pg.py [--workers 2] [--rounds 3] [--batches 768]
[--readings 64] [--gateways 128] [--chunk 5000] [--rate R] [--admin-url URL] [--json]``.
Needs ``mosquitto`` and a PostgreSQL server on which the admin URL may create databases
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, or
``BANKIOT_TEST_POSTGRES``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# The gateway simulator, the private broker and the scratch database are the test suite's
# (tests/), the shared pieces bench/ingest.py's: the repository root must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt
from sqlalchemy import create_engine, func, select, text

from bench.ingest import (
    NODELAY,
    interleaved,
    measure_latency,
    percentile,
    run_raw,
    sealed_batches,
)
from cloud.db import Database
from cloud.ingest.models import BatchReceipt, Reading
from cloud.migrations import upgrade
from provisioning.cli import main as bankiot
from tests.cloud.ingest_support import enroll_key, url_text
from tests.support.databases import scratch_database
from tests.support.mosquitto import find_mosquitto, start_mosquitto

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
DOWNLINK_FILTER = "devices/+/down"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (man 5 proc)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


class Workers:
    """``count`` ``bankiot cloud ingest-mqtt`` processes in one shared group."""

    def __init__(self, count: int, data_dir: Path, url: str, broker, group: str) -> None:
        self.names = ["%s-worker-%d" % (group, n) for n in range(1, count + 1)]
        env = {**os.environ, "BANKIOT_DATABASE_URL": url}
        broker_url = "mqtt://%s:%d" % (broker.host, broker.port)
        self.logs = [data_dir / ("%s.log" % name) for name in self.names]
        self.processes = []
        for name, log in zip(self.names, self.logs, strict=True):
            argv = [
                sys.executable,
                "-c",
                "from provisioning.cli import entry_point; entry_point()",
                *("cloud", "ingest-mqtt", "--data-dir", str(data_dir), "--broker", broker_url),
                *("--group", group, "--client-id", name),
            ]
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
                )

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def check_running(self) -> None:
        """Exit with the worker's last output line if one has ended."""
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
                raise SystemExit("a worker ended (%d): %s" % (process.returncode, lines[-1]))

    def signal(self, sig: int) -> None:
        for process in self.processes:
            process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case they are paused); SIGKILL after 15 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_subscribed(broker, workers: Workers, seconds: float = 60) -> None:
    """Until the broker's log (``log_type subscribe``) shows every worker subscribed."""
    deadline = time.monotonic() + seconds
    while True:
        log = broker.log_path.read_text(errors="replace") if broker.log_path.exists() else ""
        subscribed = {
            name
            for name in workers.names
            if any(name in line and "$share/" in line for line in log.splitlines())
        }
        if len(subscribed) == len(workers.names):
            return
        workers.check_running()
        if time.monotonic() > deadline:
            raise SystemExit("workers not subscribed after %.0f s" % seconds)
        await asyncio.sleep(0.1)


class AckCounter:
    """Counts acknowledgements arriving on every gateway's downlink topic; the time the
    ``target``-th arrived (the bench wakes then, and only twice a second otherwise, so that
    it takes little CPU from the timed window)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.count = 0
        self.target = 0
        self.reached = asyncio.Event()
        self.at = 0.0
        self.task = asyncio.ensure_future(self._read(client))

    async def _read(self, client: aiomqtt.Client) -> None:
        async for _message in client.messages:
            self.count += 1
            if self.count == self.target:
                self.at = time.perf_counter()
                self.reached.set()

    async def wait_for(self, count: int, workers: Workers, seconds: float) -> float:
        """Until ``count`` acknowledgements in all have arrived; when the last one did."""
        self.target, self.at = count, time.perf_counter()
        self.reached.clear()
        deadline = time.monotonic() + seconds
        while self.count < count:
            if time.monotonic() > deadline:
                raise SystemExit(
                    "only %d of %d acknowledgements in %.0f s" % (self.count, count, seconds)
                )
            if self.task.done():
                self.task.result()
            workers.check_running()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reached.wait(), 0.5)
        return self.at


@dataclass
class Phase:
    """What one timed phase measured."""

    workers: int
    batches: int
    readings: int
    seconds: float
    cpu: dict[str, float]  # cores used on average, by part, during the timed window
    publish_cpu_per_batch: float  # CPU seconds the publishing took per batch (workers paused)
    backends: dict[str, float]  # PostgreSQL backends on average: running, lock wait, in a tx

    @property
    def rate(self) -> float:
        return self.readings / self.seconds


def publishes(fleet) -> list[tuple[str, bytes]]:
    """(topic, envelope) of every batch, the gateways merged at random (``interleaved``)."""
    return [(gw.aad, envelope) for gw, _seq, envelope in interleaved(fleet)]


def backend_pids(admin_url: str, database: str) -> list[int]:
    """PostgreSQL's server processes serving ``database`` now (the workers' connections)."""
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT pid FROM pg_stat_activity WHERE datname = :name")
            return [int(pid) for (pid,) in conn.execute(query, {"name": database})]
    finally:
        engine.dispose()


class BackendSampler:
    """Samples what PostgreSQL's backends for ``database`` are doing every ``every`` seconds,
    in a thread (one cheap query on the admin database, so it is not sampled itself):
    ``averages()`` is the mean number of them running SQL, waiting on a lock, and idle in
    an open transaction (the worker's Python between statements)."""

    QUERY = text(
        "SELECT state, wait_event_type FROM pg_stat_activity"
        " WHERE datname = :name AND backend_type = 'client backend'"
    )

    def __init__(self, admin_url: str, database: str, every: float = 0.05) -> None:
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.database = database
        self.every = every
        self.samples = 0
        self.totals = {"running_sql": 0, "lock_wait": 0, "in_transaction": 0}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            while not self.done.wait(self.every):
                for state, wait in conn.execute(self.QUERY, {"name": self.database}):
                    if state == "active":
                        self.totals["lock_wait" if wait == "Lock" else "running_sql"] += 1
                    elif state == "idle in transaction":
                        self.totals["in_transaction"] += 1
                self.samples += 1

    def __enter__(self) -> BackendSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.engine.dispose()

    def averages(self) -> dict[str, float]:
        return {k: v / self.samples if self.samples else 0.0 for k, v in self.totals.items()}


async def run_phase(broker, workers: Workers, admin_url: str, database: str, warm, fleet):
    """Warm the workers up, pause them, queue ``fleet`` in the broker, resume them and time
    until every batch is acknowledged; CPU by part over that window."""
    await wait_subscribed(broker, workers)
    warm_items, items = publishes(warm), publishes(fleet)
    async with aiomqtt.Client(broker.host, broker.port, socket_options=NODELAY) as client:
        await client.subscribe(DOWNLINK_FILTER, qos=1)
        acks = AckCounter(client)
        for topic, envelope in warm_items:  # connections, key caches, code paths warmed
            await client.publish(topic, envelope, qos=1)
        await acks.wait_for(len(warm_items), workers, 60)
        backends = backend_pids(admin_url, database)
        workers.signal(signal.SIGSTOP)
        cpu = time.process_time()
        for topic, envelope in items:  # QoS 1: each is in the broker once published
            await client.publish(topic, envelope, qos=1)
        publish_cpu = (time.process_time() - cpu) / len(items)
        parts = {
            "workers": workers.pids,
            "postgresql": backends,
            "mosquitto": [broker.process.pid] if broker.process else [],
            "bench": [os.getpid()],
        }
        before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in parts.items()}
        machine_before = machine_cpu()
        with BackendSampler(admin_url, database) as sampler:
            start = time.perf_counter()
            workers.signal(signal.SIGCONT)
            seconds = await acks.wait_for(len(warm_items) + len(items), workers, 600) - start
            machine_after = machine_cpu()
            after = {name: sum(cpu_seconds(p) for p in pids) for name, pids in parts.items()}
        acks.task.cancel()
    cores = {name: (after[name] - before[name]) / seconds for name in parts}
    busy = machine_after[0] - machine_before[0]
    total = machine_after[1] - machine_before[1]
    cores["machine"] = CORES * busy / total if total else 0.0
    cores["other"] = max(0.0, cores["machine"] - sum(cores[name] for name in parts))
    readings = sum(len(gw.accepted) for gw, _items in fleet)
    return Phase(
        len(workers.names), len(items), readings, seconds, cores, publish_cpu, sampler.averages()
    )


def stored(database: Database, fleet) -> tuple[int, int]:
    """(batches, readings) stored for ``fleet``'s gateways."""
    gateways = [gw.gateway_id for gw, _items in fleet]
    with database.sessions() as session:
        receipts = session.scalar(
            select(func.count()).select_from(BatchReceipt).where(BatchReceipt.gateway.in_(gateways))
        )
        readings = session.scalar(
            select(func.count()).select_from(Reading).where(Reading.gateway.in_(gateways))
        )
    return int(receipts or 0), int(readings or 0)


def efficiency(phase: Phase) -> float:
    """Readings per core-second of serving CPU (workers, PostgreSQL, Mosquitto): what more
    workers cost in contention shows here whatever the machine's other load."""
    serving = sum(phase.cpu[name] for name in ("workers", "postgresql", "mosquitto"))
    return phase.rate / serving if serving else 0.0


def bound(one: Phase, many: Phase) -> tuple[dict[str, float], str]:
    """What the cores allowed in the N-worker phase, and one line on what bounded it.

    ``cores - other - bench`` cores were left to serving (workers, PostgreSQL, Mosquitto):
    at the 1-worker phase's readings per serving core-second that is the most the cores
    allow with no cost of running N (a rate, not a speed-up: the 1-worker rate itself
    drops when another process takes CPU, its cost per reading hardly); at the N-worker
    phase's own cost, what is left below that is waiting (locks, round trips)."""
    left = CORES - many.cpu["other"] - many.cpu["bench"]
    ceiling = {
        "cores_left": left,
        "at_1_worker_cost": left * efficiency(one),
        "at_n_worker_cost": left * efficiency(many),
    }
    worker_cores = many.cpu["workers"] / many.workers
    if many.cpu["machine"] >= 0.85 * CORES:  # the rest is scheduling slack: saturated
        why = (
            "CPU: the machine's %d cores were %.0f%% busy (workers %.2f, PostgreSQL %.2f, "
            "Mosquitto %.2f, bench %.2f, other processes %.2f cores); each worker got %.2f "
            "of a core"
            % (
                CORES,
                100 * many.cpu["machine"] / CORES,
                many.cpu["workers"],
                many.cpu["postgresql"],
                many.cpu["mosquitto"],
                many.cpu["bench"],
                many.cpu["other"],
                worker_cores,
            )
        )
    elif worker_cores < 0.8:
        why = (
            "waiting, not CPU: each worker was busy %.0f%% of a core with %.0f%% of the "
            "machine idle (database locks or round trips)"
            % (100 * worker_cores, 100 - 100 * many.cpu["machine"] / CORES)
        )
    else:
        why = "the workers' own CPU: each used %.2f of a core" % worker_cores
    dearer = efficiency(one) / efficiency(many) if efficiency(many) else 1.0
    if dearer >= 1.1:
        why += "; a reading took %.0f%% more serving CPU than with 1 worker" % (100 * dearer - 100)
    waiting = many.backends["lock_wait"]
    if waiting >= 0.05:
        why += (
            "; and the workers waited for each other: %.2f of their PostgreSQL backends on "
            "average waited on a lock (rows of the same gateway in both workers' transactions)"
            % waiting
        )
    return ceiling, why


def enroll_fleet(
    database: Database, data_dir: Path, gateways: int, batches: int, readings: int, tag: str
):
    """``sealed_batches`` of gateways enrolled in the identity tables (their real keys)."""
    return sealed_batches(
        gateways,
        batches,
        readings,
        tag,
        ring=lambda uid: enroll_key(database, data_dir, uid),
        unix_ms=int(time.time() * 1000),  # this month's partition, as live traffic
    )


def run_workers(
    count: int, broker, context: dict, url: str, database: Database, tag: str, latency: bool
) -> tuple[Phase, list[float], float]:
    """One timed phase with ``count`` fresh workers (and the latency run if ``latency``):
    the phase, the latencies (sorted seconds) and the rate they were measured at."""
    args, data_dir = context["args"], context["data_dir"]
    warm = enroll_fleet(database, data_dir, 4, 8 * count, args.readings, "w" + tag)
    fleet = enroll_fleet(database, data_dir, args.gateways, args.batches, args.readings, tag)
    database.dispose()  # the bench's own connections stay out of the CPU count
    workers = Workers(count, data_dir, url, broker, "bench-%s" % tag)
    latencies, rate = [], 0.0
    try:
        phase = asyncio.run(
            run_phase(broker, workers, context["admin_url"], context["name"], warm, fleet)
        )
        if latency:
            rate = args.rate or max(1.0, phase.rate / args.readings / 2)
            count = min(args.batches, int(rate * 10) + 20)
            steady = enroll_fleet(database, data_dir, args.gateways, count, args.readings, "l")
            database.dispose()
            latencies = asyncio.run(measure_latency(broker.host, broker.port, steady, rate))
    finally:
        workers.stop()
    if stored(database, fleet) != (phase.batches, phase.readings):
        raise SystemExit(
            "%d worker(s): %d batches and %d readings stored, not %d and %d"
            % (phase.workers, *stored(database, fleet), phase.batches, phase.readings)
        )
    return phase, latencies, rate


def measure(args: argparse.Namespace, folder: Path, admin_url: str) -> dict:
    """The whole run: ``--rounds`` rounds of raw, 1 worker and N workers (the order of the
    two alternating, so that a neighbour's load falls on both alike); the report."""
    data_dir = folder / "data"
    with contextlib.redirect_stdout(io.StringIO()) as said:
        if bankiot(["cloud", "ca", "init", "--data-dir", str(data_dir)]) != 0:
            raise SystemExit("ca init failed: %s" % said.getvalue().strip())
    # Subscriptions are logged, so the bench knows when every worker is ready; the whole
    # load is queued for paused workers, so the per-client queue limit (1000) is raised.
    extra = "set_tcp_nodelay true\nlog_type subscribe\nmax_queued_messages %d" % (
        2 * args.batches + 1000
    )
    broker = start_mosquitto(folder / "mosquitto", persistence=False, extra=extra)
    raws: list[float] = []
    phases: dict[int, list[Phase]] = {1: [], args.workers: []}
    latencies, rate = [], 0.0
    try:
        with scratch_database(admin_url) as raw_url, scratch_database(admin_url) as url:
            upgrade(url_text(raw_url))
            upgrade(url_text(url))
            database = Database(url_text(url))
            context = {"args": args, "data_dir": data_dir, "admin_url": admin_url}
            context["name"] = url.database or ""
            for r in range(args.rounds):
                raw_database = Database(url_text(raw_url))
                fleet = sealed_batches(args.gateways, args.batches, args.readings, "raw%d" % r)
                raw_rate, _rows = run_raw(raw_database, fleet, args.chunk)
                with raw_database.engine.begin() as conn:  # the next round starts empty
                    conn.execute(text("TRUNCATE readings, batch_receipts CASCADE"))
                raw_database.dispose()
                raws.append(raw_rate)
                order = (1, args.workers) if r % 2 == 0 else (args.workers, 1)
                for n in order:
                    last = r == args.rounds - 1 and n == args.workers
                    tag = "r%dn%d" % (r, n)
                    phase, measured, at = run_workers(
                        n, broker, context, url_text(url), database, tag, last
                    )
                    phases[n].append(phase)
                    if last:
                        latencies, rate = measured, at
            database.dispose()
    finally:
        broker.stop()
    return report(args, raws, phases, rate, latencies)


def report(args, raws: list[float], phases: dict[int, list[Phase]], rate: float, latencies):
    """The figures of a run, rounded, for printing or ``--json``: each the best of the
    rounds (a neighbour's load only ever slows a run down), every round's as well."""
    raw_rate = max(raws)
    one = max(phases[1], key=lambda p: p.rate)
    many = max(phases[args.workers], key=lambda p: p.rate)
    ceiling, why = bound(one, many)
    per_worker = many.rate / many.workers
    return {
        "readings_per_phase": one.readings,
        "readings_per_batch": args.readings,
        "gateways": args.gateways,
        "cores": CORES,
        "rounds": args.rounds,
        "raw_readings_per_s": round(raw_rate),
        "one_worker_readings_per_s": round(one.rate),
        "one_worker_ratio_to_raw": round(one.rate / raw_rate, 3),
        "workers": many.workers,
        "n_workers_readings_per_s": round(many.rate),
        "n_workers_per_worker_readings_per_s": round(per_worker),
        "n_workers_per_worker_ratio_to_raw": round(per_worker / raw_rate, 3),
        "speed_up": round(many.rate / one.rate, 2),
        "cpu_ceiling_readings_per_s": {
            k: round(v, 2 if k == "cores_left" else None) for k, v in ceiling.items()
        },
        "bound": why,
        "one_worker_backends": {k: round(v, 2) for k, v in one.backends.items()},
        "n_workers_backends": {k: round(v, 2) for k, v in many.backends.items()},
        "one_worker_cpu_cores": {k: round(v, 2) for k, v in one.cpu.items()},
        "n_workers_cpu_cores": {k: round(v, 2) for k, v in many.cpu.items()},
        "readings_per_serving_core_second": {
            "1": round(efficiency(one)),
            str(many.workers): round(efficiency(many)),
        },
        "every_round_readings_per_s": {
            "raw": [round(r) for r in raws],
            "1": [round(p.rate) for p in phases[1]],
            str(args.workers): [round(p.rate) for p in phases[args.workers]],
        },
        "every_round_other_cores": {
            "1": [round(p.cpu["other"], 2) for p in phases[1]],
            str(args.workers): [round(p.cpu["other"], 2) for p in phases[args.workers]],
        },
        "publish_cpu_ms_per_batch": round(many.publish_cpu_per_batch * 1000, 3),
        "live_publisher_cores_at_n_worker_rate": round(
            many.publish_cpu_per_batch * many.batches / many.seconds, 2
        ),
        "latency_workers": many.workers,
        "latency_rate_batches_per_s": round(rate, 1),
        "latency_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def print_report(r: dict) -> None:
    """The report for people."""
    n = r["workers"]
    print(
        "ingest on PostgreSQL, %d readings per phase in batches of %d from %d gateways, "
        "%d cores, best of %d rounds"
        % (
            r["readings_per_phase"],
            r["readings_per_batch"],
            r["gateways"],
            r["cores"],
            r["rounds"],
        )
    )
    print(
        "  raw bulk insert        %9d readings/s   (reference, one connection)"
        % r["raw_readings_per_s"]
    )
    print(
        "  1 worker               %9d readings/s   ratio %.2f per worker"
        % (r["one_worker_readings_per_s"], r["one_worker_ratio_to_raw"])
    )
    print(
        "  %d workers              %9d readings/s   %d per worker, ratio %.2f per worker"
        % (
            n,
            r["n_workers_readings_per_s"],
            r["n_workers_per_worker_readings_per_s"],
            r["n_workers_per_worker_ratio_to_raw"],
        )
    )
    print("  speed-up 1 -> %d workers: x%.2f (goal: near-linear, x%d)" % (n, r["speed_up"], n))
    ceiling = r["cpu_ceiling_readings_per_s"]
    print(
        "  the %.2f cores left to ingest with %d workers allow %d readings/s at the 1-worker "
        "CPU cost per reading, %d at the %d-worker cost (measured: %d)"
        % (
            ceiling["cores_left"],
            n,
            ceiling["at_1_worker_cost"],
            ceiling["at_n_worker_cost"],
            n,
            r["n_workers_readings_per_s"],
        )
    )
    every, other = r["every_round_readings_per_s"], r["every_round_other_cores"]
    print(
        "  every round (readings/s): raw %s; 1 worker %s; %d workers %s"
        % (every["raw"], every["1"], n, every[str(n)])
    )
    print(
        "  other processes' load in each round (cores): 1 worker %s; %d workers %s"
        % (other["1"], n, other[str(n)])
    )
    cost = r["readings_per_serving_core_second"]
    print(
        "  readings per core-second of workers + PostgreSQL + Mosquitto: 1 worker %d, "
        "%d workers %d (x%.2f)" % (cost["1"], n, cost[str(n)], cost[str(n)] / cost["1"])
    )
    for label, key in (
        ("1 worker", "one_worker_cpu_cores"),
        ("%d workers" % n, "n_workers_cpu_cores"),
    ):
        c = r[key]
        print(
            "  CPU, %s (cores): workers %.2f, PostgreSQL %.2f, Mosquitto %.2f, bench %.2f, "
            "other %.2f; machine %.2f of %d"
            % (
                label,
                c["workers"],
                c["postgresql"],
                c["mosquitto"],
                c["bench"],
                c["other"],
                c["machine"],
                r["cores"],
            )
        )
    for label, key in (
        ("1 worker", "one_worker_backends"),
        ("%d workers" % n, "n_workers_backends"),
    ):
        b = r[key]
        print(
            "  PostgreSQL backends on average, %s: %.2f running SQL, %.2f waiting on a lock, "
            "%.2f idle in a transaction"
            % (label, b["running_sql"], b["lock_wait"], b["in_transaction"])
        )
    print("  bound: %s" % r["bound"])
    print(
        "  load generator: %.3f ms CPU per pre-sealed batch published; live at the %d-worker "
        "rate it would take %.2f cores (kept out of the timed window)"
        % (r["publish_cpu_ms_per_batch"], n, r["live_publisher_cores_at_n_worker_rate"])
    )
    print(
        "  latency, %d workers at %.0f batches/s: p50 %.1f ms, p99 %.1f ms "
        "(publish to acknowledgement)"
        % (n, r["latency_rate_batches_per_s"], r["latency_p50_ms"], r["latency_p99_ms"])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="compared with 1 worker")
    parser.add_argument("--batches", type=int, default=768, help="per phase")
    parser.add_argument("--readings", type=int, default=64, help="per batch")
    parser.add_argument("--gateways", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="best of; 1 and N alternate")
    parser.add_argument("--rate", type=float, default=0.0, help="batches/s for latency")
    parser.add_argument("--admin-url", default=os.environ.get("BANKIOT_TEST_POSTGRES", ADMIN_URL))
    parser.add_argument("--dir", type=Path, help="where temporary files go")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.workers < 2 or args.rounds < 1 or args.batches < args.gateways:
        message = "--workers must be at least 2, --rounds at least 1, --batches at least --gateways"
        print("Error: %s" % message, file=sys.stderr)
        return 1
    if find_mosquitto() is None:
        print("Error: mosquitto not found: apt-get install mosquitto", file=sys.stderr)
        return 1
    engine = create_engine(args.admin_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        print(
            "Error: PostgreSQL at %s: %s" % (args.admin_url, str(exc).splitlines()[0]),
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    folder = Path(tempfile.mkdtemp(prefix="bankiot-bench-pg-", dir=args.dir))
    try:
        result = measure(args, folder, args.admin_url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
