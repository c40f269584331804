"""The push outbox on ``/metrics``: ``bankiot_push_due`` (notifications due for a pusher
now), ``bankiot_push_given_up`` (given up after their attempts, waiting for ``bankiot
notifications retry``) and ``bankiot_push_oldest_due_seconds`` (how long the oldest due one
has waited for a pusher; 0 when none is due: a growing figure means no pusher runs or it
cannot keep up). Counted in the database at each scrape (``outbox.backlog``), like
``bankiot_open_alerts``: every web replica reports the same figures. A database that does
not answer leaves them out of that scrape; ``/readyz`` is where that failure shows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from cloud.db import Database
from cloud.notifications.outbox import backlog


class PushOutbox(Collector):
    """A Prometheus collector of the push outbox's backlog, from ``database``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.database.sessions() as db:
                now = backlog(db, dt.datetime.now(dt.UTC))
        except SQLAlchemyError:
            return
        yield GaugeMetricFamily(
            "bankiot_push_due", "Notifications due for pushing now", value=now.due
        )
        yield GaugeMetricFamily(
            "bankiot_push_given_up",
            "Notifications whose pushes were given up (retry: bankiot notifications retry)",
            value=now.given_up,
        )
        yield GaugeMetricFamily(
            "bankiot_push_oldest_due_seconds",
            "Seconds the oldest due notification has waited for a pusher (0: none due)",
            value=now.oldest_due_seconds,
        )


def init_app(app: Flask) -> None:
    """Add the gauges to ``app``'s metrics registry (after ``db`` and ``health``)."""
    app.extensions["bankiot.metrics"].register(PushOutbox(app.extensions["bankiot.db"]))
