"""Waiting for conditions in asyncio tests, without timed assertions.

``until(condition, what)`` polls ``condition()`` and fails only after ``LIMIT_S``, a limit
far above what any condition needs, so a slow shared machine never fails a test; ``run``
runs a test coroutine with an outer limit, so a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

LIMIT_S = 60.0  # a loaded 2-core CI machine stalls for many seconds; only a hang reaches it
RUN_LIMIT_S = 110.0  # the whole test: below pytest's timeout (120 s), so the hang is named


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``test()`` in a fresh event loop; fail if it takes more than ``RUN_LIMIT_S``."""
    asyncio.run(asyncio.wait_for(test(), RUN_LIMIT_S))


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds; fail after ``LIMIT_S`` naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIMIT_S
    while not condition():
        assert loop.time() < deadline, "still waiting for: " + what
        await asyncio.sleep(0.002)
