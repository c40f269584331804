"""Life events per month and kind, counted by the database (SQLite and PostgreSQL): episodes
planted across fourteen months, with some right at a month's edge in UTC and some months
left empty, checked against counts made here from what was planted; PostgreSQL also in
connection time zones far from UTC; and only one row per month and kind comes back from
the database, however many episodes there are."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from cloud.analytics import store
from cloud.analytics.models import LifeEventEpisode
from cloud.dashboards import analytics_data
from tests.cloud.analytics_samples import customer

TODAY = dt.date(2026, 11, 29)  # the dashboard's 12 months: 2025-12 .. 2026-11
KINDS = ("job_change", "moving_house", "new_child")
EMPTY = ("2026-02", "2026-06")  # nothing planted in these months


def utc(year: int, month: int, day: int, *clock: int) -> dt.datetime:
    hour, minute, second, micro = (*clock, 0, 0, 0, 0)[:4]
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=dt.UTC)


# (first detected, kind, customer index, ended): each a second or less from a month's edge
EDGES = [
    (utc(2025, 11, 30, 23, 59, 59, 999999), "job_change", 0, False),  # before the span
    (utc(2025, 12, 1, 0, 0, 0), "job_change", 0, False),  # the span's first instant
    (utc(2026, 3, 31, 23, 59, 59), "new_child", 1, True),
    (utc(2026, 4, 1, 0, 0, 0), "new_child", 1, False),
    (utc(2026, 4, 30, 23, 59, 59), "moving_house", 2, False),
    (utc(2026, 11, 30, 23, 59, 59), "job_change", 3, False),  # later today: this month
    (utc(2026, 12, 1, 0, 0, 0), "job_change", 3, False),  # next month
]


def planted_moments(count: int) -> list[tuple[dt.datetime, str, int, bool]]:
    """``EDGES`` and ``count`` episodes spread (seeded) from 2025-11-15 to 2026-12-10,
    none in the ``EMPTY`` months."""
    rng = random.Random(7)
    start, span = utc(2025, 11, 15), 390 * 86400
    out = list(EDGES)
    while len(out) < len(EDGES) + count:
        moment = start + dt.timedelta(seconds=rng.randrange(span))
        if moment.strftime("%Y-%m") in EMPTY:
            continue
        out.append((moment, rng.choice(KINDS), rng.randrange(4), rng.random() < 0.3))
    return out


@pytest.fixture
def planted(db: Session) -> list[tuple[dt.datetime, str, int, bool]]:
    """Four customers' episodes (``planted_moments(300)``), committed; with customer ids."""
    ids = [customer(db, "c%d@example.com" % n) for n in range(4)]
    moments = [(at, kind, ids[who], ended) for at, kind, who, ended in planted_moments(300)]
    db.add_all(
        LifeEventEpisode(
            customer_id=who,
            kind=kind,
            detail="",
            first_as_of=at.date(),
            first_detected_at=at,
            last_as_of=at.date(),
            last_seen_at=at,
            score=0.7,
            peak_score=0.7,
            reasons=[],
            ended_as_of=at.date() if ended else None,
            ended_at=at + dt.timedelta(days=1) if ended else None,
            model_version="profile-1",
        )
        for at, kind, who, ended in moments
    )
    db.commit()
    return moments


def expected_counts(
    moments: list[tuple[dt.datetime, str, int, bool]], since: dt.datetime
) -> list[dict[str, Any]]:
    """What ``store.events_over_time`` should say, counted from the planted episodes."""
    found: Counter[tuple[str, str]] = Counter()
    ongoing: Counter[tuple[str, str]] = Counter()
    people: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for at, kind, who, ended in moments:
        if at >= since:
            key = ("%04d-%02d" % (at.year, at.month), kind)
            found[key] += 1
            ongoing[key] += not ended
            people[key].add(who)
    return [
        {"month": m, "kind": k, "found": found[m, k], "customers": len(people[m, k]),
         "ongoing": ongoing[m, k]}
        for m, k in sorted(found)
    ]  # fmt: skip


def test_events_over_time_counts_per_utc_month_and_kind(
    db: Session, planted: list[tuple[dt.datetime, str, int, bool]]
) -> None:
    since = dt.date(2025, 12, 1)
    expected = expected_counts(planted, utc(2025, 12, 1))
    assert {row["month"] for row in expected} >= {"2025-12", "2026-03", "2026-04", "2026-12"}
    assert not {row["month"] for row in expected} & set(EMPTY)
    assert store.events_over_time(db, since) == expected
    assert store.events_over_time(db, dt.date(2027, 1, 1)) == []
    if db.get_bind().dialect.name == "postgresql":
        # The months are UTC's whatever time zone the connection shows timestamps in.
        for zone in ("Pacific/Kiritimati", "America/Los_Angeles"):  # UTC+14, UTC-8/-7
            db.execute(text("SET LOCAL TIME ZONE '%s'" % zone))
            assert store.events_over_time(db, since) == expected, zone
            db.rollback()


def test_the_dashboard_shows_twelve_months_with_the_empty_ones(
    db: Session, planted: list[tuple[dt.datetime, str, int, bool]]
) -> None:
    found = analytics_data.life_events_per_month(db, TODAY)
    months = ["2025-12"] + ["2026-%02d" % m for m in range(1, 12)]
    assert found.months == months
    per_kind: dict[str, list[int]] = {}
    for at, kind, _, _ in planted:
        month = "%04d-%02d" % (at.year, at.month)
        if month in months:  # neither November 2025 nor December 2026
            per_kind.setdefault(kind, [0] * 12)[months.index(month)] += 1
    assert found.kinds == sorted(per_kind.items())
    for kind, counts in found.kinds:
        assert [counts[months.index(m)] for m in EMPTY] == [0, 0], kind


def test_only_one_row_per_month_and_kind_leaves_the_database(
    db: Session, planted: list[tuple[dt.datetime, str, int, bool]], monkeypatch: Any
) -> None:
    fetched: list[int] = []
    execute = db.execute

    def counting(statement: Any, *args: Any, **kwargs: Any) -> Any:
        rows = execute(statement, *args, **kwargs).all()
        fetched.append(len(rows))
        return rows

    monkeypatch.setattr(db, "execute", counting)
    counts = store.events_over_time(db, dt.date(2025, 12, 1))
    since = utc(2025, 12, 1)
    assert sum(row["found"] for row in counts) == sum(1 for at, *_ in planted if at >= since)
    assert fetched == [len(counts)]
    assert len(counts) <= 13 * len(KINDS) < len(planted)
