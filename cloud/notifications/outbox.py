"""Operating the push outbox: what waits in it, and given-up notifications made due again.

The pusher (``pusher``) delivers; this module is what cloud operations ask of the outbox:

- ``backlog``: how many notifications are due now, how many were given up, and how long the
  oldest due one has waited for a pusher (since its ``next_push_at``: its creation, or the
  end of its last backoff). ``/metrics`` reads it at each scrape (``metrics``). Cheap on a
  big table: both are counted from the partial index ``ix_notifications_unpushed``, which
  leaves out the pushed rows (nearly all; like given-up ones, they have no
  ``next_push_at``, so the plain index on it would not tell them apart).
- ``requeue``: given-up notifications (or named unpushed ones) made due now with their
  attempts back to 0, so the pusher tries them ``MAX_ATTEMPTS`` times again; a pushed one
  is never taken again. Staged in the caller's session with its audit event
  (``notification.push.retry``); ``POST /api/notifications/push/retry`` (``views``) and
  ``bankiot notifications retry`` (``cli``) call it.

A named notification that a pusher holds right now may be pushed twice (the reset makes it
due while the pusher's attempt is under way): at least once, as always; the gateway keeps
one per id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from cloud import audit
from cloud.fleet.errors import Invalid
from cloud.ingest.models import utc
from cloud.notifications.models import Notification
from cloud.notifications.pusher import due, given_up

MAX_IDS = 500  # notifications named in one retry (one IN list; the audit event names them)
ACTION = "notification.push.retry"


@dataclass(frozen=True)
class Backlog:
    """The outbox at a moment: ``due`` and ``given_up`` counts, and the seconds the oldest
    due notification has waited (0 when none is due)."""

    due: int
    given_up: int
    oldest_due_seconds: float


def backlog(session: Session, now: dt.datetime) -> Backlog:
    """The outbox at ``now`` (module docstring): two indexed queries."""
    count, oldest = session.execute(
        select(func.count(), func.min(Notification.next_push_at)).where(due(now))
    ).one()
    gave_up = session.scalar(select(func.count()).select_from(Notification).where(given_up()))
    waited = 0.0 if oldest is None else max((utc(now) - utc(oldest)).total_seconds(), 0.0)
    return Backlog(due=int(count), given_up=int(gave_up or 0), oldest_due_seconds=waited)


@dataclass(frozen=True)
class Requeued:
    """What ``requeue`` did: how many notifications it made due, at ``at``, and why each
    named one it left alone was left (``{id: reason}``)."""

    count: int
    at: dt.datetime
    since: dt.datetime | None
    skipped: dict[int, str]


def _named(ids: Iterable[int]) -> list[int]:
    """``ids`` sorted without repeats; ``Invalid`` (one line) past ``MAX_IDS`` or below 1."""
    named = sorted(set(ids))
    if len(named) > MAX_IDS:
        raise Invalid("name at most %d notifications at once, not %d" % (MAX_IDS, len(named)))
    if named and named[0] < 1:
        raise Invalid("notification ids are 1 or more, not %d" % named[0])
    return named


def _why_not(session: Session, ids: list[int], since: dt.datetime | None) -> dict[int, str]:
    """Why each of ``ids`` was not made due: not there, pushed, or older than ``since``."""
    if not ids:
        return {}
    rows = session.execute(
        select(Notification.id, Notification.pushed_at, Notification.created_at).where(
            Notification.id.in_(ids)
        )
    ).all()
    found = {row[0]: row for row in rows}
    reasons: dict[int, str] = {}
    for notification_id in ids:
        row = found.get(notification_id)
        if row is None:
            reasons[notification_id] = "no such notification"
        elif row[1] is not None:
            reasons[notification_id] = "pushed already"
        elif since is not None and utc(row[2]) < since:
            reasons[notification_id] = "created before since"
        else:  # pushed meanwhile by a pusher
            reasons[notification_id] = "pushed already"
    return reasons


def requeue(
    session: Session,
    actor: str,
    now: dt.datetime,
    *,
    ids: Iterable[int] = (),
    since: dt.datetime | None = None,
) -> Requeued:
    """Make notifications due at ``now`` with no attempts counted, in ``session`` (the caller
    commits), audited as ``actor``: the ``ids`` named, if not pushed; else every given-up
    one. ``since`` keeps only those created at or after it (a naive time is UTC).
    ``Invalid`` for too many or impossible ids; nothing staged then."""
    named = _named(ids)
    since = None if since is None else utc(since)
    # A pushed notification is never taken again.
    which: list[ColumnElement[bool]] = [Notification.pushed_at.is_(None)]
    which.append(Notification.id.in_(named) if named else given_up())
    if since is not None:
        which.append(Notification.created_at >= since)
    statement = (
        update(Notification)
        .where(*which)
        .values(push_attempts=0, next_push_at=now)
        .execution_options(synchronize_session=False)
    )
    skipped: dict[int, str] = {}
    if named:
        made_due = set(session.scalars(statement.returning(Notification.id)))
        count = len(made_due)
        skipped = _why_not(session, [i for i in named if i not in made_due], since)
    else:
        count = int(getattr(session.execute(statement), "rowcount", 0) or 0)
    details: dict[str, Any] = {"requeued": count}
    if named:
        details["ids"] = named
    if since is not None:
        details["since"] = since.isoformat()
    audit.record(session, actor, ACTION, "notifications", **details)
    return Requeued(count=count, at=now, since=since, skipped=skipped)


def requeued_out(done: Requeued) -> dict[str, Any]:
    """``done`` as the API and the CLI show it."""
    return {
        "requeued": done.count,
        "at": done.at,
        "since": done.since,
        "skipped": [{"id": i, "reason": why} for i, why in sorted(done.skipped.items())],
    }
