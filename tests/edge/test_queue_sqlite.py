"""edge.queue_sqlite: the queue's SQLite back end on the Raspberry Pi.

The main test kills a writer process with SIGKILL at random moments, again and again: the
writer enqueues and acknowledges batches as fast as it can through ``Queue`` over
``SqliteStorage`` (durability settings as in production), logging each operation before it
starts and after it returned. After every kill the database is reopened and compared with a
model built from the log: every operation that returned is there, the one cut off happened
whole or not at all, every batch is complete, the loss counters are exact, and SQLite's own
integrity check passes. The queue's rules on this back end are covered by the state machine
in ``tests/core/test_queue.py``.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bankiot_core.queue import Queue
from edge.queue_sqlite import SqliteStorage
from hw.micropython_runner import PROJECT_ROOT
from tests.core.queue_scenario import payload

CAPACITY = 2000  # about 13 batches: the writer's acks lag behind, so drops happen too

WRITER = (
    """
import sys
from bankiot_core.queue import Queue
from edge.queue_sqlite import SqliteStorage
from tests.core.queue_scenario import payload

queue = Queue(SqliteStorage(sys.argv[1]), %d)
log = open(sys.argv[2], "a")


def note(line):
    log.write(line + "\\n")
    log.flush()  # into the kernel: a SIGKILL cannot take it back


note("ready")
seq = queue.last_seq + 1
while True:
    size = 1 + (seq * 37) %% 300
    note("E %%d %%d" %% (seq, size))
    dropped = queue.enqueue(seq, payload(seq, size))
    note("e %%d %%d" %% (seq, dropped))
    if seq %% 3 == 0:
        note("S %%d" %% (seq - 2))
        note("s %%d %%d" %% (seq - 2, queue.ack(seq - 2)))
    if seq %% 7 == 0:
        note("A %%d" %% (seq - 10))
        note("a %%d %%d" %% (seq - 10, queue.ack_through(seq - 10)))
    seq += 1
"""
    % CAPACITY
)


class Model:
    """What the database must hold, from the writer's log."""

    def __init__(self) -> None:
        self.present: list[tuple[int, int]] = []  # (seq, size), ascending
        self.dropped = 0
        self.dropped_bytes = 0
        self.lost: list[int] = []  # first and last lost seq

    def make_room(self, size: int) -> list[int]:
        total = sum(s for _, s in self.present) + size
        gone = []
        while total > CAPACITY:
            seq, old = self.present.pop(0)
            total -= old
            gone.append(seq)
            self.dropped += 1
            self.dropped_bytes += old
            self.lost = [self.lost[0] if self.lost else seq, seq]
        return gone

    def enqueue(self, seq: int, size: int) -> int:
        gone = self.make_room(size)
        self.present.append((seq, size))
        return len(gone)

    def ack(self, seq: int) -> bool:
        before = len(self.present)
        self.present = [(s, n) for s, n in self.present if s != seq]
        return before != len(self.present)

    def ack_through(self, target: int) -> int:
        before = len(self.present)
        self.present = [(s, n) for s, n in self.present if s > target]
        return before - len(self.present)

    def loss(self) -> tuple[int, int, int | None, int | None]:
        if not self.lost:
            return (self.dropped, self.dropped_bytes, None, None)
        return (self.dropped, self.dropped_bytes, self.lost[0], self.lost[1])

    def replay(self, lines: list[str]) -> list[str] | None:
        """Apply every finished operation; return the one cut off (its intent), if any."""
        pending = None
        for line in lines:
            kind, *args = line.split()
            if kind in ("E", "A", "S"):
                pending = [kind, *args]
            elif kind == "e":
                assert pending is not None
                assert self.enqueue(int(pending[1]), int(pending[2])) == int(args[1])
                pending = None
            elif kind == "a":
                assert self.ack_through(int(args[0])) == int(args[1])
                pending = None
            elif kind == "s":
                assert int(self.ack(int(args[0]))) == int(args[1])
                pending = None
        return pending

    def settle(self, pending: list[str], seqs: list[int]) -> str:
        """The operation that was cut off: accept what the database shows, if allowed."""
        if pending[0] == "E":
            seq, size = int(pending[1]), int(pending[2])
            stored = seq in seqs
            snapshot = (list(self.present), self.dropped, self.dropped_bytes, list(self.lost))
            gone = self.make_room(size)
            if stored:
                self.present.append((seq, size))
                return "enqueue done"
            if gone and [s for s, _ in self.present] == seqs:
                return "enqueue made room only"
            (self.present, self.dropped, self.dropped_bytes, self.lost) = snapshot
            return "enqueue not done"
        target = int(pending[1])
        if pending[0] == "S":
            if target in seqs:
                return "selective ack not done"
            self.ack(target)
            return "selective ack done"
        if any(s <= target for s in seqs):
            return "ack not done"
        self.ack_through(target)
        return "ack done"


