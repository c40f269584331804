"""Queue throughput on CPython: enqueue, send and acknowledge, against raw storage writes.

A report, not a pass/fail. Each round pushes ``--batches`` sealed batches (``--size`` bytes
each) through a life cycle: enqueue, ``next_to_send``, and the cloud's ack, either one at a
time (``steady``: the queue stays almost empty, as when the link is up) or all enqueued
first and then acknowledged cumulatively in blocks of 16 (``backlog``: draining after an
outage). It measures, in the same run and on the same disk:

- the subjects: ``Queue`` over ``SqliteStorage`` (WAL, ``synchronous=FULL``, the default) and
  over ``FileStorage`` (temp file + ``fsync`` + rename + directory ``fsync``, the CPython
  path);
- the references, which store and delete the same bytes with the same durability and
  nothing else: raw ``sqlite3`` (one autocommitted INSERT per batch, one DELETE per ack, same
  pragmas) and raw files (write + ``fsync`` + rename + directory ``fsync``; remove +
  directory ``fsync``);
- for scale, ``Queue`` over ``MemoryStorage``: the queue's own logic without any I/O.

and prints microseconds per batch and the ratio subject / reference. The disk decides the
absolute figures (an fsync costs from microseconds on tmpfs to milliseconds on an SD card):
pass ``--dir`` to measure on the disk the gateway will use.

Run: ``.venv/bin/python bench/queue_throughput.py [--batches 300] [--size 512] [--repeat 5]
[--dir D] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Mapping

from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.queue_files import FileStorage
from edge.queue_sqlite import SqliteStorage

ACK_BLOCK = 16


def run_queue(storage, batches: int, size: int, mode: str) -> None:
    """One round through ``Queue``: enqueue, send, ack."""
    queue = Queue(storage, capacity_bytes=batches * size + 1, max_in_flight=batches)
    envelope = bytes(size)
    if mode == "steady":
        for seq in range(batches):
            queue.enqueue(seq, envelope)
            sent = queue.next_to_send(seq)
            assert sent is not None
            queue.ack(sent[0])
    else:
        for seq in range(batches):
            queue.enqueue(seq, envelope)
        for seq in range(batches):
            queue.next_to_send(seq)
            if seq % ACK_BLOCK == ACK_BLOCK - 1 or seq == batches - 1:
                queue.ack_through(seq)
    assert len(queue) == 0
    queue.close()


def run_raw_sqlite(path: str, batches: int, size: int, mode: str) -> None:
    """The reference: the same rows in and out of SQLite with the same settings."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    envelope = bytes(size)
    if mode == "steady":
        for seq in range(batches):
            db.execute("INSERT INTO batches VALUES (?, ?)", (seq, envelope))
            db.execute("SELECT data FROM batches WHERE seq = ?", (seq,)).fetchone()
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
    else:
        for seq in range(batches):
            db.execute("INSERT INTO batches VALUES (?, ?)", (seq, envelope))
        for seq in range(batches):
            db.execute("SELECT data FROM batches WHERE seq = ?", (seq,)).fetchone()
            if seq % ACK_BLOCK == ACK_BLOCK - 1 or seq == batches - 1:
                db.execute("DELETE FROM batches WHERE seq <= ?", (seq,))
    db.close()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_raw_files(root: str, batches: int, size: int, mode: str) -> None:
    """The reference: the same files written, read and removed with the same syncs."""
    os.makedirs(root, exist_ok=True)
    envelope = bytes(size)

    def write(seq: int) -> None:
        path = os.path.join(root, "%012d.bin" % seq)
        with open(path + ".tmp", "wb") as f:
            f.write(envelope)
            f.flush()
            os.fsync(f.fileno())
        os.rename(path + ".tmp", path)
        _fsync_dir(root)

    def read(seq: int) -> None:
        with open(os.path.join(root, "%012d.bin" % seq), "rb") as f:
            f.read()

    def remove(seqs: range) -> None:
        for seq in seqs:
            os.remove(os.path.join(root, "%012d.bin" % seq))
        _fsync_dir(root)

    if mode == "steady":
        for seq in range(batches):
            write(seq)
            read(seq)
            remove(range(seq, seq + 1))
    else:
        for seq in range(batches):
            write(seq)
        start = 0
        for seq in range(batches):
            read(seq)
            if seq % ACK_BLOCK == ACK_BLOCK - 1 or seq == batches - 1:
                remove(range(start, seq + 1))
                start = seq + 1


