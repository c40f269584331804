"""The customer's inbox: notifications and app or wearable offers, actually delivered.

What decides a notification stages it in its own transaction, so a notification exists
exactly when its decision was committed, once: the rule worker's ``notify`` and ``offer``
actions (``cloud.events.actions``), risk-aware shopping and holding alerts
(``cloud.apps``), and app or wearable campaigns (``offers``). After the commit, its ``Note``
goes to the in-process hook (``push.NotificationChannel``); the row itself is the outbox,
which the pusher delivers to the bank's push gateway at least once (``pusher``,
``webhook``). The customer reads the inbox on the customer pages
(``/customer/notifications``, and its JSON for live updates and a phone app:
``cloud.customers.views``).

| module | job |
|---|---|
| ``models`` | ``notifications``, ``campaign_sends`` |
| ``push`` | the post-commit hook (``NotificationChannel``); ``Push``, ``PushChannel`` |
| ``pusher`` | the outbox: unpushed rows to a ``PushChannel``, with retries, at least once |
| ``webhook`` | ``WebhookChannel``: the bank's push gateway, JSON POSTs signed with HMAC-SHA256 |
| ``inbox`` | stage, list, mark read, answer an offer (object-level: a customer's own only) |
| ``offers`` | app and wearable campaigns: a rule's offer, and a send to the audience |
| ``outbox`` | operating the outbox: its backlog, given-up notifications made due again |
| ``metrics`` | the outbox's backlog on ``/metrics`` (gauges counted at each scrape) |
| ``views``, ``cli`` | ``POST /api/notifications/push/retry``; ``bankiot notifications`` |

A ``wearable`` notification cannot go to the wearable itself: the wearables here are BLE
advertisers, which send and never receive. The app shows it and marks it for relay
(``relay_to_wearable``): a smartwatch gets its notifications from the phone app it is
paired with (``docs/customers.md``), and says so (``inbox.mark_relayed``).

``bankiot cloud up`` runs the pusher as a background task (``background``, on the channel of
its ``PUSH_URL`` setting); ``bankiot events run`` runs one beside its worker.

``init_app(app)`` registers the outbox's gauges on ``/metrics`` and the retry API.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cloud.db import Database

if TYPE_CHECKING:
    from flask import Flask

    from cloud.up import Background


def init_app(app: Flask) -> None:
    """Install the outbox's gauges and the retry API on ``app`` (after ``fleet``, whose
    refusals it answers with)."""
    from cloud.notifications import metrics, views

    app.register_blueprint(views.bp)
    metrics.init_app(app)


async def background(database: Database, stop: asyncio.Event, context: Background) -> None:
    """The pusher as a ``cloud.up`` background task, on the channel of ``up``'s settings."""
    from cloud.notifications.pusher import Pusher, channel_from

    await Pusher(database, channel_from(context.config)).run(stop)


def _register() -> None:
    from cloud import up

    if background not in up.BACKGROUND_TASKS:
        up.BACKGROUND_TASKS.append(background)


_register()
