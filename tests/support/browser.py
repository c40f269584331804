"""Real headless Chromium for the browser tests (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium): one place that starts it the same way for the
kiosk page, the customer pages and the dashboards.

The browser's console is recorded (``goog:loggingPrefs``), so a test can assert that a
page logged no error (``console_errors``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.environment import unavailable

T = TypeVar("T")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# What ChromeDriver says when a page's script replaced the element between find and use,
# besides StaleElementReferenceException (seen in CI on a live region's poll).
_SWAPPED = "does not belong to the document"


def chromium(profile: Path, *, window: str = "1280,900", downloads: Path | None = None) -> Any:
    """A headless Chromium with its profile in ``profile`` and a ``window`` (``"w,h"``);
    files it downloads go to ``downloads`` when given. The caller quits it."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        unavailable("chromium and chromium-driver are not installed (apt-get install both)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=%s" % window,
        "--user-data-dir=%s" % profile,
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    if downloads is not None:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    return driver


@contextmanager
def running_chromium(
    profile: Path, *, window: str = "1280,900", downloads: Path | None = None
) -> Iterator[Any]:
    """``chromium`` for the length of a ``with`` block (a browser test's fixture); quit
    after it, however it ends."""
    driver = chromium(profile, window=window, downloads=downloads)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The browser console's errors since the last call (reading the log empties it)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _swapped(exc: WebDriverException) -> bool:
    """Whether ``exc`` says the element was replaced by the page meanwhile."""
    return isinstance(exc, StaleElementReferenceException) or _SWAPPED in (exc.msg or "")


def on_fresh_element(action: Callable[[], T], what: str, attempts: int = 10) -> T:
    """``action()`` (find an element and use it), done again while a live update replaces
    the element between the find and the use; AssertionError naming ``what`` if it keeps
    being replaced."""
    for _ in range(attempts):
        try:
            return action()
        except WebDriverException as exc:
            if not _swapped(exc):
                raise
    raise AssertionError("%s kept being replaced" % what)


def to_next_page(driver: Any, click: Callable[[], object], limit_s: float = 60.0) -> None:
    """``click()`` (a link or a form's button) and wait until the page it leads to replaced
    this one. ChromeDriver waits after a click only for a navigation already begun when the
    click returns; a form's submission can begin just after, and the next find would read
    the old page (seen in CI: the sign-in page's link looked for before it had gone)."""
    old = driver.find_element(By.TAG_NAME, "html")
    click()

    def gone(_driver: Any) -> bool:
        # Selenium's staleness_of knows only StaleElementReferenceException; ChromeDriver
        # may say the same as "does not belong to the document" (seen in CI): both mean gone.
        try:
            old.is_enabled()
        except WebDriverException as exc:
            if _swapped(exc):
                return True
            raise
        return False

    WebDriverWait(driver, limit_s).until(gone, "no new page after the click")
