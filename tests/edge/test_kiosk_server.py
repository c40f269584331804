"""``edge.kiosk`` over HTTP: the page's API on a real aiohttp server, with the real engine.

Radio frames go into the gateway runtime (``on_heard``) and through the engine's filters
to the kiosk (``engine.observer``); what the kiosk queues is read back from the SQLite
queue by opening the sealed batches with the core, as the cloud would.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from edge.kiosk.model import Offer
from edge.kiosk.server import make_app
from edge.kiosk.sources import NoPairingCodes
from tests.edge.kiosk_support import PRESS, Branch
from tests.edge.waiting import run
from tests.support.environment import free_port

UID = "gw-kiosk-api"
ALICE = "a4c138000001"


class Clock:
    """The engine's milliseconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


class Offers:
    """An offers source that records who it was asked about."""

    def __init__(self) -> None:
        self.asked: list[bytes] = []

    async def offers_for(self, wearable: bytes) -> Sequence[Offer] | None:
        self.asked.append(wearable)
        return [Offer("Travel card", "No fees abroad for a year")]


class Broken:
    """An offers source whose cloud is unreachable."""

    async def offers_for(self, wearable: bytes) -> Sequence[Offer] | None:
        raise ConnectionRefusedError(111, "Connection refused")


class Codes:
    async def pairing_code(self) -> str | None:
        return "482 913"


async def client_for(branch: Branch) -> TestClient:
    page = branch.page
    app = make_app(page.kiosk, page.host, page.port)
    client = TestClient(TestServer(app, host=page.host, port=page.port))
    await client.start_server()
    return client


