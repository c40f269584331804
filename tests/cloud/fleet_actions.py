"""Actions the fleet tests share: seed branches, devices and gateway health rows."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from apiflask import APIFlask
from sqlalchemy import delete, select
from werkzeug.serving import make_server

from cloud.db import database
from cloud.fleet.models import Branch, Device
from cloud.ingest.models import GatewayHealth

REPORTED = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@contextmanager
def served_app(app: APIFlask) -> Iterator[str]:
    """``app`` on a real HTTP server on a free local port; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_port
    finally:
        server.shutdown()
        thread.join()


def add_branches(app: APIFlask, *codes: str) -> dict[str, int]:
    """Branches named by ``codes``; their ids by code."""
    with app.app_context(), database().sessions() as db:
        branches = [Branch(code=code, name="Branch %s" % code) for code in codes]
        db.add_all(branches)
        db.commit()
        return {branch.code: branch.id for branch in branches}


def add_devices(app: APIFlask, *devices: dict[str, Any]) -> list[int]:
    """Devices from keyword dicts (``uid``, ``branch_id`` required); their ids in order."""
    with app.app_context(), database().sessions() as db:
        rows = [Device(**{"kind": "gateway", **device}) for device in devices]
        db.add_all(rows)
        db.commit()
        return [row.id for row in rows]


def branch_ids(app: APIFlask) -> dict[str, int]:
    """Every branch's id by code."""
    with app.app_context(), database().sessions() as db:
        return {branch.code: branch.id for branch in db.scalars(select(Branch))}


def clear_devices(app: APIFlask) -> None:
    with app.app_context(), database().sessions() as db:
        db.execute(delete(Device))
        db.commit()


def add_health(app: APIFlask, gateway: str, counters: dict[str, Any]) -> None:
    """The latest health record of ``gateway``, as ingest stores it."""
    with app.app_context(), database().sessions() as db:
        db.add(
            GatewayHealth(
                gateway=gateway,
                key_version=1,
                seq=7,
                reported_at=REPORTED,
                time_estimated=False,
                received_at=REPORTED + dt.timedelta(seconds=2),
                counters=counters,
                queue_depth=counters.get("depth"),
                dropped_batches=counters.get("dropped_batches"),
                dropped_bytes=counters.get("dropped_bytes"),
            )
        )
        db.commit()
