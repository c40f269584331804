"""``bankiot_open_alerts{kind=...}``: open fleet alerts by kind, and
``bankiot_rejections_unknown_sender{reason=...}``: envelopes rejected from no sender of the
inventory over the ``envelopes_rejected`` window (``cloud.fleet.rejection_alerts``; they
belong to no device, so they open no alert). Both are counted in the database when
Prometheus scrapes ``/metrics`` (so every web replica reports the same figure and no
process has to keep it up to date). A database that does not answer leaves the gauges out
of that scrape; ``/readyz`` is where that failure shows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from cloud.db import Database
from cloud.fleet.alert_rules import KINDS
from cloud.fleet.alerts import OPEN, Alert
from cloud.fleet.rejection_alerts import unknown_rejections
from cloud.ingest.stats import REASONS


class OpenAlerts(Collector):
    """A Prometheus collector of open alerts by kind, from ``database``."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        query = select(Alert.kind, func.count()).where(Alert.state == OPEN).group_by(Alert.kind)
        try:
            with self.database.sessions() as db:
                counts = {str(row[0]): int(row[1]) for row in db.execute(query)}
        except SQLAlchemyError:
            return
        gauge = GaugeMetricFamily("bankiot_open_alerts", "Open fleet alerts", labels=["kind"])
        for kind in KINDS:
            gauge.add_metric([kind], counts.get(kind, 0))
        yield gauge


class UnknownRejections(Collector):
    """A Prometheus collector of the window's rejections from unknown senders, by reason."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.database.sessions() as db:
                counts = unknown_rejections(db, dt.datetime.now(dt.UTC))
        except SQLAlchemyError:
            return
        gauge = GaugeMetricFamily(
            "bankiot_rejections_unknown_sender",
            "Envelopes rejected from no sender of the inventory, current and previous hour",
            labels=["reason"],
        )
        for reason in REASONS:
            gauge.add_metric([reason], counts.get(reason, 0))
        yield gauge


def init_app(app: Flask) -> None:
    """Add the gauges to ``app``'s metrics registry (after ``db`` and ``health``)."""
    registry = app.extensions["bankiot.metrics"]
    registry.register(OpenAlerts(app.extensions["bankiot.db"]))
    registry.register(UnknownRejections(app.extensions["bankiot.db"]))
