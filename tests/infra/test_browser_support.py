"""``tests.support.browser.to_next_page`` without a browser: the old page counts as gone
whichever way ChromeDriver says so, and waiting still fails when it stays."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)

from tests.support.browser import to_next_page


class Page:
    """An html element that is there until ``clicked``, then says ``gone_with``."""

    def __init__(self, gone_with: WebDriverException | None) -> None:
        self.gone_with = gone_with
        self.clicked = False

    def is_enabled(self) -> bool:
        if self.clicked and self.gone_with is not None:
            raise self.gone_with
        return True


class Driver:
    def __init__(self, page: Page) -> None:
        self.page = page

    def find_element(self, *_locator: Any) -> Page:
        return self.page


@pytest.mark.parametrize(
    "gone_with",
    [
        StaleElementReferenceException("stale element reference"),
        WebDriverException(
            'unknown error: unhandled inspector error: {"code":-32000,"message":'
            '"Node with given id does not belong to the document"}'
        ),
    ],
)
def test_the_old_page_is_gone_however_chromedriver_says_it(gone_with: Any) -> None:
    page = Page(gone_with)
    to_next_page(Driver(page), lambda: setattr(page, "clicked", True), limit_s=5.0)
    assert page.clicked


def test_another_error_is_not_taken_for_a_new_page() -> None:
    page = Page(WebDriverException("chrome not reachable"))
    with pytest.raises(WebDriverException, match="chrome not reachable"):
        to_next_page(Driver(page), lambda: setattr(page, "clicked", True), limit_s=5.0)


def test_a_page_that_stays_is_a_timeout() -> None:
    page = Page(None)
    with pytest.raises(TimeoutException, match="no new page"):
        to_next_page(Driver(page), lambda: setattr(page, "clicked", True), limit_s=0.5)