def read_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for_progress(log: Path, lines_before: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the writer has started and finished a few operations (no matter how slow
    the machine is), so that every cycle adds to what is checked."""
    deadline = time.monotonic() + 60
    while sum(1 for line in read_log(log)[lines_before:] if line[0] == "e") < 15:
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise AssertionError("the writer died: %s" % proc.stderr.read().decode())
        if time.monotonic() > deadline:
            raise AssertionError("the writer did not start within 60 s")
        time.sleep(0.01)


def test_survives_kill_9_of_a_writer_mid_stream(tmp_path: Path) -> None:
    database = tmp_path / "queue.db"
    log = tmp_path / "writer.log"
    rng = random.Random(4)
    model = Model()
    done_lines = 0
    outcomes: list[str] = []
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(database), str(log)],
            cwd=PROJECT_ROOT,  # the writer imports tests.core.queue_scenario from here
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_progress(log, done_lines, proc)
            time.sleep(rng.uniform(0.02, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        lines = read_log(log)
        pending = model.replay(lines[done_lines:])
        done_lines = len(lines)

        check = sqlite3.connect(database)
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check.close()
        storage = SqliteStorage(database)
        queue = Queue(storage, CAPACITY)
        seqs = queue.seqs()
        if pending is not None:
            outcomes.append(model.settle(pending, seqs))
        assert seqs == [s for s, _ in model.present]
        assert queue.loss() == model.loss()
        for seq, size in model.present:
            assert storage.get(seq) == payload(seq, size)  # whole, never torn
        queue.close()
    assert model.present, "the writer never got going"
    assert model.dropped > 0, "the byte bound was never reached: raise the run time"


def test_write_ahead_log_and_full_sync_by_default(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "q.db")
    assert storage.pragma("journal_mode") == "wal"
    assert storage.pragma("synchronous") == 2  # FULL
    storage.close()
    # The journal mode is a property of the file: another connection sees it.
    other = sqlite3.connect(tmp_path / "q.db")
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    normal = SqliteStorage(tmp_path / "q.db", synchronous="NORMAL")
    assert normal.pragma("synchronous") == 1
    normal.close()
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStorage(tmp_path / "q.db", synchronous="OFF")
    with pytest.raises(ValueError):
        SqliteStorage(tmp_path / "q.db").pragma("synchronous; DROP TABLE batches")


def test_a_failed_delete_changes_nothing(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "q.db")
    storage.put(1, b"one")
    storage.put(2, b"two")
    storage.delete([], b"old meta")
    with pytest.raises(sqlite3.Error):
        unbindable: list[Any] = [1, object()]  # the second DELETE fails
        storage.delete(unbindable, b"new meta")
    assert storage.entries() == [(1, 3), (2, 3)]
    assert storage.load_meta() == b"old meta"
    storage.delete([1, 2], b"new meta")
    assert storage.entries() == []
    assert storage.load_meta() == b"new meta"


def test_another_process_reads_what_was_committed(tmp_path: Path) -> None:
    queue = Queue(SqliteStorage(tmp_path / "q.db"), 1000)
    queue.enqueue(7, payload(7, 30))
    queue.enqueue(8, payload(8, 40))
    queue.ack(7)
    # While the queue's connection is still open (WAL: readers do not wait for it).
    reader = sqlite3.connect(tmp_path / "q.db")
    rows = reader.execute("SELECT seq, data FROM batches ORDER BY seq").fetchall()
    reader.close()
    assert rows == [(8, payload(8, 40))]
    queue.close()
