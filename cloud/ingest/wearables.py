"""Which device addresses are registered wearables: ingest asks once per group of batches
at most, and remembers the answers for a short time.

A reading from a wearable is personal health data whatever its metric (``retention``), so
ingest must know, for the addresses in a batch, which are in the inventory as
``kind = "wearable"`` (``Device.uid`` is the address as ingest stores it,
``AA:BB:CC:DD:EE:FF``). ``WearableDirectory.lookup`` answers from memory what it learnt in the
last ``ttl`` seconds (60 by default; negative answers too) and asks the database about the
rest in one query, in a short session of its own before the batch's transaction: on SQLite a
transaction that reads before it writes cannot wait for the write lock (WAL mode answers
"database is locked" at once when another writer committed in between), so the batch's
transaction still starts with its first write. Nothing tells a running ingest worker
that a wearable was just registered: for up to ``ttl`` seconds its readings may still be
stored in their metric's class. ``retention.purge_expired`` closes that gap: it also purges
what registered wearables sent after the ``health`` retention, whatever the stored class.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.fleet.models import Device

WEARABLE = "wearable"
TTL_SECONDS = 60.0
MAX_ENTRIES = 100_000  # addresses remembered; past it the memory starts again
_CHUNK = 1000  # addresses per IN list (SQLite and PostgreSQL bound a statement's parameters)


class WearableDirectory:
    """Remembers which addresses are registered wearables (module docstring); thread-safe.

    ``ttl``: seconds an answer is trusted; ``clock``: monotonic seconds (tests).
    """

    def __init__(
        self,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self.queries = 0  # database lookups made (tests, diagnostics)
        self._known: dict[str, tuple[bool, float]] = {}  # address -> (wearable, expires)
        self._lock = threading.Lock()

    def lookup(
        self, sessions: Callable[[], AbstractContextManager[Session]], addresses: Collection[str]
    ) -> frozenset[str]:
        """The addresses among ``addresses`` that are registered wearables: one query, in a
        session from ``sessions``, for those not remembered (none, and no session, if all
        are)."""
        now = self.clock()
        wearables = set()
        missing = []
        with self._lock:
            for address in addresses:
                known = self._known.get(address)
                if known is None or known[1] <= now:
                    missing.append(address)
                elif known[0]:
                    wearables.add(address)
        if missing:
            missing.sort()
            found = set()
            with sessions() as session:
                for start in range(0, len(missing), _CHUNK):
                    chunk = missing[start : start + _CHUNK]
                    found.update(
                        session.scalars(
                            select(Device.uid).where(Device.kind == WEARABLE, Device.uid.in_(chunk))
                        )
                    )
            self.queries += 1
            wearables |= found
            expires = now + self.ttl
            with self._lock:
                if len(self._known) + len(missing) > self.max_entries:
                    self._known.clear()
                for address in missing:
                    self._known[address] = (address in found, expires)
        return frozenset(wearables)

    def forget(self) -> None:
        """Forget every answer (the next lookup asks the database)."""
        with self._lock:
            self._known.clear()
