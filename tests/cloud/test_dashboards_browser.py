"""The dashboards in real headless Chromium (``tests.support.browser``), served by the
cloud app on a real HTTP server, with the gateways' data arriving as sealed batches
through the real ingest.

Operations sign in, look at the fleet, open a gateway (its health and the sensors it hears
as charts), send it a command and start a rollout; a branch manager opens the branch page
and sees a customer's kiosk check-in appear without reloading and its queue ticket (made
by the event worker) in the service requests, declines a referred loan from the review
queue and closes the ticket, then opens the customer's page (profile, life events,
applications' decisions, life events over time, the inbox) and the analytics; operations
open the analytics' life events (per kind, and per month in a chart), the offers funnels
and segments. Every page must load with no error in the browser's console. A screenshot of
every page is saved; the folder is printed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from bankiot_core.address import mac_from_str
from bankiot_core.batch import BatchReading, Health
from cloud.apps.models import LoanApplication
from cloud.db import database
from cloud.events.library import RuleLibrary
from cloud.events.models import ServiceRequest
from cloud.events.worker import EventWorker
from cloud.fleet.control_models import Command
from cloud.fleet.rollout_models import Rollout
from tests.cloud.dashboard_actions import Branch, add_customer, ready_release
from tests.cloud.fleet_actions import add_branches, add_devices, served_app
from tests.cloud.people_actions import PASSWORD, add_operator
from tests.cloud.release_actions import Releases, releases_app
from tests.cloud.test_analytics_api import import_for
from tests.cloud.test_dashboards_apps import apply_for_loan
from tests.cloud.test_dashboards_history import episode, send_app_campaign
from tests.support.browser import (
    console_errors,
    on_fresh_element,
    running_chromium,
    to_next_page,
)

LIMIT_S = 60.0  # a bound on waiting for the page under load, not a measurement
ALICE = "C0:FF:EE:00:00:0A"
BOB = "C0:FF:EE:00:00:0B"
SENSOR = "A4:C1:38:00:00:01"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with running_chromium(tmp_path / "chromium-profile", window="1280,1000") as driver:
        yield driver


@pytest.fixture
def rel(migrated_sqlite_url: Any, tmp_path: Path) -> Iterator[Releases]:
    releases = releases_app(migrated_sqlite_url, tmp_path)
    releases.app.config["DASHBOARD_POLL_MS"] = 300  # live updates come quickly in the test
    yield releases
    releases.app.extensions["bankiot.db"].dispose()


class Pages:
    """The browser on the dashboards: screenshots of each page, console errors gathered."""

    def __init__(self, driver: Any, base: str, shots: Path) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots
        self.errors: list[dict[str, Any]] = []
        shots.mkdir(exist_ok=True)
        print("dashboard screenshots: %s" % shots)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / ("%s.png" % name)))
        self.errors += console_errors(self.driver)

    def click(self, element_id: str) -> None:
        """Click a link or a form's button, and wait until the next page replaced this one."""
        # a live region may be swapped between find and click: find it again
        to_next_page(
            self.driver,
            lambda: on_fresh_element(
                lambda: self.driver.find_element(By.ID, element_id).click(), element_id
            ),
            LIMIT_S,
        )

    def text(self, element_id: str) -> str:
        """The element's text; read again if a live update swapped the element meanwhile."""
        return on_fresh_element(
            lambda: self.driver.find_element(By.ID, element_id).text, element_id
        )

    def sign_in(self, name: str) -> None:
        self.driver.find_element(By.ID, "name").send_keys(name)
        self.driver.find_element(By.ID, "password").send_keys(PASSWORD)
        self.click("submit")

    def wait_for(self, element_id: str) -> Any:
        return WebDriverWait(self.driver, LIMIT_S).until(
            lambda driver: driver.find_elements(By.ID, element_id),
            "%s never appeared" % element_id,
        )[0]


