"""bankiot_core.queue_files: one file per batch, temp file then rename, crash leftovers.

Crashes are injected at the file system calls themselves: ``open``, ``write``, ``rename``,
``remove`` and ``mkdir`` of ``queue_files`` are replaced by versions that cut the power at
the n-th call (before it, after it, or half-way through a write). For every such point in
a script of queue operations, the directory reopened with the real ``os`` must hold the
state from before the interrupted operation or the state after it, never anything between,
with no temp file left and every batch whole. The behaviour under real MicroPython is
covered by ``test_queue.py::test_reboots_under_micropython``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bankiot_core import queue_files
from bankiot_core.queue import Queue
from bankiot_core.queue_files import FileStorage
from tests.core.queue_scenario import payload


class PowerCut(Exception):
    """The power went during a file system call."""


class Cutter:
    """Counts mutating file system calls and cuts the power at call number ``at``.

    ``after`` says whether the call took effect first; a cut ``write`` (not ``after``)
    writes half its bytes, as flash does when the power goes mid-write.
    """

    def __init__(self, at: int, after: bool) -> None:
        self.at = at
        self.after = after
        self.calls = 0
        self.fired = False

    def step(self) -> bool:
        """Count one call; True if the power goes at this one."""
        self.calls += 1
        if self.calls == self.at:
            self.fired = True
            return True
        return False

    def wrap(self, fn: Any) -> Any:
        def call(*args: Any) -> Any:
            if self.step():
                if self.after:
                    fn(*args)
                raise PowerCut(fn.__name__)
            return fn(*args)

        return call


class CutFile:
    """A file opened for writing whose ``write`` may be cut half-way."""

    def __init__(self, f: Any, cutter: Cutter) -> None:
        self.f = f
        self.cutter = cutter

    def write(self, data: bytes) -> int:
        if self.cutter.step():
            self.f.write(data if self.cutter.after else data[: len(data) // 2])
            self.f.flush()
            raise PowerCut("write")
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> CutFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


class CutOs:
    """``os`` with ``rename``, ``remove`` and ``mkdir`` going through a Cutter."""

    def __init__(self, cutter: Cutter) -> None:
        self.rename = cutter.wrap(os.rename)
        self.remove = cutter.wrap(os.remove)
        self.mkdir = cutter.wrap(os.mkdir)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def install(monkeypatch: pytest.MonkeyPatch, cutter: Cutter) -> None:
    def cut_open(path: str, mode: str = "r") -> Any:
        if "w" in mode:
            if cutter.step():
                if cutter.after:
                    open(path, mode).close()  # created, empty
                raise PowerCut("open")
            return CutFile(open(path, mode), cutter)
        return open(path, mode)

    monkeypatch.setattr(queue_files, "os", CutOs(cutter))
    monkeypatch.setattr(queue_files, "open", cut_open, raising=False)


Loss = tuple[int, int, int | None, int | None]
# Capacity 100 bytes. Each step: the operation, then the queue and its loss counters as the
# rules predict them.
SCRIPT: list[tuple[tuple[str, int, int], list[int], Loss]] = [
    (("enqueue", 1, 40), [1], (0, 0, None, None)),
    (("enqueue", 2, 40), [1, 2], (0, 0, None, None)),
    (("enqueue", 3, 40), [2, 3], (1, 40, 1, 1)),  # 120 > 100: 1 is dropped
    (("enqueue", 4, 10), [2, 3, 4], (1, 40, 1, 1)),
    (("ack_through", 3, 0), [4], (1, 40, 1, 1)),  # two at once: meta first, then removals
    (("enqueue", 5, 95), [5], (2, 50, 1, 4)),  # 105 > 100: 4 is dropped
    (("ack", 5, 0), [], (2, 50, 1, 4)),
    (("enqueue", 6, 20), [6], (2, 50, 1, 4)),
]
START: tuple[list[int], Loss] = ([], (0, 0, None, None))
# An enqueue that must drop makes room first (a step of its own, counted) and then writes:
# cut between the two, the old batches are gone and counted and the new one is not queued.
BETWEEN: dict[int, tuple[list[int], Loss]] = {
    2: ([2], (1, 40, 1, 1)),
    5: ([], (2, 50, 1, 4)),
}


def run_script(root: Path) -> Iterator[int]:
    """Run SCRIPT on a queue in ``root``, yielding how many operations have returned."""
    queue = Queue(FileStorage(str(root)), 100)
    for done, ((op, seq, size), _, _) in enumerate(SCRIPT, 1):
        if op == "enqueue":
            queue.enqueue(seq, payload(seq, size))
        elif op == "ack":
            queue.ack(seq)
        else:
            queue.ack_through(seq)
        yield done


def state(root: Path) -> tuple[list[int], Loss]:
    queue = Queue(FileStorage(str(root)), 100)
    return queue.seqs(), queue.loss()


def test_script_without_faults(tmp_path: Path) -> None:
    assert list(run_script(tmp_path / "q")) == list(range(1, len(SCRIPT) + 1))
    assert state(tmp_path / "q") == (SCRIPT[-1][1], SCRIPT[-1][2])
    assert sorted(os.listdir(tmp_path / "q")) == ["000000000006.bin", "meta"]


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_power_cut_at_every_file_system_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: bool
) -> None:
    states = [START] + [(seqs, loss) for _, seqs, loss in SCRIPT]
    seen: set[str] = set()
    at = 0
    while True:
        at += 1
        root = tmp_path / ("cut%d" % at)
        cutter = Cutter(at, after)
        with monkeypatch.context() as patch:
            install(patch, cutter)
            done = 0
            try:
                for done in run_script(root):  # noqa: B007 - how far it got is the point
                    pass
            except PowerCut:
                pass
        if not cutter.fired:
            break  # the script ran to its end: every call has been cut once
        # Reboot with the real file system.
        reopened = state(root)
        allowed = [states[done], states[done + 1]]
        if done in BETWEEN:
            allowed.append(BETWEEN[done])
        assert reopened in allowed, (at, done, reopened)
        seen.add(SCRIPT[done][0][0])
        names = os.listdir(root)
        assert not [n for n in names if n.endswith(".tmp")]
        for seq in reopened[0]:
            size = next(size for (op, s, size), _, _ in SCRIPT if op == "enqueue" and s == seq)
            assert (root / ("%012d.bin" % seq)).read_bytes() == payload(seq, size)
    assert at > 30  # the script makes that many calls: the loop really cut them all
    assert seen == {"enqueue", "ack", "ack_through"}  # cut off in every kind of step


def test_leftover_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    root = tmp_path / "q"
    queue = Queue(FileStorage(str(root)), 1000)
    queue.enqueue(1, payload(1, 20))
    (root / "000000000002.bin.tmp").write_bytes(payload(2, 20)[:7])  # cut mid-write
    (root / "000000000003.bin.tmp").write_bytes(payload(3, 20))  # complete, never renamed
    (root / "meta.tmp").write_bytes(b"q1 5")
    queue = Queue(FileStorage(str(root)), 1000)
    assert queue.seqs() == [1]
    assert queue.loss() == (0, 0, None, None)
    assert sorted(os.listdir(root)) == ["000000000001.bin"]


def test_a_failed_rename_leaves_the_batch_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "q"
    queue = Queue(FileStorage(str(root)), 1000)
    queue.enqueue(1, payload(1, 20))

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(queue_files, "os", CutOs(Cutter(0, False)))
        patch.setattr(queue_files.os, "rename", no_rename)
        with pytest.raises(OSError):
            queue.enqueue(2, payload(2, 20))
    assert queue.seqs() == [1]  # not accepted, and the queue knows it
    assert "000000000002.bin.tmp" in os.listdir(root)
    queue.enqueue(2, payload(2, 20))  # the next attempt writes over the leftover
    reopened = Queue(FileStorage(str(root)), 1000)
    assert reopened.seqs() == [1, 2]
    assert reopened.next_to_send(0) == (1, payload(1, 20))
    assert sorted(os.listdir(root)) == ["000000000001.bin", "000000000002.bin"]


def test_file_names_are_padded_and_order_is_numeric(tmp_path: Path) -> None:
    storage = FileStorage(str(tmp_path / "a" / "b" / "q"))  # parents are created
    storage.put(5, b"five")
    storage.put(10**13, b"big")  # wider than the padding
    storage.put(42, b"forty-two")
    assert sorted(os.listdir(tmp_path / "a" / "b" / "q")) == [
        "000000000005.bin",
        "000000000042.bin",
        "10000000000000.bin",
    ]
    assert storage.entries() == [(5, 4), (42, 9), (10**13, 3)]
    assert storage.get(42) == b"forty-two"
    assert storage.get(43) is None


def test_other_files_in_the_directory_are_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "q"
    root.mkdir()
    (root / "README").write_text("not a batch")
    (root / "12a.bin").write_bytes(b"x")
    (root / ".bin").write_bytes(b"x")
    (root / "sub").mkdir()
    storage = FileStorage(str(root))
    storage.put(1, b"one")
    assert storage.entries() == [(1, 3)]
    assert sorted(os.listdir(root)) == [".bin", "000000000001.bin", "12a.bin", "README", "sub"]


def test_delete_tolerates_missing_files_but_not_failing_ones(tmp_path: Path) -> None:
    storage = FileStorage(str(tmp_path / "q"))
    storage.put(1, b"one")
    storage.delete([1, 2])  # 2 was never there: fine
    assert storage.entries() == []
    (tmp_path / "q" / "000000000003.bin").mkdir()  # cannot be removed as a file
    with pytest.raises(OSError):
        storage.delete([3])


def test_meta_record_is_a_file(tmp_path: Path) -> None:
    storage = FileStorage(str(tmp_path / "q"))
    assert storage.load_meta() is None
    storage.delete([], b"q1 1 0 0 -1 -1")
    storage.delete([], b"q1 2 0 0 -1 -1")
    assert (tmp_path / "q" / "meta").read_bytes() == b"q1 2 0 0 -1 -1"
    assert FileStorage(str(tmp_path / "q")).load_meta() == b"q1 2 0 0 -1 -1"
