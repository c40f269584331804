"""Actions the alert tests share: a branch whose gateway talks to real ingest on a clock the
test moves, and the alert rows as plain tuples.

``Site`` drives ``cloud.ingest.pipeline.Ingest`` with ``ingest_support.SimGateway`` (the
portable core's batcher, sealing and queue), so readings, health events and receipts are
stored exactly as ingest stores them; ``Ingest``'s clock is ``site.now``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from bankiot_core.address import mac_to_str
from cloud.db import Database
from cloud.fleet.alert_rules import Thresholds
from cloud.fleet.alerts import Alert, CheckSummary, check_alerts
from cloud.fleet.models import Branch, Device
from cloud.ingest.pipeline import Ingest
from tests.cloud.ingest_support import WEARABLE, SimGateway

START = dt.datetime(2030, 5, 1, 8, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def add_site_rows(database: Database, code: str, *devices: tuple[str, str]) -> dict[str, int]:
    """Branch ``code`` with ``devices`` as (uid, kind), active, registered a day before
    ``START``; the device ids by uid."""
    with database.sessions() as db:
        branch = Branch(code=code, name="Branch %s" % code)
        db.add(branch)
        db.flush()
        rows = [
            Device(
                uid=uid,
                kind=kind,
                branch_id=branch.id,
                status="active",
                created_at=START - dt.timedelta(days=1),
            )
            for uid, kind in devices
        ]
        db.add_all(rows)
        db.commit()
        return {row.uid: row.id for row in rows}


class Site:
    """A branch with gateway ``gateway_id`` and a wearable, on ``database``."""

    def __init__(self, database: Database, gateway_id: str = "gw-a", code: str = "north"):
        self.database = database
        self.now = START
        self.gateway = SimGateway(gateway_id)
        self.ingest = Ingest(database, self.gateway.keys(), clock=lambda: self.now)
        self.wearable = mac_to_str(WEARABLE)
        self.ids = add_site_rows(
            database, code, (gateway_id, "gateway"), (self.wearable, "wearable")
        )

    def later(self, delta: dt.timedelta = MINUTE) -> None:
        self.now += delta
        self.gateway.now_ms += int(delta.total_seconds() * 1000)

    def deliver(self) -> int:
        """Send what the gateway's queue holds; every batch must be accepted."""
        self.gateway.flush()
        sent = 0
        for _seq, envelope in self.gateway.outbox():
            result = self.ingest.handle(envelope, self.gateway.aad, "mqtt", self.gateway.gateway_id)
            assert result.status == "accepted", result
            self.gateway.receive(result.ack or b"")
            sent += 1
        return sent

    def health(self, **counters: int | None) -> None:
        """One health report with ``counters``, delivered now."""
        ready = self.gateway.batcher.add_health(counters, self.gateway.now_ms)
        self.gateway._queue(ready)
        assert self.deliver() == 1

    def reading(self, metric: str, value: object, unit: str = "") -> None:
        """The gateway heard the wearable's ``metric``; delivered now."""
        self.gateway.hear(WEARABLE, metric, value, unit)
        assert self.deliver() >= 1

    def check(self, thresholds: Thresholds | None = None) -> CheckSummary:
        """``check_alerts`` at ``now``, committed."""
        with self.database.sessions() as db:
            summary = check_alerts(db, thresholds or Thresholds(), self.now)
            db.commit()
        return summary


def alert_rows(database: Database) -> list[tuple[Any, ...]]:
    """Every alert as (device id, kind, severity, state, opened, resolved, detail), by id."""
    with database.sessions() as db:
        rows = db.execute(
            select(
                Alert.device_id,
                Alert.kind,
                Alert.severity,
                Alert.state,
                Alert.opened_at,
                Alert.resolved_at,
                Alert.detail,
            ).order_by(Alert.id)
        ).all()
    return [tuple(row) for row in rows]


def open_alerts(database: Database) -> dict[tuple[int, str], tuple[str, dict]]:
    """The open alerts: (device id, kind) -> (severity, detail)."""
    return {
        (device, kind): (severity, detail)
        for device, kind, severity, state, _o, _r, detail in alert_rows(database)
        if state == "open"
    }
