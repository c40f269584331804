"""Operating the push outbox, on SQLite and PostgreSQL: its backlog on ``/metrics`` (due,
given up, the oldest due one's wait), counted by indexed queries; given-up notifications made
due again by cloud operations (``POST /api/notifications/push/retry``, ``bankiot
notifications retry``), audited, never a pushed one, and then pushed by the pusher.

Rows are planted in the states the pusher leaves them in: due (``next_push_at`` come),
waiting out a backoff (``next_push_at`` ahead), given up (``pushed_at`` and ``next_push_at``
null) and pushed (``pushed_at`` set).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from cloud.audit import AuditEvent
from cloud.db import Database
from cloud.ingest.models import utc
from cloud.notifications.cli import notifications as notifications_cli
from cloud.notifications.models import Notification
from cloud.notifications.outbox import backlog
from cloud.notifications.push import LoggingChannel
from cloud.notifications.pusher import Pusher, due, given_up
from tests.cloud.customer_actions import database_of
from tests.cloud.identity_actions import Callers
from tests.cloud.test_notification_push import add_customer, row_of, store

RETRY = "/api/notifications/push/retry"
CUSTOMERS = itertools.count(1)
GAUGES = ("bankiot_push_due", "bankiot_push_given_up", "bankiot_push_oldest_due_seconds")


def plant(database: Database, created: dt.datetime, **state: Any) -> int:
    """One notification created at ``created``, then put in ``state`` (its outbox columns)."""
    customer = add_customer(database, "c%d@example.com" % next(CUSTOMERS))
    (note,) = store(database, customer, now=created)
    if state:
        with database.sessions() as session:
            session.execute(update(Notification).where(Notification.id == note).values(**state))
            session.commit()
    return note


def given_up_at(database: Database, created: dt.datetime) -> int:
    return plant(database, created, next_push_at=None, push_attempts=10)


def pushed_at(database: Database, created: dt.datetime) -> int:
    return plant(database, created, pushed_at=created, next_push_at=None, push_attempts=1)


def gauges(app: APIFlask) -> dict[str, float]:
    text_body = app.test_client().get("/metrics").get_data(as_text=True)
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text_body)
        for sample in family.samples
        if sample.name in GAUGES
    }


def test_metrics_count_due_and_given_up_and_how_long_the_oldest_due_waited(
    cloud_app: APIFlask,
) -> None:
    assert gauges(cloud_app) == dict.fromkeys(GAUGES, 0.0)
    database = database_of(cloud_app)
    now = dt.datetime.now(dt.UTC)
    plant(database, now - dt.timedelta(minutes=2))  # due since its creation
    plant(database, now - dt.timedelta(hours=3), next_push_at=now - dt.timedelta(seconds=30))
    plant(database, now, next_push_at=now + dt.timedelta(hours=1), push_attempts=3)  # backoff
    for hours in (1, 2, 3):
        given_up_at(database, now - dt.timedelta(hours=hours))
    for hours in (1, 2):
        pushed_at(database, now - dt.timedelta(hours=hours))

    got = gauges(cloud_app)
    assert (got["bankiot_push_due"], got["bankiot_push_given_up"]) == (2, 3)
    # The oldest due one became due at its creation, two minutes ago (not three hours: the
    # other one, older, became due at the end of its backoff).
    assert 120 <= got["bankiot_push_oldest_due_seconds"] < 3 * 3600


def _plan(session: Session, statement: Any) -> str:
    """The database's plan of ``statement``, as text."""
    dialect = session.get_bind().dialect
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))  # small table: as if big
        return "\n".join(session.scalars(text("EXPLAIN " + sql)))
    return "\n".join(str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + sql)))


def test_the_backlog_is_counted_from_indexes_not_by_reading_the_table(
    db: Session, database_url: URL
) -> None:
    from sqlalchemy import func

    now = dt.datetime(2026, 12, 14, 9, 0, tzinfo=dt.UTC)
    gave_up = select(func.count()).select_from(Notification).where(given_up())
    due_now = select(func.count(), func.min(Notification.next_push_at)).where(due(now))
    # Not the plain index on next_push_at: it holds every pushed row too (next_push_at null).
    assert "ix_notifications_unpushed" in _plan(db, gave_up)
    assert "notifications_unpushed" in _plan(db, due_now) or "next_push_at" in _plan(db, due_now)
    db.rollback()
    assert backlog(db, now).due == 0


