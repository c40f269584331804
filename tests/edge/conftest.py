"""Fixtures the edge tests share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import running_chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for a module of kiosk page tests, at the kiosk's window size."""
    with running_chromium(tmp_path_factory.mktemp("chromium-profile"), window="1280,800") as driver:
        yield driver
