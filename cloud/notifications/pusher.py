"""The push outbox: every stored notification reaches the push gateway, at least once.

A notification row is its own outbox entry (``models``): stored with ``next_push_at`` =
its creation, so it is due as soon as its decision commits, whatever happens to the process
that committed it. A ``Pusher`` pass:

1. **claims** up to ``BATCH`` due rows in id order, in one short transaction: ``SELECT ...
   FOR UPDATE SKIP LOCKED`` on PostgreSQL (two pushers never take the same row), then per
   row ``push_attempts + 1`` and ``next_push_at`` = now + ``backoff`` (the lease, and the
   time of the next attempt should this one fail or its process die), guarded by the
   attempts it read, so a pusher that read a row another had claimed meanwhile (SQLite has
   no row locks) takes nothing;
2. **pushes** each to the ``PushChannel`` outside any transaction (a slow gateway holds no
   lock);
3. **marks** each it delivered ``pushed_at`` (``next_push_at`` null); a failed one waits for
   its ``next_push_at``; after ``MAX_ATTEMPTS`` failures it is given up (``next_push_at``
   null, ``pushed_at`` null), counted and logged by id only. It stays in the inbox.

At least once, never silently lost: a process killed between a push and its mark pushes
that notification again after its lease; the gateway de-duplicates by id (the webhook's
``Idempotency-Key``). A delivered and marked notification is never pushed again. The lease
(``BACKOFF`` at least) is longer than a batch can take (``BATCH`` x the webhook's timeout).

Where it runs: ``bankiot cloud up`` (a ``cloud.up`` background task: ``background``) and
``bankiot events run`` (``cloud.events.standalone``), polling every ``POLL_SECONDS``. Log
levels: warning for a failed or given-up push (id, attempt, the gateway's status), info for
a pass that delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.sql.elements import ColumnElement

from cloud.db import Database
from cloud.notifications.models import Notification
from cloud.notifications.push import LoggingChannel, Push, PushChannel, PushFailed

log = logging.getLogger(__name__)

BATCH = 10
POLL_SECONDS = 1.0
BACKOFF = dt.timedelta(seconds=60)  # > BATCH x webhook.TIMEOUT: a claim outlives its pass
BACKOFF_CAP = dt.timedelta(hours=1)
MAX_ATTEMPTS = 10  # the last about four hours after the first


def backoff(attempt: int) -> dt.timedelta:
    """How long after the start of attempt ``attempt`` (1, 2, ...) the next may begin:
    ``BACKOFF`` doubled each time, at most ``BACKOFF_CAP``."""
    return min(BACKOFF * 2 ** min(max(attempt - 1, 0), 16), BACKOFF_CAP)


def due(now: dt.datetime) -> ColumnElement[bool]:
    """Notifications a pass at ``now`` may take: not pushed, their ``next_push_at`` come."""
    return and_(Notification.pushed_at.is_(None), Notification.next_push_at <= now)


def given_up() -> ColumnElement[bool]:
    """Notifications no pass takes again: not pushed, no ``next_push_at``
    (``outbox.requeue`` makes them due again)."""
    return and_(Notification.pushed_at.is_(None), Notification.next_push_at.is_(None))


def _push_of(row: Notification) -> Push:
    return Push(
        id=row.id,
        customer=row.customer_id,
        channel=row.channel,
        source=row.source,
        title=row.title,
        text=row.text,
        relay_to_wearable=row.channel == "wearable",
    )


class Pusher:
    """Delivers the outbox to ``channel`` (module docstring); counts what it did."""

    def __init__(self, database: Database, channel: PushChannel, batch: int = BATCH) -> None:
        self.database = database
        self.channel = channel
        self.batch = batch
        self.pushed = 0
        self.failed = 0
        self.given_up = 0

    def claim(self, now: dt.datetime) -> list[tuple[Push, int]]:
        """Take up to ``batch`` due notifications (committed); each with its attempt."""
        taken: list[tuple[Push, int]] = []
        with self.database.sessions() as session:
            rows = session.scalars(
                select(Notification)
                .where(due(now))
                .order_by(Notification.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)  # PostgreSQL; SQLite: the guard below
            ).all()
            for row in rows:
                attempt = row.push_attempts + 1
                claimed = session.execute(
                    update(Notification)
                    .where(
                        Notification.id == row.id,
                        Notification.push_attempts == row.push_attempts,
                        due(now),
                    )
                    .values(push_attempts=attempt, next_push_at=now + backoff(attempt))
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) == 1:
                    taken.append((_push_of(row), attempt))
            session.commit()
        return taken

    def push_due(self, now: dt.datetime | None = None) -> int:
        """One pass (module docstring): how many notifications it claimed."""
        now = now or dt.datetime.now(dt.UTC)
        taken = self.claim(now)
        delivered = 0
        for message, attempt in taken:
            try:
                self.channel.push(message)
            except Exception as exc:
                self._failed(message.id, attempt, exc, now)
                continue
            self._mark(Notification.id == message.id, pushed_at=now, next_push_at=None)
            delivered += 1
        self.pushed += delivered
        if delivered:
            log.info("pushed %d notifications", delivered)
        return len(taken)

    def _failed(self, notification_id: int, attempt: int, exc: Exception, now: dt.datetime) -> None:
        # PushFailed's message is ours and names no customer; another error only by its kind.
        why = str(exc) if isinstance(exc, PushFailed) else type(exc).__name__
        self.failed += 1
        if attempt < MAX_ATTEMPTS:
            log.warning(
                "push of notification %d failed (attempt %d, again after %s): %s",
                notification_id,
                attempt,
                now + backoff(attempt),
                why,
            )
            return
        # Given up unless another pusher took it again meanwhile (its lease ran out).
        self._mark(
            and_(Notification.id == notification_id, Notification.push_attempts == attempt),
            next_push_at=None,
        )
        self.given_up += 1
        log.warning(
            "push of notification %d given up after %d attempts: %s",
            notification_id,
            attempt,
            why,
        )

    def _mark(self, which: ColumnElement[bool], **values: Any) -> None:
        with self.database.sessions() as session:
            session.execute(
                update(Notification)
                .where(which, Notification.pushed_at.is_(None))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            session.commit()

    async def run(self, stop: asyncio.Event, interval: float = POLL_SECONDS) -> None:
        """Pass after pass until ``stop`` is set; a full batch goes on at once, a failing
        pass (the database away) is logged and tried again after ``interval``."""
        while not stop.is_set():
            full = False
            try:
                full = await asyncio.to_thread(self.push_due) >= self.batch
            except Exception:
                log.exception("push pass failed; trying again")
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)


def channel_from(config: Mapping[str, Any]) -> PushChannel:
    """The push channel ``config`` names: the webhook of ``PUSH_URL``, else a
    ``LoggingChannel``; ``webhook.PushConfigError`` (one line) for unusable settings."""
    from cloud.notifications.webhook import channel_from as webhook_from

    return webhook_from(config) or LoggingChannel()


def describe(channel: PushChannel) -> str:
    """One line for a command's start: where notifications are pushed."""
    where = getattr(channel, "where", None)
    if where is None:
        return "no push gateway configured (push_url): notifications are only logged"
    return "pushing notifications to %s" % where
