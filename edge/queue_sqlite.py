"""Queue storage in SQLite, for the Raspberry Pi gateway.

The ``bankiot_core.queue`` storage interface over one SQLite database file:

- table ``batches(seq INTEGER PRIMARY KEY, data BLOB NOT NULL)``: one row per sealed batch;
- table ``meta(id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL)``: the queue's
  meta record (loss counters and the removal floor), at most one row.

Every operation is one transaction: ``put`` is a single INSERT (autocommit), ``delete`` writes
the meta record and removes the batches inside one ``BEGIN IMMEDIATE`` .. ``COMMIT``, so
after a crash either all of it happened or none.

Durability: the journal is a write-ahead log (``journal_mode=WAL``): writers append to the
log and never rewrite the database in place, readers do not block the writer, and a process
killed at any moment (``kill -9``) leaves the database at its last commit. ``synchronous``
defaults to ``FULL``: SQLite then syncs the log at every commit, so a batch is on disk when
``put`` returns and survives a power cut, not only a crash of the process. That matters
here because the layer above forgets the readings once the batch is queued: with ``NORMAL``
(safe against corruption, and against process crashes, in WAL mode) a power cut may roll
back the last commits, and those readings would be lost without being counted. ``NORMAL``
is accepted for installations that would rather wear an SD card less and accept that.

The connection is made with ``check_same_thread=False`` so a driver may run the calls in a
worker thread (``asyncio.to_thread``); calls must still come one at a time, like every call
on ``Queue``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from os import PathLike

SYNCHRONOUS = ("FULL", "NORMAL")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL)",
)


class SqliteStorage:
    """Queue storage in the SQLite database at ``path`` (created if missing).

    ``synchronous`` is ``"FULL"`` (default: durable across power loss) or ``"NORMAL"``
    (durable across process crashes only); see the module docstring. ``timeout`` is how long
    to wait for a lock held by another connection, in seconds.
    """

    def __init__(
        self, path: str | PathLike[str], synchronous: str = "FULL", timeout: float = 5.0
    ) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(
                "synchronous must be one of %s, not %r" % (", ".join(SYNCHRONOUS), synchronous)
            )
        self.path = path
        # isolation_level=None: no implicit transactions; each statement commits on its own
        # unless it runs inside an explicit BEGIN .. COMMIT.
        self._db = sqlite3.connect(
            path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(
                    "%s: cannot use write-ahead logging (journal mode is %s)" % (path, mode)
                )
            self._db.execute("PRAGMA synchronous=%s" % synchronous)
            for statement in _SCHEMA:
                self._db.execute(statement)
        except BaseException:
            self._db.close()
            raise

    def entries(self) -> list[tuple[int, int]]:
        """Every stored batch, ``(seq, nbytes)`` in ascending ``seq``."""
        rows = self._db.execute("SELECT seq, length(data) FROM batches ORDER BY seq")
        return [(seq, size) for seq, size in rows]

    def put(self, seq: int, data: bytes) -> None:
        """Store batch ``seq``: one INSERT, committed (and synced) when this returns."""
        self._db.execute("INSERT INTO batches (seq, data) VALUES (?, ?)", (seq, bytes(data)))

    def get(self, seq: int) -> bytes | None:
        """Batch ``seq``'s bytes, or None."""
        row = self._db.execute("SELECT data FROM batches WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, seqs: Sequence[int], meta: bytes | None = None) -> None:
        """Replace the meta record (if given) and remove ``seqs``, in one transaction."""
        if not seqs and meta is None:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if meta is not None:
                db.execute("INSERT OR REPLACE INTO meta (id, data) VALUES (1, ?)", (bytes(meta),))
            db.executemany("DELETE FROM batches WHERE seq = ?", [(seq,) for seq in seqs])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def load_meta(self) -> bytes | None:
        """The meta record, or None."""
        row = self._db.execute("SELECT data FROM meta WHERE id = 1").fetchone()
        return None if row is None else bytes(row[0])

    def pragma(self, name: str) -> str | int:
        """The value of ``PRAGMA name`` (for checks: ``journal_mode``, ``synchronous``)."""
        if not name.replace("_", "").isalpha():
            raise ValueError("not a pragma name: %r" % name)
        return self._db.execute("PRAGMA %s" % name).fetchone()[0]

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