async def act(client: TestClient, action: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/action", json={"action": action, **extra})
    return response.status, await response.json()


def test_a_customer_checks_in_takes_a_ticket_asks_for_a_service_and_sees_offers(
    tmp_path: Path,
) -> None:
    offers = Offers()
    branch = Branch(tmp_path, UID, free_port(), clock=Clock(), offers=offers)

    async def test() -> None:
        client = await client_for(branch)
        try:
            state = await (await client.get("/api/state")).json()
            assert state == {
                "screen": "welcome",
                "checked_in": False,
                "online": False,
                "waiting": 0,
            }
            branch.come_near()
            assert (await (await client.get("/api/state")).json())["screen"] == "near"
            branch.hear(PRESS)
            state = await (await client.get("/api/state")).json()
            assert state["screen"] == "checked_in" and state["checked_in"]
            assert offers.asked == []  # nothing fetched about anyone before they ask
            assert await act(client, "ticket") == (
                200,
                {
                    "screen": "ticket",
                    "checked_in": True,
                    "ticket": "A001",
                    "online": False,
                    "waiting": state["waiting"] + 1,  # the ticket, sealed in the queue
                },
            )
            status, view = await act(client, "back")
            assert status == 200 and view["screen"] == "checked_in" and "ticket" not in view
            await act(client, "services")
            status, view = await act(client, "request", service=1)
            assert (status, view["screen"], view["service"]) == (200, "requested", "Cards")
            await act(client, "back")
            status, view = await act(client, "offers")
            assert view["offers"] == [
                {"title": "Travel card", "text": "No fees abroad for a year", "answer": None}
            ]
            assert offers.asked == [bytes.fromhex(ALICE)]
            status, view = await act(client, "done")
            assert "offers" not in view and view["screen"] == "near"
        finally:
            await client.close()

    run(test)
    assert branch.kiosk_events() == [
        ("checkin", 0, ALICE, ""),
        ("ticket", 1, ALICE, "A001"),
        ("request", 2, ALICE, "Cards"),
    ]
    branch.runtime.engine.queue.close()


def test_tickets_and_event_ids_continue_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    first = Branch(tmp_path, UID, port)

    async def take_ticket(branch: Branch) -> dict[str, Any]:
        client = await client_for(branch)
        try:
            status, view = await act(client, "ticket")
            assert status == 200
            return view
        finally:
            await client.close()

    async def before() -> None:
        assert (await take_ticket(first))["ticket"] == "A001"

    run(before)
    first.runtime.engine.queue.close()  # the process ends (no orderly stop needed)

    second = Branch(tmp_path, UID, port)

    async def after() -> None:
        assert (await take_ticket(second))["ticket"] == "A002"

    run(after)
    events = second.kiosk_events()
    assert [e[3] for e in events] == ["A001", "A002"]
    assert events[0][1] < events[1][1]  # ids reserved ahead: never reused across a restart
    second.runtime.engine.queue.close()


def test_the_pairing_screen_and_the_not_available_defaults(tmp_path: Path) -> None:
    plain = Branch(tmp_path / "plain", UID, free_port(), clock=Clock(), pairing=NoPairingCodes())
    coded = Branch(tmp_path / "coded", UID, free_port(), pairing=Codes())

    async def test() -> None:
        for branch, code in ((plain, None), (coded, "482 913")):
            client = await client_for(branch)
            try:
                status, view = await act(client, "pairing")
                assert (status, view["screen"], view["pairing_code"]) == (200, "pairing", code)
            finally:
                await client.close()
        client = await client_for(plain)
        try:
            await act(client, "back")
            plain.come_near()
            plain.hear(PRESS)
            status, view = await act(client, "offers")
            assert (status, view["offers_available"], view["offers"]) == (200, False, [])
        finally:
            await client.close()

    run(test)
    plain.runtime.engine.queue.close()
    coded.runtime.engine.queue.close()


def test_a_failing_offers_source_means_not_available(tmp_path: Path) -> None:
    branch = Branch(tmp_path, UID, free_port(), offers=Broken())

    async def test() -> None:
        client = await client_for(branch)
        try:
            branch.come_near()
            branch.hear(PRESS)
            status, view = await act(client, "offers")
            assert (status, view["screen"], view["offers_available"]) == (200, "offers", False)
        finally:
            await client.close()

    run(test)
    branch.runtime.engine.queue.close()


def test_the_idle_timeout_returns_to_welcome_without_a_touch(tmp_path: Path) -> None:
    clock = Clock()
    branch = Branch(tmp_path, UID, free_port(), clock=clock)

    async def test() -> None:
        client = await client_for(branch)
        try:
            await act(client, "services")
            clock.now += 59_999
            assert (await (await client.get("/api/state")).json())["screen"] == "services"
            clock.now += 1
            assert (await (await client.get("/api/state")).json())["screen"] == "welcome"
        finally:
            await client.close()

    run(test)
    branch.runtime.engine.queue.close()


def test_the_api_refuses_what_it_should_and_says_why(tmp_path: Path) -> None:
    branch = Branch(tmp_path, UID, free_port())

    async def test() -> None:
        client = await client_for(branch)
        try:
            page = await client.get("/")
            assert page.status == 200 and "kiosk.js" in await page.text()
            policy = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "default-src 'none'" in policy
            assert page.headers["Cache-Control"] == "no-store"
            for asset, kind in (("/kiosk.js", "text/javascript"), ("/kiosk.css", "text/css")):
                response = await client.get(asset)
                assert response.status == 200 and response.content_type == kind
            assert (await client.get("/nothing-here")).status == 404

            # Another host name (a DNS-rebinding page) gets nothing.
            response = await client.get("/api/state", headers={"Host": "evil.example:80"})
            assert response.status == 421
            # A cross-site form cannot send JSON.
            response = await client.post("/api/action", data={"action": "ticket"})
            assert response.status == 415
            response = await client.post(
                "/api/action", data="[1]", headers={"Content-Type": "application/json"}
            )
            assert response.status == 400 and "action" in (await response.json())["error"]
            response = await client.post("/api/action", json={"action": "request", "service": "1"})
            assert response.status == 400
            status, body = await act(client, "done")
            assert status == 409 and body["error"] == "done is not possible on the welcome screen"
            assert body["view"]["screen"] == "welcome"
            status, body = await act(client, "offers")
            assert status == 409 and "checked-in" in body["error"]
            status, body = await act(client, "x" * 5000)
            assert status in (400, 413)  # over the body limit, or an unknown action
        finally:
            await client.close()

    run(test)
    assert branch.kiosk_events() == []  # nothing refused was queued
    branch.runtime.engine.queue.close()


def test_the_page_names_no_external_resource() -> None:
    from edge.kiosk import server

    for name, _kind in server.FILES.values():
        text = (server.PAGE_DIR / name).read_text()
        assert "http://" not in text and "https://" not in text and "//" + "cdn" not in text
    assert json.dumps(server.HEADERS)  # headers are plain strings
