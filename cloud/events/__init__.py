"""Event processing: rules over the device events ingest stores, joined with consent and the
customer's profile, deciding quickly and explaining every decision.

Functional core, imperative shell; modules, one job each:

| module | job |
|---|---|
| ``rules`` | what a rule says; the strict parser of rules files (TOML), one-line errors |
| ``defaults`` | the shipped rules (wearable button -> call-back, kiosk check-in -> ticket) |
| ``engine`` | the pure state machine: event or time in, decisions out (per rule, subject) |
| ``library`` | the rules in force: defaults plus the rules folder, reloaded on change |
| ``directory`` | consent now and the customer's profile, from the database, for the engine |
| ``actions`` | carrying decisions out: service requests, notifications, offers |
| ``worker`` | the live worker (a cursor over ``device_events``) and the dry run |
| ``stats`` | the worker's counters for ``/metrics`` |
| ``models`` | ``rule_decisions``, ``service_requests``, ``rule_cursors`` |
| ``views``, ``cli`` | the API and ``bankiot events`` |

``init_app(app)`` gives the app its ``RuleLibrary`` (``app.extensions[EXTENSION]``) and the
API; ``bankiot cloud up`` runs the live worker beside ingest (``background``), with what it
needs to send a rule's offer to its kiosk (``executor_for``: sealed with ingest's keys,
published through ``up``'s broker connection), and ``bankiot events run`` runs it on its
own (``standalone``: with a broker, the same sealed offers published QoS 1 on a connection
of its own; without one, offers are only logged), with the notifications' pusher beside it.
The worker's counters (``STATS``) join the app's metrics registry, so ``/metrics`` of
``cloud up`` shows them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask

from cloud.db import Database
from cloud.events.stats import WorkerStats

if TYPE_CHECKING:
    import ssl

    from cloud.events.actions import Executor
    from cloud.events.library import RuleLibrary
    from cloud.ingest.keys import KeySource
    from cloud.notifications.push import PushChannel
    from cloud.up import Background

EXTENSION = "bankiot.events"
_folder: Path | None = None  # the rules folder of the app built last (``cloud up`` builds one)
# The live worker's counters in this process (``cloud up`` runs one worker beside its app).
STATS = WorkerStats()


def init_app(app: Flask) -> None:
    """Install the events API and the rules library on ``app``."""
    global _folder
    from cloud.events import views
    from cloud.events.library import RuleLibrary, rules_folder

    _folder = rules_folder(app.config)
    app.extensions[EXTENSION] = RuleLibrary(_folder)
    registry = app.extensions.get("bankiot.metrics")
    if registry is not None:
        STATS.register(registry)
    app.register_blueprint(views.bp)


def executor_for(context: Background | None) -> Executor:
    """The worker's ``Executor`` under ``cloud up``: offers sealed for the gateway
    (``SealedDownlink``) and published on ``up``'s loop from the worker's thread; without
    ``context``, offers are only logged."""
    from cloud.events.actions import Executor, SealedDownlink

    if context is None:
        return Executor()
    return Executor(offers=SealedDownlink(context.key_source, context.publish_from_thread))


async def background(
    database: Database, stop: asyncio.Event, context: Background | None = None
) -> None:
    """The live worker as a ``cloud.up`` background task, on the rules folder of the app."""
    from cloud.events.library import RuleLibrary
    from cloud.events.worker import EventWorker

    executor = executor_for(context)
    STATS.failures = lambda: executor.failures
    await EventWorker(database, RuleLibrary(_folder), executor, stats=STATS).run(stop)


async def standalone(
    database: Database,
    library: RuleLibrary,
    keys: KeySource,
    broker: tuple[str, int, ssl.SSLContext | None] | None,
    stop: asyncio.Event,
    stats: WorkerStats | None = None,
    push: PushChannel | None = None,
) -> None:
    """``bankiot events run``: the live worker until ``stop`` is set, and beside it the
    risk-aware shopping pass that consumes its decisions (as under ``cloud up``; each rule
    decision is decided once even with ``cloud up`` running too: UNIQUE per decision) and
    the notifications' pusher, to ``push`` (default: only logged; two pushers never push
    one notification twice: ``cloud.notifications.pusher``). With
    ``broker`` (host, port, TLS context) the rules' offers are sealed with ``keys`` and
    published QoS 1 on a connection of the worker's own, as under ``cloud up``; without,
    only logged."""
    from cloud.apps.shopping import ShoppingApp
    from cloud.apps.shopping import run as shopping
    from cloud.events.worker import EventWorker
    from cloud.fleet.supervisor import MqttPublisher
    from cloud.notifications.push import LoggingChannel
    from cloud.notifications.pusher import Pusher
    from cloud.up import Background

    publisher = None
    context = None
    if broker is not None:
        host, port, tls = broker
        publisher = MqttPublisher(host, port, tls_context=tls)
        context = Background(keys, publisher, asyncio.get_running_loop())
    executor = executor_for(context)
    if stats is not None:
        stats.failures = lambda: executor.failures
    try:
        await asyncio.gather(
            EventWorker(database, library, executor, stats=stats).run(stop),
            shopping(ShoppingApp(database), stop),
            Pusher(database, push or LoggingChannel()).run(stop),
        )
    finally:
        if publisher is not None:
            await publisher.close()


def _register() -> None:
    from cloud import up

    if background not in up.BACKGROUND_TASKS:
        up.BACKGROUND_TASKS.append(background)


_register()