def plant_gateway_data(rel: Releases) -> Branch:
    """Health reports and sensor readings from gw-n1, through the real ingest."""
    branch = Branch(rel.app, "gw-n1", "kiosk-n1")
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    sensor = mac_from_str(SENSOR)
    for minute in range(30, -1, -5):
        at = now_ms - minute * 60_000
        counters = {"depth": minute // 5, "free_heap": 90_000 + minute * 100, "rssi": -60}
        readings = [
            BatchReading(sensor, at, "temperature", 21.0 + minute / 10, "°C"),
            BatchReading(sensor, at, "humidity", 40 + minute // 5, "%"),
        ]
        branch.send("gw-n1", [Health(at, counters), *readings])
    return branch


def test_operations_and_a_branch_manager_use_the_dashboards(
    browser: Any, rel: Releases, tmp_path: Path
) -> None:
    north = add_branches(rel.app, "north")["north"]
    gateway, _kiosk = add_devices(
        rel.app,
        {
            "uid": "gw-n1",
            "name": "Hall gateway",
            "branch_id": north,
            "model": "esp32",
            "status": "active",
            "firmware_version": "1.4.0",
        },
        {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": north, "status": "active"},
    )
    add_operator(rel.app, "ops", "operations")
    add_operator(rel.app, "maria", "branch_manager", ("north",))
    alice = add_customer(rel.app, "alice@example.com", ALICE, north, ("presence_branch",))
    bob = add_customer(rel.app, "bob@example.com", BOB, north, ("presence_branch",))
    import_for(rel.app, alice, range(1, 12))  # a stored profile with a life event
    send_app_campaign(rel.app, alice)  # an offer in alice's inbox
    with rel.app.app_context(), database().sessions() as db:  # found this month: charted
        today = dt.date.today()
        db.add(episode(bob, "relocation", today, today, 0.7, [], found=dt.datetime.now(dt.UTC)))
        db.commit()
    loan = apply_for_loan(rel.app, bob, north, "a van")  # no bank history: referred
    release = ready_release(rel)
    branch = plant_gateway_data(rel)
    worker = EventWorker(rel.app.extensions["bankiot.db"], RuleLibrary(None))
    worker.run_once()  # the cursor starts here: the check-in below makes a ticket

    with served_app(rel.app) as base:
        page = Pages(browser, base, tmp_path / "screenshots")
        page.open("/dashboard/fleet")  # not signed in: the sign-in page
        assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
        page.shot("signin")
        page.sign_in("ops")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Fleet"
        assert "Hall gateway" in page.text("fleet-table")
        assert page.text("ingest-batches") == "7"
        page.shot("fleet")

        page.click("device-gw-n1")
        assert page.text("device-title") == "Hall gateway"
        charts = browser.find_elements(By.CSS_SELECTOR, "#device-health svg.chart polyline")
        assert len(charts) == 3  # queue depth, free memory, signal
        readings = page.text("device-readings")
        assert "temperature (°C)" in readings and "humidity (%)" in readings
        page.shot("device")

        Select(browser.find_element(By.ID, "command-name")).select_by_value("reboot")
        page.click("send-command")
        assert page.text("notice").startswith("Command sent")
        page.click("start-rollout")
        assert page.text("notice").startswith("Rollout")
        assert "update" in page.text("device-commands")  # the canary's update command
        page.shot("device-after-actions")

        page.click("signout")
        page.sign_in("maria")
        page.open("/dashboard/branches/%d" % north)
        assert page.text("count-checkin") == "0"
        page.wait_for("no-events")
        page.shot("branch-before")
        branch.presence("gw-n1", ALICE, "enter")  # sealed batches through ingest, page open
        branch.check_in("kiosk-n1", ALICE)
        page.wait_for("event-1")
        row = page.text("event-1")
        assert "checkin" in row and ALICE in row
        assert page.text("count-checkin") == "1"
        page.wait_for("present-list")
        assert "alice@example.com" in page.text("present-list")
        worker.run_once()
        with rel.app.app_context(), database().sessions() as db:
            ticket = db.scalars(select(ServiceRequest.id)).one()
        page.wait_for("close-%d" % ticket)  # the ticket appears without reloading
        assert "a van" in page.text("review-%d" % loan)
        page.shot("branch-live-checkin")

        browser.find_element(By.ID, "review-reason-%d" % loan).send_keys("payslips missing")
        page.click("decline-%d" % loan)
        assert page.text("notice") == "Loan application %d decided." % loan
        page.wait_for("no-loan-reviews")
        page.click("close-%d" % ticket)
        assert page.text("notice") == "Service request %d closed." % ticket
        assert "by operator:maria" in page.text("request-%d" % ticket)
        page.shot("branch-after-review")

        page.open("/dashboard/customers/%d" % alice)
        assert page.text("customer-title") == "alice@example.com"
        assert "kiosk checkin" in page.text("customer-events")
        assert page.text("profile-segment") == "saver"
        assert "NEWCO AG" in page.text("customer-life-events")
        assert "job_change" in page.text("customer-life-event-history")
        assert "ongoing" in page.text("customer-life-event-history")
        assert page.text("inbox-count") == "1" and "Savings boost" in page.text(
            "customer-inbox-latest"
        )
        page.shot("customer")
        page.open("/dashboard/customers/%d" % bob)
        assert "payslips missing" in page.text("customer-app-decisions")
        assert "declined by operator:maria" in page.text("loan-%d" % loan)
        page.shot("customer-loan")
        page.open("/dashboard/analytics")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Analytics"
        page.shot("analytics")
        page.open("/dashboard/fleet")
        page.shot("fleet-maria")

        page.click("signout")
        page.sign_in("ops")
        page.open("/dashboard/analytics")
        assert "job_change" in page.text("life-events")
        assert "saver" in page.text("segments")
        assert browser.find_elements(By.CSS_SELECTOR, "#segments-chart svg.chart")
        per_month = "#life-events-per-month svg.chart rect title"
        assert page.wait_for("life-events-per-month") and browser.find_elements(
            By.CSS_SELECTOR, per_month
        )
        assert "relocation" in page.text("life-events-per-month")  # the chart's legend
        assert page.wait_for("inbox-funnel") and page.text("inbox-declined") == "0"
        assert page.wait_for("offers-not-available")  # no kiosk offer had a result
        page.shot("analytics-ops")

    assert page.errors == []
    shots = sorted(p.name for p in (tmp_path / "screenshots").iterdir())
    assert len(shots) == 12
    with rel.app.app_context(), database().sessions() as db:
        names = sorted(db.scalars(select(Command.name).where(Command.device_id == gateway)))
        assert names == ["reboot", "update"]
        rollout = db.scalars(select(Rollout)).one()
        assert rollout.release_id == release and rollout.created_by == "operator:ops"
        decided = db.get(LoanApplication, loan)
        assert decided is not None and decided.review == "declined"


def test_a_page_being_left_stops_asking_for_updates(
    browser: Any, rel: Releases, tmp_path: Path
) -> None:
    """A form sent (Sign out) stops the page's live polling at once: a poll the server
    answered after the session ended would come back 401 to a page that is going away (it
    did, in CI, as a console error)."""
    add_operator(rel.app, "ops", "operations")
    polls: list[str] = []
    inner = rel.app.wsgi_app

    def counting(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"].endswith("/live"):
            polls.append(environ["PATH_INFO"])
        return inner(environ, start)

    rel.app.wsgi_app = counting  # type: ignore[method-assign]
    with served_app(rel.app) as base:
        page = Pages(browser, base, tmp_path / "screenshots")
        page.open("/dashboard/fleet")
        page.sign_in("ops")
        WebDriverWait(browser, LIMIT_S).until(lambda _: len(polls) >= 2, "the page never polled")
        # the submit event the Sign out button sends, without the navigation that follows
        browser.execute_script(
            "document.getElementById('signout').form.dispatchEvent("
            "new Event('submit', {bubbles: true, cancelable: true}))"
        )
        seen = len(polls)
        time.sleep(10 * 0.3)  # ten poll periods (DASHBOARD_POLL_MS is 300 here)
        assert len(polls) <= seen + 1  # at most the one already on its way
        page.click("signout")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
        page.shot("signed-out")
    assert page.errors == []
