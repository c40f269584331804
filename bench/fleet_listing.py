"""Fleet listing latency with 10,000 devices on SQLite, against the bare SQL query.

A report, not a pass/fail. In one run, on a fresh SQLite database in a temporary folder with
``--devices`` devices (default 10,000) in 50 branches, a third of them gateways with a health
record, it times (p50 and p95 over ``--runs`` requests each):

- the reference: the inventory's own SELECT (``cloud.fleet.inventory.inventory_query``: the
  device, branch and latest-health join) executed on a plain SQLAlchemy connection, rows
  fetched, nothing else: the least any listing can cost;
- ``GET /api/fleet/devices?limit=100`` (the first page) through the Flask test client, signed
  in with a real API token of a cloud operations account (token lookup, scoping, schema
  validation and JSON included);
- the same with filters (``kind=gateway&status=active&q=7``) by a branch manager of 5
  branches, from the middle of the id range.

Prints the latencies and each page's ratio to its own reference query.

Run: ``.venv/bin/python bench/fleet_listing.py [--devices 10000] [--runs 200] [--json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from cloud.config import load_config
from cloud.db import database
from cloud.fleet.inventory import Filters, inventory_query
from cloud.fleet.models import Branch, Device
from cloud.ingest.models import GatewayHealth
from cloud.migrations import upgrade
from cloud.people.operators import create_operator
from cloud.people.tokens import create_token

BRANCHES = 50
KINDS = ("gateway", "kiosk", "beacon")
STATUSES = ("active", "registered", "retired")
PASSWORD = "bench password, not a secret"


def percentiles(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """p50 and p95 of ``run``'s wall time in milliseconds (after a warm-up)."""
    for _ in range(5):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(times, n=20)
    return statistics.median(times), cuts[18]


def seed(count: int) -> None:
    """``count`` devices in ``BRANCHES`` branches; every third a gateway with health."""
    now = dt.datetime.now(dt.UTC)
    with database().sessions() as db:
        db.execute(
            insert(Branch),
            [{"code": "b%02d" % b, "name": "Branch %d" % b} for b in range(BRANCHES)],
        )
        db.execute(
            insert(Device),
            [
                {
                    "uid": "dev-%05d" % i,
                    "kind": KINDS[i % 3],
                    "branch_id": 1 + i % BRANCHES,
                    "name": "Device %d" % i,
                    "model": "m%d" % (i % 4),
                    "status": STATUSES[(i // 3) % 3],
                    "firmware_version": "1.%d.0" % (i % 5),
                    "last_seen_at": now,
                }
                for i in range(count)
            ],
        )
        db.execute(
            insert(GatewayHealth),
            [
                {
                    "gateway": "dev-%05d" % i,
                    "key_version": 1,
                    "seq": i,
                    "reported_at": now,
                    "time_estimated": False,
                    "received_at": now,
                    "counters": {"depth": i % 17, "dropped_batches": 0, "battery": 90},
                    "queue_depth": i % 17,
                    "dropped_batches": 0,
                    "dropped_bytes": 0,
                }
                for i in range(0, count, 3)
            ],
        )
        db.commit()


def token_for(name: str, role: str, branches: tuple[str, ...]) -> str:
    with database().sessions() as db:
        operator = create_operator(db, "bench", name, role, branches, PASSWORD)
        db.flush()
        secret, _ = create_token(db, operator, "bench", 1)
        db.commit()
        return secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fleet listing latency on SQLite.")
    parser.add_argument("--devices", type=int, default=10_000, help="devices (10000)")
    parser.add_argument("--runs", type=int, default=200, help="requests per subject (200)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="bankiot-bench-fleet-"))
    try:
        from cloud.app import create_app

        url = "sqlite:///%s" % (folder / "bench.sqlite3")
        upgrade(url)
        config = load_config(
            environ={}, overrides={"data_dir": str(folder / "data"), "database_url": url}
        )
        app = create_app(config)
        print("seeding %d devices ..." % args.devices, file=sys.stderr)
        with app.app_context():
            seed(args.devices)
            ops = token_for("ops", "operations", ())
            managed = tuple("b%02d" % b for b in range(5))
            manager = token_for("maria", "branch_manager", managed)
            engine = database().engine
        middle = args.devices // 2
        first = Filters(limit=100)
        filtered = Filters(
            visible=range(1, 6), kind="gateway", status="active", q="7", after=middle, limit=100
        )
        first_url = "/api/fleet/devices?limit=100"
        filtered_url = "/api/fleet/devices?limit=100&kind=gateway&status=active&q=7&after=%d" % (
            middle
        )
        client = app.test_client()

        def bare(filters: Filters) -> Callable[[], object]:
            statement = inventory_query(filters)

            def run() -> object:
                with engine.connect() as connection:
                    return connection.execute(statement).all()

            return run

        def api(path: str, token: str) -> Callable[[], object]:
            headers = {"Authorization": "Bearer %s" % token}

            def run() -> object:
                response = client.get(path, headers=headers)
                assert response.status_code == 200, response.json
                assert response.json is not None and response.json["devices"]
                return response

            return run

        print("timing ...", file=sys.stderr)
        figures: dict[str, object] = {"devices": args.devices, "runs": args.runs}
        for label, filters, path, token in (
            ("first_page", first, first_url, ops),
            ("filtered_page", filtered, filtered_url, manager),
        ):
            ref50, ref95 = percentiles(bare(filters), args.runs)
            api50, api95 = percentiles(api(path, token), args.runs)
            figures[label] = {
                "path": path,
                "reference_p50_ms": round(ref50, 3),
                "reference_p95_ms": round(ref95, 3),
                "api_p50_ms": round(api50, 3),
                "api_p95_ms": round(api95, 3),
                "ratio_p50": round(api50 / ref50, 2),
                "ratio_p95": round(api95 / ref95, 2),
            }
        app.extensions["bankiot.db"].dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print("Fleet listing on SQLite, %d devices, %d requests each" % (args.devices, args.runs))
    print("  (reference: the same SELECT on a bare connection, rows fetched)")
    for label in ("first_page", "filtered_page"):
        row = figures[label]
        assert isinstance(row, dict)
        print("  %s  %s" % (label, row["path"]))
        print(
            "    reference  p50 %7.3f ms  p95 %7.3f ms"
            % (row["reference_p50_ms"], row["reference_p95_ms"])
        )
        print(
            "    API        p50 %7.3f ms  p95 %7.3f ms   %5.2f x / %5.2f x"
            % (row["api_p50_ms"], row["api_p95_ms"], row["ratio_p50"], row["ratio_p95"])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
