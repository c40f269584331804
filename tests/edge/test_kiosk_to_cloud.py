"""A branch kiosk's events reach the cloud exactly once, also across an outage of the cloud.

The parts are the real ones, each its own process (``tests.edge.process_support``): the
cloud is ``bankiot cloud up``; the kiosk is ``bankiot gateway run`` with a ``[kiosk]``
table (its page on a free loopback port), enrolled as a kiosk with a claim made in the
cloud's database. The test is the page: it polls ``GET /api/state`` and posts actions to
``POST /api/action`` as ``kiosk.js`` does (JSON, ``Host`` naming the page's own address).

A walk-in takes a ticket and asks for a service: both are ``kiosk_events`` rows in the
cloud's database, once each, with the kiosk's device and branch and no wearable. Then the
cloud stops (SIGINT, as Ctrl-C); the page says it is offline and that the next ticket is
saved (``waiting``: sealed in the kiosk's queue, where the test opens it with the kiosk's
envelope key); the cloud starts again on the same data and ports, and that ticket arrives
once too, numbered right after the first.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bankiot_core import batch
from cloud.db import Database
from cloud.fleet.models import Device
from cloud.ingest.kiosk_models import KioskEventRow
from edge import runtime
from edge.identity import load_identity
from tests.edge.kiosk_support import kiosk_events_of
from tests.edge.process_support import (
    Cloud,
    GatewayProcess,
    cloud_up,
    enroll,
    make_claim,
    queued_envelopes,
    tail,
    wait_until,
    write_gateway_toml,
)
from tests.support.environment import free_port

UID = "kiosk-proc-1"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    with cloud_up(tmp_path) as running:
        yield running


class Page:
    """The kiosk page's side of the API, on ``127.0.0.1:port`` (``kiosk.js``)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            headers = {"Host": "127.0.0.1:%d" % self.port}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def state(self) -> dict[str, Any] | None:
        """The view the page shows now; None while the page does not listen yet."""
        try:
            status, view = self._call("GET", "/api/state", None)
        except ConnectionRefusedError:
            return None
        assert status == 200, view
        return view

    def act(self, action: str, **extra: Any) -> dict[str, Any]:
        """Press ``action`` on the screen; the new view (the action must be possible)."""
        status, view = self._call("POST", "/api/action", {"action": action, **extra})
        assert status == 200, (action, status, view)
        return view


def stored(database: Database) -> list[tuple[str, str, str | None, int | None, int | None]]:
    """The kiosk's rows in ``kiosk_events``, by event id: (kind, detail, wearable, device,
    branch)."""
    with database.sessions() as session:
        rows = session.execute(
            select(
                KioskEventRow.kind,
                KioskEventRow.detail,
                KioskEventRow.wearable,
                KioskEventRow.device_id,
                KioskEventRow.branch_id,
            )
            .where(KioskEventRow.gateway == UID)
            .order_by(KioskEventRow.event_id)
        ).all()
    return [(kind, detail, who, device, branch) for kind, detail, who, device, branch in rows]


def test_a_walk_ins_tickets_and_request_reach_the_cloud_once_also_while_it_is_down(
    cloud: Cloud, tmp_path: Path
) -> None:
    database = cloud.database()
    page = Page(free_port())
    config = write_gateway_toml(tmp_path, cloud, kiosk_port=page.port)
    gateway = GatewayProcess(config, tmp_path)
    queue = tmp_path / "gateway" / runtime.QUEUE_FILE

    def why() -> str:
        return "-- gateway:\n%s\n-- cloud:\n%s" % (tail(gateway.log), tail(cloud.log))

    def online() -> bool | None:
        view = page.state()
        return None if view is None else view["online"]

    try:
        enroll(config, make_claim(database, "B-KIOSK", "Kiosk branch", kind="kiosk"), UID)
        ring = load_identity(tmp_path / "gateway").keyring()
        with database.sessions() as session:
            device = session.scalars(select(Device).where(Device.uid == UID)).one()
            kiosk = (device.id, device.branch_id)
        assert device.kind == "kiosk" and kiosk[1] is not None

        def waiting_events() -> list[tuple[str, str]]:
            """The kiosk events sealed in the kiosk's queue, not yet acknowledged."""
            return [
                (batch.KIOSK_KINDS[event.kind], event.detail)
                for envelope in queued_envelopes(queue)
                for event in kiosk_events_of(envelope, ring, UID)
            ]

        gateway.start()
        wait_until(lambda: online() is True, "the kiosk page, connected", why)

        # A walk-in: a ticket, then a service request.
        first = page.act("ticket")
        assert (first["screen"], first["checked_in"], first["online"]) == ("ticket", False, True)
        assert page.act("back")["screen"] == "welcome"
        services = page.act("services")["services"]
        requested = page.act("request", service=1)
        assert (requested["screen"], requested["service"]) == ("requested", services[1])
        page.act("done")
        walk_in = [
            ("ticket", first["ticket"], None, *kiosk),
            ("request", services[1], None, *kiosk),
        ]
        wait_until(lambda: len(stored(database)) >= 2, "the walk-in's events stored", why)
        wait_until(lambda: not waiting_events(), "the kiosk's queue acknowledged", why)
        assert stored(database) == walk_in, why()

        # The cloud goes down: the page says so, and the next ticket is saved on the kiosk.
        cloud.stop()
        wait_until(lambda: online() is False, "the kiosk page, offline", why)
        second = page.act("ticket")
        assert (second["screen"], second["online"]) == ("ticket", False)
        assert second["waiting"] >= 1, second  # sealed in the queue, waiting for the cloud
        assert waiting_events() == [("ticket", second["ticket"])], why()
        assert stored(database) == walk_in  # what the database held when the cloud stopped
        page.act("back")

        # Back up: the saved ticket arrives once, and the queue empties.
        cloud.start()
        wait_until(lambda: len(stored(database)) >= 3, "the saved ticket stored", why)
        wait_until(lambda: not waiting_events(), "the kiosk's queue acknowledged again", why)
        wait_until(lambda: online() is True, "the kiosk page, connected again", why)
        assert stored(database) == [*walk_in, ("ticket", second["ticket"], None, *kiosk)], why()
        prefix = first["ticket"].rstrip("0123456789")
        numbers = [int(ticket[len(prefix) :]) for ticket in (first["ticket"], second["ticket"])]
        assert second["ticket"].startswith(prefix) and numbers[1] == numbers[0] + 1, numbers
        assert gateway.stop() == 0, why()
    finally:
        if gateway.alive():
            gateway.kill()
        database.dispose()
