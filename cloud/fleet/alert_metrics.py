"""``bankiot_open_alerts{kind=...}``: open fleet alerts by kind, counted in the database when
Prometheus scrapes ``/metrics`` (so every web replica reports the same figure and no
process has to keep it up to date). A database that does not answer leaves the gauge out
of that scrape; ``/readyz`` is where that failure shows."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from cloud.db import Database
from cloud.fleet.alert_rules import KINDS
from cloud.fleet.alerts import OPEN, Alert


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


def init_app(app: Flask) -> None:
    """Add the gauge to ``app``'s metrics registry (after ``db`` and ``health``)."""
    registry = app.extensions["bankiot.metrics"]
    registry.register(OpenAlerts(app.extensions["bankiot.db"]))
