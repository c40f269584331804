"""The customer's inbox in real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium), served by the cloud app on a real HTTP server.

Anna, signed in, has the inbox open; cloud operations send an app campaign; the offer
appears without a reload (the page's script polls the inbox's JSON), the menu's unread
count with it; she accepts it with one click, and the campaign's results count it. The page
logs no error. A screenshot of each step is saved under the test's tmp folder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cloud.offers import campaigns
from tests.cloud.customer_actions import PASSWORD, database_of, sent_app_campaign
from tests.cloud.dashboard_actions import add_customer
from tests.cloud.fleet_actions import add_branches, served_app
from tests.support.browser import console_errors, running_chromium, to_next_page

TEXT = "No fees abroad for a year"
LIMIT_S = 60.0  # a bound on waiting for the page under load, not a measurement


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with running_chromium(tmp_path / "chromium-profile", window="1024,900") as driver:
        yield driver


@pytest.fixture
def app(sqlite_app: APIFlask) -> APIFlask:
    sqlite_app.config["CUSTOMER_POLL_MS"] = 300  # live updates come quickly in the test
    return sqlite_app


def send_campaign(app: APIFlask) -> int:
    """An active app campaign for everyone, sent now by cloud operations; its id."""
    with database_of(app).sessions() as session:
        campaign = sent_app_campaign(session, dt.datetime.now(dt.UTC), text=TEXT)
        session.commit()
        return campaign


def test_a_new_offer_appears_without_reload_and_is_accepted(
    browser: Any, app: APIFlask, tmp_path: Path
) -> None:
    ids = add_branches(app, "north")
    add_customer(
        app, "anna@example.com", "C0:FF:EE:00:00:0A", ids["north"], ("presence_branch", "offers")
    )
    shots = tmp_path / "shots"
    shots.mkdir()
    wait = WebDriverWait(browser, LIMIT_S)
    with served_app(app) as base:
        browser.get(base + "/customer/signin")
        browser.find_element(By.ID, "email").send_keys("anna@example.com")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        to_next_page(browser, browser.find_element(By.ID, "submit").click, LIMIT_S)
        to_next_page(browser, browser.find_element(By.ID, "to-notifications").click, LIMIT_S)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Notifications"
        assert browser.find_element(By.ID, "empty").is_displayed()
        assert not browser.find_element(By.ID, "unread-badge").is_displayed()
        browser.execute_script("window.stillTheSamePage = true;")
        browser.save_screenshot(str(shots / "empty.png"))

        campaign = send_campaign(app)
        item = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#notifications li.unread"),
            "the offer did not appear",
        )[0]
        assert browser.execute_script("return window.stillTheSamePage === true;")  # no reload
        assert item.find_element(By.CLASS_NAME, "title").text == "Travel card"
        assert item.find_element(By.CLASS_NAME, "text").text == TEXT
        assert browser.find_element(By.ID, "unread").text == "1"
        wait.until(lambda d: d.find_element(By.ID, "unread-badge").text == "1")
        assert not browser.find_element(By.ID, "empty").is_displayed()
        browser.save_screenshot(str(shots / "arrived.png"))

        to_next_page(browser, item.find_element(By.CLASS_NAME, "accept").click, LIMIT_S)
        answered = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#notifications .answer"),
            "the answer was not shown",
        )[0]
        assert answered.text == "You accepted this offer."
        assert browser.execute_script("return window.stillTheSamePage === undefined;")
        assert browser.find_element(By.ID, "unread").text == "0"
        assert browser.find_elements(By.CLASS_NAME, "accept") == []
        browser.save_screenshot(str(shots / "accepted.png"))
        assert console_errors(browser) == []

    with database_of(app).sessions() as session:
        results = campaigns.results(session, campaign)
    assert results == {"shown": 1, "accepted": 1, "declined": 0, "customers": 1}
