"""How the suite treats a missing service or tool: a failure under CI, a skip elsewhere.

CI sets ``CI=true``; there a missing broker, database or runtime means the machine was not
set up, which must fail the run rather than quietly test less.
"""

from __future__ import annotations

import os
import socket

import pytest

from hw import ports


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where nothing may be skipped."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Stop the current test because a service or tool is missing: fail in CI, else skip."""
    if in_ci():
        pytest.fail("required by the test suite but unavailable: %s" % reason, pytrace=False)
    pytest.skip(reason)


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """Return a port on ``host`` that is free now (TCP by default, UDP with
    ``kind=socket.SOCK_DGRAM``), outside the ephemeral range and never one another xdist
    worker can pick (``hw.ports``): a server started on it later does not find it taken."""
    return ports.free_port(host, kind)


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until a TCP server accepts on ``host:port``; False after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False