def best_us_per_batch(
    rounds: Mapping[str, Callable[[str], None]], base: str, batches: int, repeat: int
) -> dict[str, float]:
    """Best of ``repeat`` rounds of each, in us per batch, each round in a fresh directory
    under ``base``. The candidates take turns, so a disk that slows down or speeds up
    during the run (a VM's, an SD card's) weighs on all of them alike."""
    best: dict[str, float] = {}
    for attempt in range(repeat):
        for name, round_ in rounds.items():
            where = os.path.join(base, "%s-%d" % (name, attempt))
            os.makedirs(where)
            start = time.perf_counter()
            round_(where)
            took = time.perf_counter() - start
            shutil.rmtree(where)
            best[name] = min(took, best.get(name, took))
    return {name: took / batches * 1e6 for name, took in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Queue enqueue+send+ack throughput vs raw storage writes; print ratios."
    )
    parser.add_argument("--batches", type=int, default=300, help="batches per round (300)")
    parser.add_argument("--size", type=int, default=512, help="bytes per batch (512)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each, best kept (5)")
    parser.add_argument("--dir", default=None, help="where to write (default: system temp)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    n, size = args.batches, args.size
    base = tempfile.mkdtemp(prefix="bankiot-queue-bench-", dir=args.dir)
    figures: dict[str, object] = {"batches": n, "batch_bytes": size, "dir": base}
    try:
        for mode in ("steady", "backlog"):
            print("timing %s rounds ..." % mode, file=sys.stderr)

            def raw_sqlite(d: str, mode: str = mode) -> None:
                run_raw_sqlite(os.path.join(d, "raw.db"), n, size, mode)

            def queue_sqlite(d: str, mode: str = mode) -> None:
                run_queue(SqliteStorage(os.path.join(d, "q.db")), n, size, mode)

            def raw_files(d: str, mode: str = mode) -> None:
                run_raw_files(os.path.join(d, "raw"), n, size, mode)

            def queue_files(d: str, mode: str = mode) -> None:
                run_queue(FileStorage(os.path.join(d, "q")), n, size, mode)

            def queue_memory(d: str, mode: str = mode) -> None:
                run_queue(MemoryStorage(), n, size, mode)

            rounds = {
                "raw_sqlite_us": raw_sqlite,
                "queue_sqlite_us": queue_sqlite,
                "raw_files_us": raw_files,
                "queue_files_us": queue_files,
                "queue_memory_us": queue_memory,
            }
            row = best_us_per_batch(rounds, base, n, args.repeat)
            row["ratio_sqlite"] = row["queue_sqlite_us"] / row["raw_sqlite_us"]
            row["ratio_files"] = row["queue_files_us"] / row["raw_files_us"]
            figures[mode] = {k: round(v, 2) for k, v in row.items()}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print("Queue: enqueue + send + ack of %d batches of %d bytes, us per batch" % (n, size))
    for mode in ("steady", "backlog"):
        row = figures[mode]
        assert isinstance(row, dict)
        print("%s (%s)" % (mode, "ack each" if mode == "steady" else "ack_through per 16"))
        print("  raw sqlite3, WAL, synchronous=FULL (reference) %10.1f" % row["raw_sqlite_us"])
        print("  Queue over SqliteStorage                       %10.1f" % row["queue_sqlite_us"])
        print("  ratio                                          %10.2f x" % row["ratio_sqlite"])
        print("  raw files, write+fsync+rename (reference)      %10.1f" % row["raw_files_us"])
        print("  Queue over FileStorage                         %10.1f" % row["queue_files_us"])
        print("  ratio                                          %10.2f x" % row["ratio_files"])
        print("  Queue over MemoryStorage (logic only)          %10.1f" % row["queue_memory_us"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
