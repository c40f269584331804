"""Free ports and temporary folders."""

from __future__ import annotations

import pytest

from tests.support.environment import free_port


@pytest.fixture
def free_tcp_port() -> int:
    """A loopback TCP port that was free when the test started."""
    return free_port()


@pytest.fixture
def free_udp_port() -> int:
    """A loopback UDP port that was free when the test started."""
    import socket

    return free_port(kind=socket.SOCK_DGRAM)
