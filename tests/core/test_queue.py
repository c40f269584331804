"""bankiot_core.queue: the durable store-and-forward queue, on every storage back end.

- A gateway's life across reboots (``queue_scenario.py``), on CPython and under real
  MicroPython with ``/data`` carried from boot to boot; the outcome is derived from the
  queue's rules in the comments of ``BOOTS``.
- The rules one at a time: send order, window, resend timeout, urgent batches, acks
  (cumulative, selective, repeated, stale), the byte bound and its loss counters, recovery
  of an interrupted removal, configuration errors.
- A Hypothesis state machine: random interleavings of enqueue, send, ack, link reset, crash
  (a new ``Queue`` over reopened storage) and power cuts in the middle of an operation, on
  the memory, file and SQLite back ends. It checks against a model that no unacknowledged
  batch is ever lost unless counted as dropped, no acknowledged batch comes back, no batch
  is acknowledged twice, the loss counters are exact and what is sent is what was queued.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bankiot_core.errors import ConfigError, LocalError
from bankiot_core.queue import COUNTERS, MemoryStorage, Queue, decode_meta, encode_meta
from bankiot_core.queue_files import FileStorage
from bankiot_core.ticks import PERIOD
from edge.queue_sqlite import SqliteStorage
from hw.micropython_runner import MicroPythonRunner
from tests.core import queue_scenario

SCENARIO_SOURCE = Path(queue_scenario.__file__).read_text()

# Capacity 100 bytes, resend after 1000 ms, 3 batches in flight (queue_scenario).
BOOTS: list[list[list[Any]]] = [
    [
        ["enqueue", 1, 30],
        ["enqueue", 2, 30],
        ["urgent", 3, 30],
        ["send", 0],  # the urgent batch first
        ["send", 0],  # then the oldest
        ["send", 0],
        ["send", 0],  # three in flight: the window is full
        ["enqueue_raises", 3, 10],  # not above the last sequence number
        ["enqueue_raises", 9, 101],  # larger than the whole queue
    ],
    [
        ["send", 5],  # nothing about sending survived the reboot: the oldest goes again
        ["ack_through", 2],  # removes 1 and 2
        ["ack", 2],  # repeated: nothing
        ["ack_through", 1],  # stale: nothing
        ["enqueue", 4, 40],  # 30 + 40 = 70 bytes
        ["enqueue", 5, 50],  # 120 > 100: the oldest (3, 30 bytes) is dropped
        ["send", 10],
    ],
    [
        ["send", 1000],
        ["send", 1000],
        ["send", 1999],  # both out, 999 ms: not yet due
        ["send", 2000],  # 4 is due again
        ["ack", 5],
        ["ack", 5],  # repeated
        ["ack_through", 4],
        ["send", 2500],  # empty
        ["enqueue", 6, 100],  # exactly the capacity
        ["enqueue", 7, 1],  # 6 must go
    ],
    [
        ["send", 0],
        ["ack", 7],
    ],
    [
        ["enqueue_raises", 6, 5],  # the floor (6, stored with the last drop) guards reuse
        ["enqueue", 8, 5],
    ],
]

NO_LOSS = [0, 0, None, None]
EXPECTED = [
    {
        "opened": {"seqs": [], "loss": NO_LOSS},
        "results": [0, 0, 0, [3, True], [1, True], [2, True], None, "refused", "refused"],
        "seqs": [1, 2, 3],
        "bytes": 90,
        "loss": NO_LOSS,
        "in_flight": [1, 2, 3],
    },
    {
        "opened": {"seqs": [1, 2, 3], "loss": NO_LOSS},
        "results": [[1, True], 2, False, 0, 0, 1, [4, True]],
        "seqs": [4, 5],
        "bytes": 90,
        "loss": [1, 30, 3, 3],
        "in_flight": [4],
    },
    {
        "opened": {"seqs": [4, 5], "loss": [1, 30, 3, 3]},
        "results": [[4, True], [5, True], None, [4, True], True, False, 1, None, 0, 1],
        "seqs": [7],
        "bytes": 1,
        "loss": [2, 130, 3, 6],  # 30 + 100 bytes; 3 .. 6 touched (4 and 5 were delivered)
        "in_flight": [],
    },
    {
        "opened": {"seqs": [7], "loss": [2, 130, 3, 6]},
        "results": [[7, True], True],
        "seqs": [],
        "bytes": 0,
        "loss": [2, 130, 3, 6],
        "in_flight": [],
    },
    {
        "opened": {"seqs": [], "loss": [2, 130, 3, 6]},
        "results": ["refused", 0],
        "seqs": [8],
        "bytes": 5,
        "loss": [2, 130, 3, 6],
        "in_flight": [],
    },
]


def test_reboots_on_cpython(tmp_path: Path) -> None:
    root = str(tmp_path / "data" / "queue")
    outcomes = [json.loads(json.dumps(queue_scenario.boot(root, boot))) for boot in BOOTS]
    assert outcomes == EXPECTED


@pytest.mark.micropython
def test_reboots_under_micropython(micropython: MicroPythonRunner) -> None:
    flash: dict[str, bytes] = {}
    outcomes = []
    for boot in BOOTS:
        files: dict[str, bytes | str] = {"/lib/queue_scenario.py": SCENARIO_SOURCE, **flash}
        run = micropython.run(
            "import json, queue_scenario\n"
            "print(json.dumps(queue_scenario.boot('/data/queue', %s)))" % json.dumps(boot),
            files=files,
            export=["/data"],
        ).check()
        outcomes.append(json.loads(run.stdout))
        flash = run.files
    assert outcomes == EXPECTED
    # The flash after the last boot, as the file back end documents it.
    assert sorted(flash) == ["/data/queue/000000000008.bin", "/data/queue/meta"]
    assert flash["/data/queue/000000000008.bin"] == queue_scenario.payload(8, 5)
    assert flash["/data/queue/meta"] == b"q1 6 2 130 3 6"


# -- the rules one at a time --------------------------------------------------------------


def payload(seq: int, size: int = 10) -> bytes:
    return queue_scenario.payload(seq, size)


def fresh(capacity: int = 1000, resend_ms: int = 1000, window: int = 2) -> Queue:
    return Queue(MemoryStorage(), capacity, resend_ms, window)


def sent(q: Queue, now_ms: int) -> int:
    """The sequence number ``next_to_send`` hands out (there must be one)."""
    out = q.next_to_send(now_ms)
    assert out is not None
    return out[0]


def test_sends_oldest_first_within_the_window_and_resends_after_the_timeout() -> None:
    q = fresh(window=2)
    for seq in (10, 11, 12):
        q.enqueue(seq, payload(seq))
    assert q.next_to_send(0) == (10, payload(10))
    assert q.next_to_send(100) == (11, payload(11))
    assert q.next_to_send(200) is None  # two in flight
    assert q.wait_ms(200) == 800  # 10 is due at 1000
    assert q.next_to_send(999) is None
    assert q.next_to_send(1000) == (10, payload(10))  # resent
    assert q.next_to_send(1000) is None  # 11 is due at 1100
    assert q.ack(11) is True
    assert q.wait_ms(1000) == 0
    assert q.next_to_send(1000) == (12, payload(12))
    assert q.in_flight() == [10, 12]
    counters = q.counters()
    assert (counters["sent"], counters["resent"], counters["in_flight"]) == (3, 1, 2)


def test_resend_timeout_across_the_tick_wrap() -> None:
    q = fresh(window=1)
    q.enqueue(1, payload(1))
    start = PERIOD - 300  # the ticks wrap 300 ms later
    assert q.next_to_send(start) == (1, payload(1))
    assert q.next_to_send(start + 999) is None
    assert q.next_to_send(start + 1000) == (1, payload(1))


def test_urgent_batches_jump_the_backlog_once() -> None:
    q = fresh(window=3)
    for seq in (1, 2):
        q.enqueue(seq, payload(seq))
    q.enqueue(3, payload(3), urgent=True)
    q.enqueue(4, payload(4), urgent=True)
    assert [sent(q, 0) for _ in range(3)] == [3, 4, 1]
    assert q.next_to_send(0) is None
    q.link_reset()  # a reconnect: all may go at once, oldest first, urgency spent
    assert [sent(q, 5) for _ in range(3)] == [1, 2, 3]


def test_link_reset_sends_everything_again_at_once() -> None:
    q = fresh(window=2)
    for seq in (1, 2):
        q.enqueue(seq, payload(seq))
    q.next_to_send(0)
    q.next_to_send(0)
    assert q.next_to_send(10) is None
    q.link_reset()
    assert q.in_flight() == []
    assert q.next_to_send(10) == (1, payload(1))


def test_acks_are_cumulative_and_idempotent() -> None:
    q = fresh()
    for seq in (1, 2, 4, 7):  # gaps: sequence numbers reserved but never used
        q.enqueue(seq, payload(seq))
    assert q.ack(4) is True
    assert q.ack(4) is False
    assert q.ack(3) is False  # never queued
    assert q.ack_through(5) == 2  # 1 and 2
    assert q.ack_through(5) == 0
    assert q.ack_through(0) == 0
    assert q.seqs() == [7]
    assert q.counters()["acked"] == 3
    assert q.counters()["acks_stale"] == 4


def test_an_ack_for_a_batch_never_sent_in_this_boot_still_counts() -> None:
    # Sent before a reboot, acknowledged after it (a persistent MQTT session delivers it).
    q = fresh()
    q.enqueue(1, payload(1))
    assert q.ack(1) is True
    assert len(q) == 0


def test_the_byte_bound_drops_the_oldest_and_counts_exactly() -> None:
    q = fresh(capacity=100)
    for seq, size in ((1, 40), (2, 30), (3, 20)):
        assert q.enqueue(seq, payload(seq, size)) == 0
    q.next_to_send(0)  # 1 in flight: dropping it also ends its flight
    assert q.ack(2) is True  # 40 + 20 left
    assert q.enqueue(4, payload(4, 50)) == 1  # 110 > 100: 1 goes (40 bytes)
    assert q.seqs() == [3, 4]
    assert q.in_flight() == []
    assert q.enqueue(5, payload(5, 90)) == 2  # 3 and 4 go (70 bytes)
    assert q.loss() == (3, 110, 1, 4)
    assert q.bytes_used == 90
    counters = q.counters()
    assert set(counters) == set(COUNTERS)
    assert (counters["dropped_batches"], counters["dropped_bytes"]) == (3, 110)
    assert (counters["lost_first"], counters["lost_last"]) == (1, 4)


def test_a_batch_larger_than_the_queue_is_refused_and_nothing_is_dropped() -> None:
    q = fresh(capacity=50)
    q.enqueue(1, payload(1, 50))
    with pytest.raises(LocalError, match="more than the queue's capacity"):
        q.enqueue(2, payload(2, 51))
    assert q.seqs() == [1]
    assert q.loss() == (0, 0, None, None)


def test_sequence_numbers_must_ascend() -> None:
    q = fresh()
    q.enqueue(5, payload(5))
    for bad in (5, 4, -1):
        with pytest.raises(LocalError):
            q.enqueue(bad, payload(bad if bad >= 0 else 0))
    q.ack(5)
    with pytest.raises(LocalError, match="not above 5"):
        q.enqueue(5, payload(5))


def test_reopening_with_a_smaller_capacity_drops_and_counts() -> None:
    storage = MemoryStorage()
    q = Queue(storage, 100)
    for seq in (1, 2, 3):
        q.enqueue(seq, payload(seq, 30))
    q = Queue(storage, 65)
    assert q.seqs() == [2, 3]
    assert q.loss() == (1, 30, 1, 1)


def test_an_interrupted_removal_is_finished_on_open() -> None:
    storage = MemoryStorage()
    q = Queue(storage, 1000)
    for seq in (1, 2, 3, 4):
        q.enqueue(seq, payload(seq))
    # A power cut after the meta record of "ack through 3" was stored, before any removal.
    storage.delete([], encode_meta(3, 0, 0, None, None))
    q = Queue(storage, 1000)
    assert q.seqs() == [4]
    assert [seq for seq, _ in storage.entries()] == [4]


def test_meta_record_round_trip_and_damage() -> None:
    assert decode_meta(None) == (-1, 0, 0, None, None)
    assert encode_meta(7, 2, 130, 3, 6) == b"q1 7 2 130 3 6"
    assert decode_meta(b"q1 7 2 130 3 6") == (7, 2, 130, 3, 6)
    assert decode_meta(encode_meta(-1, 0, 0, None, None)) == (-1, 0, 0, None, None)
    for damaged in (b"", b"q1 1 2", b"q2 1 2 3 4 5", b"q1 a 2 3 4 5", b"\xff\xfe"):
        with pytest.raises(LocalError, match="damaged"):
            decode_meta(damaged)
    storage = MemoryStorage()
    storage.delete([], b"q1 nonsense")
    with pytest.raises(LocalError):
        Queue(storage, 100)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity_bytes": 0},
        {"capacity_bytes": 1.5},
        {"resend_ms": 0},
        {"resend_ms": PERIOD},
        {"max_in_flight": 0},
    ],
)
def test_configuration_errors(kwargs: dict[str, Any]) -> None:
    config: dict[str, Any] = {"capacity_bytes": 100, "resend_ms": 1000, "max_in_flight": 1}
    config.update(kwargs)
    with pytest.raises(ConfigError):
        Queue(MemoryStorage(), **config)


class BrokenStorage(MemoryStorage):
    """Fails the next ``delete`` after storing its meta record, or the next ``put`` after
    storing the batch (a sync that failed), like flash going bad."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False
        self.fail_put = False

    def put(self, seq, data):
        super().put(seq, data)
        if self.fail_put:
            self.fail_put = False
            raise OSError(5, "EIO")

    def delete(self, seqs, meta=None):
        if self.fail:
            self.fail = False
            super().delete([], meta)
            raise OSError(5, "EIO")
        super().delete(seqs, meta)


