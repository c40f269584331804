"""Loopback ports for servers that bind later (a child process, a broker being started).

Asking the kernel for port 0 and closing the socket hands out a port from the ephemeral
range, which every outgoing connection on the machine draws its local port from too; the
port can be taken (by a client's connect, or by a parallel test worker that asked at the
same moment) before the server that was promised it binds it. ``free_port`` picks instead
from a pool below the ephemeral range, which connects never draw from. Under pytest-xdist
each worker (``PYTEST_XDIST_WORKER``) draws from its own slice of the pool, so two workers
never pick the same port; within a process no port is handed out twice. A candidate is
taken only if it can be bound right now (a listening service, or another run's server,
keeps it).
"""

from __future__ import annotations

import os
import random
import socket
from contextlib import closing
from pathlib import Path

POOL = (20000, 32000)  # below Linux's default ephemeral range (32768-60999)
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()


class NoFreePort(RuntimeError):
    """Every port of this process's slice of the pool is taken."""


def _pool() -> range:
    """The pool, ending below the machine's ephemeral range if that starts lower."""
    low, high = POOL
    try:
        ephemeral_low = int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = high
    return range(low, min(high, ephemeral_low))


def worker_slice(pool: range, worker: str | None, count: str | None) -> range:
    """This worker's share of ``pool``: the whole pool outside xdist, else an equal slice
    by the worker's number (``gw0`` .. ``gwN-1`` of ``count``)."""
    if not worker or not worker.startswith("gw") or not worker[2:].isdigit():
        return pool
    workers = max(int(count or 1), int(worker[2:]) + 1)
    size = len(pool) // workers
    start = pool.start + int(worker[2:]) * size
    return range(start, start + size)


def _bindable(port: int, host: str, kind: int) -> bool:
    # No SO_REUSEADDR: a port with a listener, or with connections still in TIME_WAIT,
    # fails here, so it is not promised to a server that would then fail to bind it.
    with closing(socket.socket(socket.AF_INET, kind)) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port on ``host`` that is free now, outside the ephemeral range and this worker's
    alone (TCP by default, UDP with ``kind=socket.SOCK_DGRAM``)."""
    ports = worker_slice(
        _pool(), os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    )
    # A random start, so two runs on one machine (other checkouts' suites) seldom meet.
    first = random.randrange(len(ports))
    for fresh_only in (True, False):  # ports given before only once no other is left
        for i in range(len(ports)):
            port = ports[(first + i) % len(ports)]
            if (port not in _given or not fresh_only) and _bindable(port, host, kind):
                _given.add(port)
                return port
    raise NoFreePort("no free port left in %d-%d" % (ports.start, ports.stop - 1))
