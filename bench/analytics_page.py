"""The analytics dashboard's live figures at a bank's scale, on SQLite: counted by the
database against the old count in Python.

A report, not a pass/fail. In one run, on a fresh SQLite database in a temporary folder:
``--rows`` life-event episodes (default 200,000) spread over the last 13 months among
2,000 customers, and as many offer decisions and offer results (kiosk and inbox channels):
the tables the page's life-events and offers regions read. Then it times (p50 and p95 over
``--runs`` calls each):

- the life events per month and kind (``store.events_over_time``, what the page and
  ``GET /api/analytics/life-events/over-time`` show): counted by the database (GROUP BY
  month and kind), against the reference, a copy of the old code kept here
  (``python_events_over_time``: every episode of the span loaded and counted in Python);
- the whole live payload, ``GET /dashboard/analytics/live`` as cloud operations through the
  Flask test client (every region rendered, the offers funnels included), as it is and
  with the reference put in place of ``store.events_over_time``;

and the peak Python memory of one call of each (``tracemalloc``). It checks that both give
the same figures. The inbox's notifications are not planted: the page does not read them
(its inbox funnel counts ``offer_results``).

Run: ``.venv/bin/python bench/analytics_page.py [--rows 200000] [--runs 20] [--json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from cloud.analytics import store
from cloud.analytics.models import LifeEventEpisode
from cloud.config import load_config
from cloud.customers.models import Customer
from cloud.dashboards.analytics_data import first_month
from cloud.db import database
from cloud.migrations import upgrade
from cloud.offers.models import Campaign, OfferDecision, OfferResult
from cloud.people.operators import create_operator

CUSTOMERS = 2000
KINDS = ("job_change", "moving_house", "new_child", "retirement", "income_drop")
CHANNELS = ("kiosk", "app", "wearable")
OUTCOMES = ("shown", "shown", "shown", "accepted", "declined")
PASSWORD = "bench password, not a secret"
CHUNK = 20_000


def python_events_over_time(session: Session, since: dt.date) -> list[dict[str, Any]]:
    """The reference: ``store.events_over_time`` as it was, every episode of the span
    loaded and counted in Python (kept here unchanged, apart from this docstring)."""
    start = dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    rows = session.execute(
        select(
            LifeEventEpisode.first_detected_at,
            LifeEventEpisode.kind,
            LifeEventEpisode.customer_id,
            LifeEventEpisode.ended_at,
        ).where(LifeEventEpisode.first_detected_at >= start)
    )
    buckets: dict[tuple[str, str], list[Any]] = {}
    for first, kind, customer, ended in rows:
        key = (first.strftime("%Y-%m"), kind)
        bucket = buckets.setdefault(key, [0, set(), 0])
        bucket[0] += 1
        bucket[1].add(customer)
        bucket[2] += ended is None
    return [
        {"month": month, "kind": kind, "found": b[0], "customers": len(b[1]), "ongoing": b[2]}
        for (month, kind), b in sorted(buckets.items())
    ]


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def seed(db: Session, count: int, now: dt.datetime) -> None:
    """Customers, one campaign, ``count`` episodes, offer decisions and offer results over
    the last 13 months (seeded)."""
    rng = random.Random(1)
    span = 395 * 86400
    db.execute(
        insert(Customer),
        [
            {"email": "c%05d@example.com" % n, "password_hash": "-", "active": True}
            for n in range(CUSTOMERS)
        ],
    )
    campaign = db.scalar(
        insert(Campaign)
        .values(
            name="bench",
            audience={},
            title="Bench",
            text="Bench offer",
            channel="kiosk",
            cap_count=1,
            cap_days=1,
            starts_at=now - dt.timedelta(days=400),
            ends_at=now + dt.timedelta(days=30),
            status="active",
            version=1,
            created_at=now,
            created_by="bench",
        )
        .returning(Campaign.id)
    )
    episodes = []
    decisions = []
    results = []
    for n in range(count):
        at = now - dt.timedelta(seconds=rng.randrange(span))
        ended = at + dt.timedelta(days=30) if rng.random() < 0.3 else None
        episodes.append(
            {
                "customer_id": 1 + rng.randrange(CUSTOMERS),
                "kind": rng.choice(KINDS),
                "detail": "",
                "first_as_of": at.date(),
                "first_detected_at": at,
                "last_as_of": at.date(),
                "last_seen_at": at,
                "score": 0.7,
                "peak_score": 0.8,
                "reasons": ["planted by the bench"],
                "ended_as_of": ended.date() if ended else None,
                "ended_at": ended,
                "model_version": "profile-1",
            }
        )
        channel = rng.choice(CHANNELS)
        decisions.append(
            {
                "at": at,
                "customer_id": 1 + rng.randrange(CUSTOMERS),
                "gateway": "kiosk-%d" % (n % 50),
                "event_id": n,
                "outcome": "offered" if rng.random() < 0.6 else "none",
                "offered": [campaign],
                "reasons": [],
                "inputs": {"channel": channel},
                "version": "offers-1",
            }
        )
        results.append(
            {
                "campaign_id": campaign,
                "customer_id": 1 + rng.randrange(CUSTOMERS),
                "channel": channel,
                "outcome": rng.choice(OUTCOMES),
                "at": at,
                "gateway": "kiosk-%d" % (n % 50) if channel == "kiosk" else "inbox",
                "event_id": n,
            }
        )
    for model, rows in (
        (LifeEventEpisode, episodes),
        (OfferDecision, decisions),
        (OfferResult, results),
    ):
        for chunk in _chunks(rows):
            db.execute(insert(model), chunk)
    db.commit()


def timed(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """p50 and p95 of ``run``'s wall time in milliseconds (after a warm-up call)."""
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    if len(times) < 2:
        return times[0], times[0]
    return statistics.median(times), statistics.quantiles(times, n=20)[18]


