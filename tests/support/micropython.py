"""The ``micropython`` fixture: a runner for real MicroPython (see hw/micropython_runner)."""

from __future__ import annotations

import pytest

from hw.micropython_runner import MicroPythonRunner, MicroPythonUnavailable
from tests.support.environment import unavailable


@pytest.fixture(scope="session")
def micropython() -> MicroPythonRunner:
    """A MicroPython runner with the portable core mounted at /lib."""
    try:
        return MicroPythonRunner()
    except MicroPythonUnavailable as exc:
        unavailable(str(exc))
        raise
