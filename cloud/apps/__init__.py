"""The applications the seed names, each a thin vertical slice on event processing, the
analytics and the bank's data; every decision logged in ``app_decisions`` with its inputs,
version and at most four reasons.

| module | job |
|---|---|
| ``models`` | ``app_decisions``, ``loan_applications``, ``holding_alerts`` |
| ``decisions`` | the decision log |
| ``finance`` | a customer's profile from their bank transactions (analytics' pure functions) |
| ``affordability`` | risk-aware shopping's decision (pure) |
| ``shopping`` | risk-aware shopping: the shell over the ``partner-shopping`` rule |
| ``underwriting`` | loan processing's decision (pure) |
| ``loans`` | loan applications, IoT evidence, the review queue |
| ``holdings`` | investment management: thresholds, once per crossing, life-event suggestions |
| ``views`` | the API under ``/api/apps`` |

``init_app(app)`` installs the API; ``bankiot cloud up`` runs the shopping pass beside the
event worker (``background``). Inbound requests (call-backs, tickets) are the event rules'
service requests (``cloud.events``). ``docs/applications.md`` describes each application.
"""

from __future__ import annotations

import asyncio

from flask import Flask

from cloud.db import Database


def init_app(app: Flask) -> None:
    """Install the applications' API on ``app``."""
    from cloud.apps import views

    app.register_blueprint(views.bp)


async def background(database: Database, stop: asyncio.Event) -> None:
    """The risk-aware shopping pass as a ``cloud.up`` background task."""
    from cloud.apps.shopping import ShoppingApp, run

    await run(ShoppingApp(database), stop)


def _register() -> None:
    from cloud import up

    if background not in up.BACKGROUND_TASKS:
        up.BACKGROUND_TASKS.append(background)


_register()
