"""``hw.ports``: the ports tests hand to servers that bind later.

Two xdist workers must never be handed the same port, and no outgoing connection may take
one before its server binds it (those draw their local ports from the ephemeral range).
"""

from __future__ import annotations

import socket
from contextlib import closing
from pathlib import Path

import pytest

from hw import ports

POOL = range(20000, 32000)


def test_each_of_four_workers_gets_a_quarter_of_the_pool_and_none_overlap() -> None:
    slices = [ports.worker_slice(POOL, "gw%d" % n, "4") for n in range(4)]
    assert slices == [
        range(20000, 23000),
        range(23000, 26000),
        range(26000, 29000),
        range(29000, 32000),
    ]


def test_outside_xdist_the_whole_pool_is_used() -> None:
    assert ports.worker_slice(POOL, None, None) == POOL
    assert ports.worker_slice(POOL, "master", None) == POOL


def test_ports_come_from_this_workers_slice_below_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    mine = ports.worker_slice(ports._pool(), "gw2", "4")
    handed = [ports.free_port() for _ in range(50)]
    handed += [ports.free_port(kind=socket.SOCK_DGRAM) for _ in range(50)]
    assert len(set(handed)) == len(handed)  # never the same port twice
    assert all(port in mine and port < ephemeral_low for port in handed)


def test_a_port_handed_out_can_be_bound_by_its_server() -> None:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        port = ports.free_port(kind=kind)
        with closing(socket.socket(socket.AF_INET, kind)) as server:
            server.bind(("127.0.0.1", port))


def test_a_port_a_server_listens_on_is_never_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setattr(ports, "_given", set())
    with closing(socket.create_server(("127.0.0.1", 0))) as taken:
        port = taken.getsockname()[1]
        monkeypatch.setattr(ports, "_pool", lambda: range(port, port + 1))  # only that one
        with pytest.raises(ports.NoFreePort, match="no free port left in %d-%d" % (port, port)):
            ports.free_port()
