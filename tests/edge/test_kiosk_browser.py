"""The kiosk page in real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium), served by a running gateway runtime.

The gateway runs on its own asyncio loop in a thread, as ``bankiot gateway run`` runs it;
the wearable's frames go in through the runtime (``on_heard``) on that loop. The browser
sees only what the page shows. A screenshot of every screen is saved under the test's tmp
folder. One browser for the module.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from edge.kiosk.model import Offer
from edge.uplink_mqtt import up_topic
from tests.edge.kiosk_support import PRESS, WEARABLE_ADDRESS, Branch, describe, kiosk_events_of
from tests.edge.waiting import LIMIT_S
from tests.support.environment import free_port, wait_for_port
from tests.support.mosquitto import MosquittoBroker

OFFER = Offer("Travel card", "No fees abroad for a year")
T = TypeVar("T")


class Offers:
    async def offers_for(self, wearable: bytes) -> Sequence[Offer] | None:
        return [OFFER]


class Live:
    """A gateway runtime with its kiosk, running on a loop in its own thread."""

    def __init__(self, make: Callable[[], Branch]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.branch = self.call(make)  # SQLite is opened on the loop's thread
        self.stop = self.call(asyncio.Event)
        self.task: Future[int] = asyncio.run_coroutine_threadsafe(
            self.branch.runtime.run(self.stop), self.loop
        )

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` run on the gateway's loop (the engine is not thread-safe)."""

        async def call() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(LIMIT_S)

    def close(self) -> int:
        self.loop.call_soon_threadsafe(self.stop.set)
        try:
            return self.task.result(LIMIT_S)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(LIMIT_S)


class Page:
    """The kiosk page in the browser, with a screenshot of each screen it reaches."""

    def __init__(self, driver: Any, port: int, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        shots.mkdir(exist_ok=True)
        # The module's browser may still show the previous test's page, polling a server that
        # is gone: leave it first, then start this test's console log empty.
        driver.get("about:blank")
        driver.get_log("browser")
        assert wait_for_port("127.0.0.1", port, LIMIT_S), "the kiosk page never listened"
        driver.get("http://127.0.0.1:%d/" % port)

    def wait(self, screen: str) -> None:
        def there(driver: Any) -> bool:
            return driver.find_element(By.TAG_NAME, "body").get_attribute("data-screen") == screen

        WebDriverWait(self.driver, LIMIT_S).until(there, "screen %s never came" % screen)
        self.driver.save_screenshot(str(self.shots / ("%s.png" % screen)))

    def visible(self, element_id: str) -> bool:
        return self.driver.find_element(By.ID, element_id).is_displayed()

    def wait_visible(self, element_id: str) -> None:
        WebDriverWait(self.driver, LIMIT_S).until(
            lambda _driver: self.visible(element_id), "%s never showed" % element_id
        )

    def press(self, screen: str, label: str) -> None:
        """Touch the button labelled ``label`` on ``screen``."""
        section = self.driver.find_element(By.ID, "screen-" + screen)
        for button in section.find_elements(By.TAG_NAME, "button"):
            if button.text == label:
                button.click()
                return
        raise AssertionError("no button %r on the %s screen" % (label, screen))

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def console_errors(self) -> list[dict[str, Any]]:
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_check_in_ticket_service_and_offers_only_after_asking(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    live = Live(lambda: Branch(tmp_path / "gateway", "gw-kiosk-web", port, offers=Offers()))
    try:
        page = Page(browser, port, tmp_path / "screens")
        page.wait("welcome")
        assert page.visible("status-offline")  # no uplink at all: the page says so
        live.call(live.branch.come_near)
        page.wait("near")
        assert "press its button" in page.text().lower()
        live.call(lambda: live.branch.hear(PRESS))
        page.wait("checked_in")
        source = browser.page_source
        assert OFFER.title not in source  # not even hidden in the page before asking
        assert WEARABLE_ADDRESS.hex() not in source.lower() and "A4:C1" not in source

        page.press("checked_in", "Take a ticket")
        page.wait("ticket")
        assert browser.find_element(By.ID, "ticket-number").text == "A001"
        page.press("ticket", "Back")
        page.wait("checked_in")
        page.press("checked_in", "Request a service")
        page.wait("services")
        page.press("services", "Cards")
        page.wait("requested")
        assert browser.find_element(By.ID, "requested-service").text == "Cards"
        page.press("requested", "Back")
        page.wait("checked_in")
        assert OFFER.title not in browser.page_source

        page.press("checked_in", "Show my offers")
        page.wait("offers")
        assert OFFER.title in page.text() and OFFER.text in page.text()
        page.press("offers", "Done")
        page.wait("near")  # the wearable is still near; the session is over
        assert OFFER.title not in browser.page_source
        assert page.console_errors() == []
    finally:
        assert live.close() == 0
    shots = sorted(p.name for p in (tmp_path / "screens").iterdir())
    assert shots == [
        "checked_in.png",
        "near.png",
        "offers.png",
        "requested.png",
        "services.png",
        "ticket.png",
        "welcome.png",
    ]


@pytest.mark.mosquitto
def test_offline_events_wait_in_the_queue_and_leave_when_the_broker_is_back(
    browser: Any, tmp_path: Path, mosquitto_factory: Callable[..., MosquittoBroker]
) -> None:
    broker = mosquitto_factory()
    broker.stop()  # the branch's network is down: nothing listens on the broker's port
    uid = "gw-kiosk-off-%s" % uuid.uuid4().hex[:6]
    port = free_port()

    live = Live(lambda: Branch(tmp_path / "gateway", uid, port).use_mqtt(broker.host, broker.port))
    try:
        page = Page(browser, port, tmp_path / "screens")
        page.wait("welcome")
        page.wait_visible("status-offline")
        assert "will be sent when the connection is back" in page.text()
        live.call(live.branch.come_near)
        live.call(lambda: live.branch.hear(PRESS))
        page.wait("checked_in")
        page.press("checked_in", "Take a ticket")
        page.wait("ticket")
        ticket = browser.find_element(By.ID, "ticket-number").text
        assert ticket == "A001"
        address = WEARABLE_ADDRESS.hex()
        queued = live.call(live.branch.kiosk_events)
        assert [(e[0], e[2], e[3]) for e in queued] == [
            ("checkin", address, ""),
            ("ticket", address, ticket),
        ]

        broker.start()  # the network is back
        published = asyncio.run(kiosk_events_published(broker, live.branch))
        assert [(e[0], e[2], e[3]) for e in published] == [
            ("checkin", address, ""),
            ("ticket", address, ticket),
        ]
        assert [e[1] for e in published] == [e[1] for e in queued]
        page.wait_visible("status-online")
        assert page.console_errors() == []
    finally:
        assert live.close() == 0


async def kiosk_events_published(
    broker: MosquittoBroker, branch: Branch
) -> list[tuple[str, int, str | None, str]]:
    """The kiosk events in the batches the gateway publishes, opened with the core, until
    both are seen (no cloud acknowledges them, so the gateway sends them again until
    then: a subscriber that connects late still sees them)."""
    seen: dict[int, tuple[str, int, str | None, str]] = {}
    async with aiomqtt.Client(broker.host, broker.port, identifier="kiosk-watch") as client:
        await client.subscribe(up_topic(branch.uid), qos=1)
        async with asyncio.timeout(LIMIT_S):
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                for event in kiosk_events_of(payload, branch.ring, branch.uid):
                    seen[event.id] = describe(event)
                if len(seen) >= 2:
                    break
    return [seen[key] for key in sorted(seen)]
