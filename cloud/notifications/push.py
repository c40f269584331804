"""Pushing notifications to the customer's phone: the post-commit hook, and the channels the
outbox's pusher hands notifications to.

**The hook.** After the transaction that stored a notification commits, its ``Note`` goes
to a ``NotificationChannel`` (``notify``, ``push_all``). The web app's is
``app.extensions[EXTENSION]`` (``current_channel``: a ``LoggingChannel`` unless one was
installed). It is an in-process hook only: a failure there is logged and not retried, and
delivery never depends on it, because the row itself is the outbox.

**The outbox.** ``pusher`` takes every stored notification not yet pushed and hands it, as
a ``Push``, to a ``PushChannel``: the bank's push gateway (``webhook.WebhookChannel``, when
``PUSH_URL`` is set) or, by default, a ``LoggingChannel``. At least once: a ``Push`` carries
the notification's id, the gateway's idempotency key.

``LoggingChannel`` logs only a notification's id, channel and source, never the customer,
the text or an address (the inbox row holds those).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import current_app

log = logging.getLogger(__name__)
EXTENSION = "bankiot.notifications.channel"
KEEP = 1000


@dataclass(frozen=True)
class Note:
    """A notification just stored, for the push hook."""

    id: int
    customer_id: int
    channel: str
    source: str
    title: str
    text: str


@dataclass(frozen=True)
class Push:
    """A notification as the push gateway gets it: ``customer`` is the cloud's customer
    number (``customers.id``: the account the phone app signs in with; the cloud holds no
    other customer reference and never sends an email or a name)."""

    id: int
    customer: int
    channel: str
    source: str
    title: str
    text: str
    relay_to_wearable: bool


class PushFailed(Exception):
    """A push the gateway did not take (tried again later); the message is one line without
    customer data."""


class PushChannel(Protocol):
    """Where the outbox's pusher delivers a notification (the bank's push gateway)."""

    def push(self, message: Push) -> None:
        """Deliver ``message``; return only once the gateway has taken it, else raise
        (``PushFailed``)."""
        ...


class NotificationChannel(Protocol):
    """Where a stored notification is pushed (a phone's push service), after the commit."""

    def notify(
        self,
        *,
        notification_id: int,
        customer_id: int,
        channel: str,
        source: str,
        message: str,
    ) -> None:
        """Push notification ``notification_id`` (``message``, on ``channel``: ``app`` or
        ``wearable``) to customer ``customer_id``."""
        ...


class LoggingChannel:
    """A ``NotificationChannel`` and ``PushChannel`` that only logs (no push gateway
    configured); keeps what it was given in ``sent`` (the hook) and the newest ``KEEP`` in
    ``pushed`` (the pusher) for inspection."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        # The newest only: the pusher's default channel lives as long as the process.
        self.pushed: deque[Push] = deque(maxlen=KEEP)

    def notify(
        self,
        *,
        notification_id: int,
        customer_id: int,
        channel: str,
        source: str,
        message: str,
    ) -> None:
        """Log the notification (its id, channel and source only)."""
        self.sent.append(
            {
                "notification_id": notification_id,
                "customer_id": customer_id,
                "channel": channel,
                "source": source,
                "message": message,
            }
        )
        log.info("notification %d on %s (from %s)", notification_id, channel, source)

    def push(self, message: Push) -> None:
        """Log the push (its id, channel and source only): no gateway to take it."""
        self.pushed.append(message)
        log.info("notification %d pushed to no gateway (logged only)", message.id)


def notify(channel: NotificationChannel, note: Note) -> None:
    """Hand ``note`` to ``channel`` (after its commit); a failure raises."""
    channel.notify(
        notification_id=note.id,
        customer_id=note.customer_id,
        channel=note.channel,
        source=note.source,
        message=note.text,
    )


def push_all(channel: NotificationChannel, notes: Iterable[Note]) -> int:
    """``notify`` each of ``notes``; a failure is logged and the rest go on; how many
    failed."""
    failed = 0
    for note in notes:
        try:
            notify(channel, note)
        except Exception:
            failed += 1
            log.exception("hook of notification %d failed (the outbox still pushes it)", note.id)
    return failed


def current_channel() -> NotificationChannel:
    """The current web app's push hook (a ``LoggingChannel`` unless one was installed)."""
    return current_app.extensions.setdefault(EXTENSION, LoggingChannel())
