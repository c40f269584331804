"""The history of life events (SQLite and PostgreSQL): monthly imports open an episode when
an event is first found, update it while it is found, end it when it is not, open a new one
when it comes back; export, erasure and retention; the API and the monthly counts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cloud.analytics import store
from cloud.analytics.models import LifeEventEpisode
from cloud.bank.models import BankTransaction
from cloud.bank.service import import_file
from cloud.customers import data, erasure
from cloud.customers.models import Customer
from cloud.ingest.models import utc
from cloud.ingest.retention import LIFE_EVENTS, RetentionPolicy, purge_records
from tests.cloud.analytics_samples import customer, month_statement

T0 = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)


OTHER_IBAN = b"DE75512108001245126199"


def import_month(db: Session, month: int, customer_id: int, other: bool = False) -> dt.datetime:
    """Import 2026-``month`` on day ``month`` after T0 (``other``: into another account)."""
    now = T0 + dt.timedelta(days=month)
    name, content = month_statement(month)
    if other:
        content = content.replace(b"DE89370400440532013000", OTHER_IBAN)
    import_file(db, name, content, customer_id=customer_id, actor="test", now=now)
    return now


def episodes(db: Session, customer_id: int) -> list[LifeEventEpisode]:
    db.expire_all()
    return list(reversed(store.life_event_history(db, customer_id)))  # oldest first


def test_an_episode_opens_when_first_found_follows_the_event_and_ends(db: Session) -> None:
    erika = customer(db)
    for month in range(1, 10):
        import_month(db, month, erika)
    assert episodes(db, erika) == []  # ACME's salary of August is not overdue yet
    # October: ACME's salary overdue since mid-October, NEWCO's paid since September.
    october = import_month(db, 10, erika)
    (job,) = episodes(db, erika)
    assert (job.kind, job.first_as_of, utc(job.first_detected_at)) == (
        "job_change",
        dt.date(2026, 10, 31),
        october,
    )
    assert job.reasons[0].startswith("salary from NEWCO AG since September 2026")
    assert "ACME GMBH" in job.reasons[0] and job.ended_at is None
    first_score = job.score
    # November: found again: the same episode, seen later.
    november = import_month(db, 11, erika)
    (job,) = episodes(db, erika)
    assert (job.first_as_of, job.last_as_of, utc(job.last_seen_at)) == (
        dt.date(2026, 10, 31),
        dt.date(2026, 11, 30),
        november,
    )
    assert job.peak_score == max(first_score, job.score) and job.score >= 0.5

    # The transactions go (an account closed): the episode ends; they come back: a new one.
    db.execute(delete(BankTransaction))
    db.commit()
    closed = T0 + dt.timedelta(days=40)
    store.recompute(db, [erika], closed)
    db.commit()
    (job,) = episodes(db, erika)
    assert job.ended_at is not None
    assert (job.ended_as_of, utc(job.ended_at)) == (closed.date(), closed)
    reopened = closed + dt.timedelta(days=1)
    for month in range(1, 12):  # the statements sent again: their entries are back
        name, content = month_statement(month)
        import_file(db, name, content, customer_id=erika, actor="test", now=reopened)
    ended, again = episodes(db, erika)
    assert ended.ended_at is not None and again.ended_at is None
    assert utc(ended.ended_at) == closed
    assert utc(again.first_detected_at) == reopened


def test_history_is_exported_erased_and_ended_episodes_expire(db: Session) -> None:
    erika = customer(db)
    for month in range(1, 12):
        import_month(db, month, erika)
    row = db.get(Customer, erika)
    assert row is not None
    exported = data.export(db, row, T0)["analytics"]["life_event_history"]
    assert [(e["kind"], e["first_as_of"], e["ended_at"]) for e in exported] == [
        ("job_change", "2026-10-31", None)
    ]
    assert exported[0]["reasons"] and exported[0]["peak_score"] >= 0.5

    # Retention: only episodes that ended longer ago than the class's period go.
    (job,) = episodes(db, erika)
    job.ended_as_of, job.ended_at = dt.date(2025, 1, 31), dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
    db.add(
        LifeEventEpisode(
            customer_id=erika,
            kind="moving_house",
            detail="",
            first_as_of=dt.date(2026, 1, 31),
            first_detected_at=T0,
            last_as_of=dt.date(2026, 2, 28),
            last_seen_at=T0,
            score=0.7,
            peak_score=0.7,
            reasons=["removals"],
            ended_as_of=dt.date(2026, 3, 31),
            ended_at=dt.datetime(2026, 4, 1, tzinfo=dt.UTC),
            model_version=store.MODEL_VERSION,
        )
    )
    db.commit()
    deleted = purge_records(db, T0, RetentionPolicy.parse({LIFE_EVENTS: "365d"}))
    db.commit()
    assert deleted[LIFE_EVENTS] == 1
    assert [e.kind for e in episodes(db, erika)] == ["moving_house"]

    receipt = erasure.erase(db, row, T0)
    db.commit()
    assert receipt.deleted["life_event_history"] == 1
    assert db.scalar(select(func.count()).select_from(LifeEventEpisode)) == 0


def test_events_over_time_counts_per_month_and_kind(db: Session) -> None:
    erika, max_ = customer(db), customer(db, "max@example.com")
    for who, other in ((erika, False), (max_, True)):
        for month in range(1, 12):
            import_month(db, month, who, other)
    counts = store.events_over_time(db, dt.date(2026, 1, 1))
    # Both were first found on the October import, made on T0 + 10 days (December 11).
    assert counts == [
        {"month": "2026-12", "kind": "job_change", "found": 2, "customers": 2, "ongoing": 2}
    ]
    assert store.events_over_time(db, dt.date(2027, 1, 1)) == []


def test_the_api_shows_the_history_with_reasons_to_managers_and_counts_to_operations(
    cloud_app,
) -> None:
    from cloud.db import database
    from tests.cloud.dashboard_actions import add_customer
    from tests.cloud.people_actions import body, seed, sign_in

    fleet = seed(cloud_app)
    alice = add_customer(cloud_app, "alice@example.com", "C0:FF:EE:00:00:0A", fleet.north, ())
    with cloud_app.app_context(), database().sessions() as db:
        for month in range(1, 12):
            import_month(db, month, alice)
    path = "/api/analytics/customers/%d" % alice
    (seen,) = body(sign_in(cloud_app, "maria").client.get(path))["life_event_history"]
    assert (seen["kind"], seen["first_as_of"], seen["ended_at"]) == (
        "job_change",
        "2026-10-31",
        None,
    )
    assert "NEWCO AG" in seen["reasons"][0]
    ops = sign_in(cloud_app, "ops").client
    (hidden,) = body(ops.get(path))["life_event_history"]
    assert hidden["reasons"] is None and hidden["first_as_of"] == "2026-10-31"
    over_time = body(ops.get("/api/analytics/life-events/over-time?months=120"))
    assert over_time["items"] == [
        {"month": "2026-12", "kind": "job_change", "found": 1, "customers": 1, "ongoing": 1}
    ]
    maria = sign_in(cloud_app, "maria").client
    assert maria.get("/api/analytics/life-events/over-time").status_code == 403
    assert ops.get("/api/analytics/life-events/over-time?months=0").status_code == 422