def test_after_a_storage_error_the_queue_believes_the_storage() -> None:
    storage = BrokenStorage()
    q = Queue(storage, 100)
    for seq in (1, 2, 3):
        q.enqueue(seq, payload(seq, 30))
    storage.fail = True
    with pytest.raises(OSError):
        q.enqueue(4, payload(4, 30))  # the drop of 1 failed after its meta record
    # Re-reading the storage finished the removal: 1 is gone and counted, once.
    assert q.seqs() == [2, 3]
    assert q.loss() == (1, 30, 1, 1)
    assert q.enqueue(4, payload(4, 30)) == 0
    assert Queue(storage, 100).loss() == (1, 30, 1, 1)
    q.ack_through(4)
    storage.fail_put = True
    with pytest.raises(OSError):
        q.enqueue(5, payload(5, 30))
    assert q.seqs() == [5]  # stored after all: the queue knows it and will send it
    assert q.next_to_send(0) == (5, payload(5, 30))


# -- the state machine --------------------------------------------------------------------


class PowerCut(Exception):
    """The power went: the storage call did not return."""


class FaultyStorage:
    """Wraps a storage; when armed, the n-th mutating call is cut off.

    ``mode`` says how far the call got: ``"none"`` (nothing written), ``"all"`` (done, but
    the caller never learnt it), ``"partial"`` (a delete stored its meta record and removed
    only some batches: what a non-transactional back end may leave).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.countdown: int | None = None
        self.mode = "none"

    def arm(self, calls: int, mode: str) -> None:
        self.countdown = calls
        self.mode = mode

    def _cut(self) -> bool:
        if self.countdown is None:
            return False
        self.countdown -= 1
        if self.countdown > 0:
            return False
        self.countdown = None
        return True

    def entries(self):
        return self.inner.entries()

    def get(self, seq):
        return self.inner.get(seq)

    def load_meta(self):
        return self.inner.load_meta()

    def close(self):
        self.inner.close()

    def put(self, seq, data):
        if self._cut():
            if self.mode == "all":
                self.inner.put(seq, data)
            raise PowerCut()
        self.inner.put(seq, data)

    def delete(self, seqs, meta=None):
        if self._cut():
            if self.mode == "all":
                self.inner.delete(seqs, meta)
            elif self.mode == "partial":
                if meta is not None:
                    self.inner.delete([], meta)
                self.inner.delete(list(seqs)[: len(seqs) // 2])
            raise PowerCut()
        self.inner.delete(seqs, meta)


CAPACITY = 600
RESEND_MS = 1000
WINDOW = 3
START = PERIOD - 20000  # the ticks wrap during most runs


class QueueMachine(RuleBasedStateMachine):
    """The queue against a model of its promise. Subclasses choose the back end."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="bankiot-queue-")
        self.storage = FaultyStorage(self.open_storage())
        self.queue = Queue(self.storage, CAPACITY, RESEND_MS, WINDOW)
        self.last = -1  # last sequence number used
        self.present: dict[int, bytes] = {}  # the model: queued, in ascending order
        self.acked: list[int] = []  # every acknowledged batch, once
        self.dropped: list[int] = []
        self.dropped_bytes = 0
        self.flight: dict[int, int] = {}
        self.urgent: list[int] = []
        self.boot_last = -1  # last sequence number enqueued since the queue was opened
        self.now = START

    # back ends
    def open_storage(self) -> Any:
        raise NotImplementedError

    def close_storage(self) -> None:
        self.storage.close()

    def teardown(self) -> None:
        self.close_storage()
        shutil.rmtree(self.dir, ignore_errors=True)

    # the model's rules
    def model_enqueue(self, seq: int, data: bytes, urgent: bool) -> list[int]:
        total = sum(len(d) for d in self.present.values()) + len(data)
        gone = []
        for s, d in list(self.present.items()):
            if total <= CAPACITY:
                break
            gone.append(s)
            total -= len(d)
        for s in gone:
            self.model_drop(s)
        self.present[seq] = data
        if urgent:
            self.urgent.append(seq)
        return gone

    def model_drop(self, seq: int) -> None:
        self.dropped.append(seq)
        self.dropped_bytes += len(self.present.pop(seq))
        self.forget(seq)

    def model_ack(self, seq: int) -> None:
        assert seq not in self.acked, "batch %d acknowledged twice" % seq
        self.acked.append(seq)
        del self.present[seq]
        self.forget(seq)

    def forget(self, seq: int) -> None:
        self.flight.pop(seq, None)
        if seq in self.urgent:
            self.urgent.remove(seq)

    def expected_send(self) -> int | None:
        if self.urgent and len(self.flight) < WINDOW:
            return self.urgent[0]
        due = [s for s, t in self.flight.items() if self.now - t >= RESEND_MS]
        if due:
            return min(due)
        if len(self.flight) < WINDOW:
            for s in self.present:
                if s not in self.flight:
                    return s
        return None

    def reopen(self) -> None:
        """A crash: every in-memory object is gone; storage is opened again."""
        self.close_storage()
        self.storage = FaultyStorage(self.open_storage())
        self.queue = Queue(self.storage, CAPACITY, RESEND_MS, WINDOW)
        self.flight = {}
        self.urgent = []
        self.boot_last = -1

    # rules
    @rule(
        gap=st.integers(1, 3),
        size=st.one_of(st.integers(1, 250), st.just(CAPACITY), st.just(CAPACITY + 1)),
        urgent=st.booleans(),
    )
    def enqueue(self, gap: int, size: int, urgent: bool) -> None:
        seq = self.last + gap
        data = payload(seq, size)
        if size > CAPACITY:
            with pytest.raises(LocalError):
                self.queue.enqueue(seq, data, urgent)
            return
        gone = self.model_enqueue(seq, data, urgent)
        assert self.queue.enqueue(seq, data, urgent) == len(gone)
        self.last = self.boot_last = seq

    @precondition(lambda self: self.queue.last_seq >= 0)
    @rule(back=st.integers(0, 3))
    def enqueue_not_ascending(self, back: int) -> None:
        with pytest.raises(LocalError):
            self.queue.enqueue(max(0, self.queue.last_seq - back), b"x")

    @rule(advance=st.sampled_from([0, 1, 400, 999, 1000, 2500]))
    def send(self, advance: int) -> None:
        self.now += advance
        expected = self.expected_send()
        got = self.queue.next_to_send(self.now)
        if expected is None:
            assert got is None
            return
        assert got == (expected, self.present[expected])
        if self.urgent and self.urgent[0] == expected:
            self.urgent.pop(0)
        self.flight[expected] = self.now

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        known = list(self.present) + self.acked + self.dropped + [self.last + 1]
        seq = data.draw(st.sampled_from(known))
        expected = seq in self.present
        if expected:
            self.model_ack(seq)
        assert self.queue.ack(seq) is expected

    @rule(data=st.data())
    def ack_through(self, data: st.DataObject) -> None:
        seq = data.draw(st.integers(-1, self.last + 2))
        covered = [s for s in self.present if s <= seq]
        for s in covered:
            self.model_ack(s)
        assert self.queue.ack_through(seq) == len(covered)

    @rule()
    def link_reset(self) -> None:
        self.queue.link_reset()
        self.flight = {}

    @rule()
    def crash(self) -> None:
        self.reopen()
        for seq, data in self.present.items():
            assert self.storage.get(seq) == data

    @rule(
        calls=st.integers(1, 2),
        mode=st.sampled_from(["none", "partial", "all"]),
        op=st.sampled_from(["enqueue", "ack", "ack_through"]),
        size=st.integers(1, 300),
        data=st.data(),
    )
    def power_cut(self, calls: int, mode: str, op: str, size: int, data: st.DataObject) -> None:
        """Cut the power inside an operation; after the reboot it happened whole or not at
        all, and whatever happened is accounted for."""
        before = dict(self.present)
        loss_before = self.queue.loss()
        self.storage.arm(calls, mode)
        seq = self.last + 1
        target = -1
        try:
            if op == "enqueue":
                self.queue.enqueue(seq, payload(seq, size))
            elif op == "ack":
                target = data.draw(st.sampled_from([*list(before), seq]))
                self.queue.ack(target)
            else:
                target = data.draw(st.integers(-1, seq))
                self.queue.ack_through(target)
        except PowerCut:
            cut = True
        else:
            cut = False
        self.storage.countdown = None
        self.reopen()
        after = self.queue.seqs()
        if op == "enqueue":
            # Nothing, the drops only, or the drops and the batch: never half a drop.
            gone = [s for s in before if s not in after]
            stored = seq in after
            assert gone == list(before)[: len(gone)]
            if stored or not cut:
                assert stored
                self.last = seq
            if gone:
                expected_gone = self.model_enqueue(seq, payload(seq, size), False)
                assert gone == expected_gone
                if not stored:
                    del self.present[seq]
            elif stored:
                self.model_enqueue(seq, payload(seq, size), False)
        else:
            # Acks do not drop: what vanished was acknowledged, and only what was covered.
            for s in before:
                if s not in after:
                    self.model_ack(s)
            if op == "ack":
                assert after in (list(before), [s for s in before if s != target])
            else:
                assert after in (list(before), [s for s in before if s > target])
            if not cut:
                assert all(s != target for s in after)
                assert op == "ack" or all(s > target for s in after)
            assert self.queue.loss() == loss_before
        self.last = max(self.last, *after) if after else self.last

    # invariants
    @invariant()
    def queue_matches_the_model(self) -> None:
        assert self.queue.seqs() == list(self.present)
        assert self.queue.bytes_used == sum(len(d) for d in self.present.values())
        assert self.queue.bytes_used <= CAPACITY
        assert self.queue.in_flight() == sorted(self.flight)

    @invariant()
    def sequence_guard_knows_what_it_must(self) -> None:
        # Queued, lost or enqueued since open: never accepted again.
        known = [self.boot_last, *self.present, *self.dropped[-1:]]
        assert self.queue.last_seq >= max(known)

    @invariant()
    def loss_is_counted_exactly(self) -> None:
        dropped = self.dropped
        expected = (
            len(dropped),
            self.dropped_bytes,
            dropped[0] if dropped else None,
            dropped[-1] if dropped else None,
        )
        assert self.queue.loss() == expected
        # Drops take the oldest: nothing at or below the last loss is still queued.
        if dropped:
            assert all(s > dropped[-1] for s in self.present)

    @invariant()
    def every_batch_is_in_exactly_one_place(self) -> None:
        acked = set(self.acked)
        assert len(acked) == len(self.acked)
        assert not acked & set(self.present)
        assert not acked & set(self.dropped)
        assert not set(self.dropped) & set(self.present)


class MemoryMachine(QueueMachine):
    def open_storage(self) -> Any:
        if not hasattr(self, "memory"):
            self.memory = MemoryStorage()
        return self.memory


class FilesMachine(QueueMachine):
    def open_storage(self) -> Any:
        return FileStorage(self.dir + "/queue", sync=False)  # crashes here are in-process


class SqliteMachine(QueueMachine):
    def open_storage(self) -> Any:
        return SqliteStorage(self.dir + "/queue.db", synchronous="NORMAL")


MACHINE_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestQueueOnMemory = MemoryMachine.TestCase
TestQueueOnMemory.settings = settings(MACHINE_SETTINGS, max_examples=200)
TestQueueOnFiles = FilesMachine.TestCase
TestQueueOnFiles.settings = MACHINE_SETTINGS
TestQueueOnSqlite = SqliteMachine.TestCase
TestQueueOnSqlite.settings = settings(MACHINE_SETTINGS, max_examples=40)
