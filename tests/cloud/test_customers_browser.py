"""The customer pages in real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium), served by the cloud app on a real HTTP server.

A customer signs up, pairs a wearable with the code a kiosk showed (planted as the kiosk
sends it: a sealed batch through the real ingest), sees the consents and withdraws one with
one click; then sees their data, downloads it (a JSON file Chromium saves) and erases it.
The browser sees only the pages; the database is checked afterwards. A screenshot of each
page is saved under the test's tmp folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from selenium.webdriver.common.by import By
from sqlalchemy import func, select

from cloud.customers import consent
from cloud.fleet.bindings_models import WearableBinding
from tests.cloud.customer_actions import KEY_HEX, PASSWORD, WEARABLE, Kiosks, database_of
from tests.cloud.fleet_actions import add_branches, add_devices, served_app
from tests.support.browser import running_chromium, to_next_page

CODE = "7KQ2M9XD"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with running_chromium(
        tmp_path / "chromium-profile", window="1024,900", downloads=downloads
    ) as driver:
        yield driver


class Pages:
    """The customer's browser on the customer pages, with a screenshot of each."""

    def __init__(self, driver: Any, base: str, shots: Path) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots
        shots.mkdir(exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def fill(self, **fields: str) -> None:
        for name, value in fields.items():
            element = self.driver.find_element(By.ID, name)
            element.clear()
            element.send_keys(value)

    def tick(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def submit(self, shot: str) -> None:
        self.follow("submit")
        self.shot(shot)

    def follow(self, element_id: str) -> None:
        """Click the link or button ``element_id`` and wait for the page it leads to."""
        to_next_page(self.driver, self.driver.find_element(By.ID, element_id).click)

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / ("%s.png" % name)))

    def text(self, element_id: str) -> str:
        return self.driver.find_element(By.ID, element_id).text

    def console_errors(self) -> list[dict[str, Any]]:
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_sign_up_pair_with_a_kiosk_code_see_consents_and_withdraw(
    browser: Any, sqlite_app: APIFlask, tmp_path: Path
) -> None:
    ids = add_branches(sqlite_app, "north")
    add_devices(sqlite_app, {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": ids["north"]})
    Kiosks(sqlite_app, "kiosk-n1").show_code("kiosk-n1", CODE)  # a customer pressed "Pair"
    with served_app(sqlite_app) as base:
        page = Pages(browser, base, tmp_path / "shots")
        page.open("/customer/")  # not signed in: the sign-in page
        assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
        page.follow("to-signup")
        page.fill(email="alice@example.com", password=PASSWORD)
        page.submit("signed-up")
        assert page.text("notice") == "Your account is ready."
        assert "No wearable is paired yet" in page.text("none")

        page.open("/customer/pair")
        qr = "bthome:%s;key=%s" % (WEARABLE, KEY_HEX)
        page.fill(code="7kq2-m9xd", wearable=qr)
        page.tick("consent_presence_branch")
        page.tick("consent_activity")
        page.shot("pair-form")
        page.submit("paired")
        assert page.text("notice").startswith("Your wearable is paired.")
        assert WEARABLE in page.text("wearables")

        page.open("/customer/consents")
        page.shot("consents")
        rows = {purpose.name: page.text("consent-" + purpose.name) for purpose in consent.PURPOSES}
        assert "Given" in rows["presence_branch"] and "Given" in rows["activity"]
        assert "Not given" in rows["presence_partner"]
        row = browser.find_element(By.ID, "consent-activity")
        to_next_page(browser, row.find_element(By.CLASS_NAME, "withdraw").click)  # one click
        page.shot("withdrawn")
        assert "Not given" in page.text("consent-activity")
        history = page.text("history")
        assert "withdrawn" in history and "pairing with a kiosk code" in history
        assert page.console_errors() == []

    with database_of(sqlite_app).sessions() as session:
        assert not consent.consented(session, WEARABLE, "activity")
        assert consent.consented(session, WEARABLE, "presence_branch")
        assert session.get(WearableBinding, 1) is not None  # one purpose left: still bound


def downloaded(folder: Path, deadline_s: float = 60.0) -> Path:
    """The one file Chromium finished saving in ``folder`` (waits for it, up to a bound)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        done = [f for f in folder.iterdir() if not f.name.endswith(".crdownload")]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError("no download in %s" % folder)


def test_see_download_and_erase_your_data(
    browser: Any, sqlite_app: APIFlask, tmp_path: Path
) -> None:
    ids = add_branches(sqlite_app, "north")
    add_devices(sqlite_app, {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": ids["north"]})
    Kiosks(sqlite_app, "kiosk-n1").show_code("kiosk-n1", CODE)
    with served_app(sqlite_app) as base:
        page = Pages(browser, base, tmp_path / "shots")
        page.open("/customer/signup")
        page.fill(email="carol@example.com", password=PASSWORD)
        page.submit("signed-up")
        page.open("/customer/pair")
        page.fill(code=CODE, wearable=WEARABLE, bind_key=KEY_HEX)
        page.tick("consent_activity")
        page.submit("paired")

        page.follow("to-data")
        page.shot("data")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Your data"
        assert WEARABLE in page.text("data-wearables")
        assert "carol@example.com" in page.text("account")

        browser.find_element(By.ID, "export").click()
        document = json.loads(downloaded(tmp_path / "downloads").read_text("utf-8"))
        assert document["format"] == "bankiot-customer-data/1"
        assert document["account"]["email"] == "carol@example.com"
        assert [w["address"] for w in document["wearables"]] == [WEARABLE]

        page.fill(password=PASSWORD)
        page.follow("erase")
        page.shot("erase-confirm")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Erase your data?"
        page.follow("confirm-erase")
        page.shot("erased")
        assert "are erased" in page.text("erased")
        assert page.text("receipt").isdigit()
        page.open("/customer/")  # signed out: the sign-in page
        assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
        assert page.console_errors() == []

    with database_of(sqlite_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(WearableBinding)) == 0