def peak_kib(run: Callable[[], object]) -> float:
    """Peak Python memory allocated during one call of ``run``, in KiB."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 1024
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The analytics page's live figures on SQLite.")
    parser.add_argument("--rows", type=int, default=200_000, help="rows per table (200000)")
    parser.add_argument("--runs", type=int, default=20, help="calls per subject (20)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="bankiot-bench-analytics-"))
    figures: dict[str, Any] = {"rows": args.rows, "runs": args.runs}
    try:
        from cloud.app import create_app

        url = "sqlite:///%s" % (folder / "bench.sqlite3")
        upgrade(url)
        config = load_config(
            environ={}, overrides={"data_dir": str(folder / "data"), "database_url": url}
        )
        app = create_app(config)
        now = dt.datetime.now(dt.UTC)
        since = first_month(now.date())
        print("seeding %d rows per table ..." % args.rows, file=sys.stderr)
        with app.app_context(), database().sessions() as db:
            seed(db, args.rows, now)
            create_operator(db, "bench", "ops", "operations", (), PASSWORD)
            db.commit()
        client = app.test_client()
        form = client.get("/dashboard/signin").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form)
        assert token is not None, "no sign-in form"
        signed = client.post(
            "/dashboard/signin",
            data={"csrf_token": token.group(1), "name": "ops", "password": PASSWORD, "next": ""},
        )
        assert signed.status_code == 302, signed.status_code

        def live() -> object:
            response = client.get("/dashboard/analytics/live")
            assert response.status_code == 200, response.status_code
            return response

        print("timing ...", file=sys.stderr)
        sql_counts = store.events_over_time
        with app.app_context(), database().sessions() as db:
            same = sql_counts(db, since) == python_events_over_time(db, since)
            subjects = {
                "per_month": (
                    lambda: sql_counts(db, since),
                    lambda: python_events_over_time(db, since),
                ),
            }
            for label, (subject, reference) in subjects.items():
                ref50, ref95 = timed(reference, args.runs)
                sub50, sub95 = timed(subject, args.runs)
                figures[label] = {
                    "reference_p50_ms": round(ref50, 2),
                    "reference_p95_ms": round(ref95, 2),
                    "database_p50_ms": round(sub50, 2),
                    "database_p95_ms": round(sub95, 2),
                    "ratio_p50": round(sub50 / ref50, 3),
                    "reference_peak_kib": round(peak_kib(reference), 1),
                    "database_peak_kib": round(peak_kib(subject), 1),
                }
        try:
            store.events_over_time = python_events_over_time  # the page as it was
            ref50, ref95 = timed(live, args.runs)
            ref_peak = peak_kib(live)
        finally:
            store.events_over_time = sql_counts
        sub50, sub95 = timed(live, args.runs)
        figures["live_payload"] = {
            "reference_p50_ms": round(ref50, 2),
            "reference_p95_ms": round(ref95, 2),
            "database_p50_ms": round(sub50, 2),
            "database_p95_ms": round(sub95, 2),
            "ratio_p50": round(sub50 / ref50, 3),
            "reference_peak_kib": round(ref_peak, 1),
            "database_peak_kib": round(peak_kib(live), 1),
        }
        figures["same_figures"] = same
        app.extensions["bankiot.db"].dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        "Analytics page on SQLite: %d life-event episodes, offer decisions and offer results "
        "each, %d calls per subject" % (args.rows, args.runs)
    )
    print("  (reference: the old count in Python, measured in this run)")
    print("  same figures from both: %s" % ("yes" if same else "NO"))
    for label, title in (
        ("per_month", "life events per month and kind"),
        ("live_payload", "GET /dashboard/analytics/live"),
    ):
        row = figures[label]
        print("  %s" % title)
        print(
            "    reference (Python)  p50 %9.2f ms  p95 %9.2f ms  peak %9.1f KiB"
            % (row["reference_p50_ms"], row["reference_p95_ms"], row["reference_peak_kib"])
        )
        print(
            "    database (SQL)      p50 %9.2f ms  p95 %9.2f ms  peak %9.1f KiB   %6.3f x"
            % (
                row["database_p50_ms"],
                row["database_p95_ms"],
                row["database_peak_kib"],
                row["ratio_p50"],
            )
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
