"""The post-commit push hook: after the transaction that stored a notification commits, its
``Note`` goes to a ``NotificationChannel``, where a push service for the customer's phone
plugs in (the inbox itself needs no push: the app polls it).

The web app's channel is ``app.extensions[EXTENSION]`` (``current_channel``: a
``LoggingChannel`` unless one was installed). The default ``LoggingChannel`` only logs the
notification's id, channel and source, never the customer, the text or an address (the
inbox row holds those). A push that fails is logged and not retried: the notification is
in the inbox either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import current_app

log = logging.getLogger(__name__)
EXTENSION = "bankiot.notifications.channel"


@dataclass(frozen=True)
class Note:
    """A notification just stored, for the push hook."""

    id: int
    customer_id: int
    channel: str
    source: str
    title: str
    text: str


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
    """A ``NotificationChannel`` that only logs (until a push service is connected); keeps
    what it was asked in ``sent`` for inspection."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

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
            log.exception("push of notification %d failed (it is in the inbox)", note.id)
    return failed


def current_channel() -> NotificationChannel:
    """The current web app's push hook (a ``LoggingChannel`` unless one was installed)."""
    return current_app.extensions.setdefault(EXTENSION, LoggingChannel())