def test_operations_retry_given_up_notifications_audited_and_the_pusher_takes_them(
    cloud_app: APIFlask,
) -> None:
    database = database_of(cloud_app)
    now = dt.datetime.now(dt.UTC)
    old = given_up_at(database, now - dt.timedelta(days=2))
    recent = given_up_at(database, now - dt.timedelta(hours=1))
    pushed = pushed_at(database, now - dt.timedelta(hours=1))
    waiting = plant(database, now, next_push_at=now + dt.timedelta(hours=1), push_attempts=4)
    client = cloud_app.test_client()
    callers = Callers(cloud_app)

    assert client.post(RETRY, json={}).status_code == 401
    callers.as_manager(1)
    assert client.post(RETRY, json={}).status_code == 403  # a branch manager cannot
    callers.as_technician(1)
    assert client.post(RETRY, json={}).status_code == 403
    assert row_of(database, old).next_push_at is None  # nothing changed

    callers.as_operations()
    since = (now - dt.timedelta(days=1)).isoformat()
    response = client.post(RETRY, json={"since": since})
    assert response.status_code == 200, response.json
    out = response.json
    assert out is not None and (out["requeued"], out["skipped"]) == (1, [])
    at = dt.datetime.fromisoformat(out["at"])
    row = row_of(database, recent)
    assert (row.push_attempts, utc(row.next_push_at or now), row.pushed_at) == (0, at, None)
    assert row_of(database, old).next_push_at is None  # created before since

    response = client.post(RETRY, json={})  # every given-up one: the old one is left
    assert response.json is not None and response.json["requeued"] == 1
    assert row_of(database, old).push_attempts == 0
    # Neither the pushed one nor the one waiting out its backoff was touched.
    assert (row_of(database, pushed).push_attempts, row_of(database, pushed).next_push_at) == (
        1,
        None,
    )
    assert row_of(database, waiting).push_attempts == 4

    with database.sessions() as session:
        audited = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "notification.push.retry")
        ).all()
        assert [(a.actor, a.details) for a in audited] == [
            ("operator:ops", {"requeued": 1, "since": (now - dt.timedelta(days=1)).isoformat()}),
            ("operator:ops", {"requeued": 1}),
        ]

    channel = LoggingChannel()
    assert Pusher(database, channel).push_due() == 2  # the pusher takes them again
    assert sorted(p.id for p in channel.pushed) == [old, recent]


def test_named_notifications_are_retried_unless_pushed_and_bad_input_is_refused(
    cloud_app: APIFlask,
) -> None:
    database = database_of(cloud_app)
    now = dt.datetime.now(dt.UTC)
    pushed = pushed_at(database, now - dt.timedelta(hours=1))
    waiting = plant(database, now, next_push_at=now + dt.timedelta(hours=1), push_attempts=4)
    other = given_up_at(database, now - dt.timedelta(hours=1))
    client = cloud_app.test_client()
    Callers(cloud_app).as_operations()

    response = client.post(RETRY, json={"ids": [waiting, pushed, 999999]})
    assert response.status_code == 200, response.json
    out = response.json
    assert out is not None and out["requeued"] == 1
    assert out["skipped"] == [
        {"id": pushed, "reason": "pushed already"},
        {"id": 999999, "reason": "no such notification"},
    ]
    assert row_of(database, waiting).push_attempts == 0  # named: made due now
    assert row_of(database, other).next_push_at is None  # not named: left given up
    assert row_of(database, pushed).pushed_at is not None

    for bad in ({"ids": [0]}, {"ids": list(range(1, 502))}, {"since": "yesterday"}):
        refused = client.post(RETRY, json=bad)
        assert refused.status_code == 422, (bad, refused.json)
    with database.sessions() as session:
        actions = session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "notification.push.retry")
        ).all()
        assert actions == [{"requeued": 1, "ids": sorted([waiting, pushed, 999999])}]


@pytest.fixture
def where(database_url: URL, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``bankiot notifications`` command on ``database_url``."""
    return {
        "BANKIOT_DATABASE_URL": database_url.render_as_string(hide_password=False),
        "BANKIOT_DATA_DIR": str(tmp_path / "data"),
    }


def test_the_retry_command_requeues_given_up_ones_in_one_line(
    database_url: URL, where: dict[str, str]
) -> None:
    database = Database(database_url.render_as_string(hide_password=False))
    now = dt.datetime.now(dt.UTC)
    old = given_up_at(database, now - dt.timedelta(days=3))
    recent = given_up_at(database, now - dt.timedelta(hours=2))
    pushed = pushed_at(database, now - dt.timedelta(hours=2))
    runner = CliRunner()

    day = (now - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    done = runner.invoke(notifications_cli, ["retry", "--since", day], env=where)
    assert done.exit_code == 0, done.output
    assert done.output == (
        "1 given-up notification(s) created since %sT00:00:00+00:00 due for pushing again\n" % day
    )
    assert row_of(database, recent).push_attempts == 0
    assert row_of(database, old).next_push_at is None

    named = runner.invoke(
        notifications_cli, ["retry", "--id", str(old), "--id", str(pushed), "--json"], env=where
    )
    assert named.exit_code == 0, named.output
    out = json.loads(named.output)
    assert (out["requeued"], out["skipped"]) == (1, [{"id": pushed, "reason": "pushed already"}])
    assert row_of(database, old).push_attempts == 0
    with database.sessions() as session:
        actors = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "notification.push.retry")
        ).all()
        assert len(actors) == 2 and all(a.startswith("cli:") for a in actors)

    bad = runner.invoke(notifications_cli, ["retry", "--id", "0"], env=where)
    assert bad.exit_code == 2 and "--id" in bad.output
    database.dispose()
