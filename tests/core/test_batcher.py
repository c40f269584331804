"""bankiot_core.batcher: two lanes, limits, timing by the times passed in, one sequence space.

Every payload the batcher returns is read back with ``cbor2`` (independent of the core) or
``batch.decode_batch`` (itself checked against cbor2 in test_batch.py). The lane scenario runs
again under real MicroPython and must give the same batches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core.batch import (
    CLOCK_TICKS,
    CLOCK_UNIX_MS,
    COUNTER_NAMES,
    BatchReading,
    Health,
    decode_batch,
)
from bankiot_core.batcher import LANE_ROUTINE, LANE_URGENT, Batcher, ReadyBatch
from bankiot_core.errors import ConfigError
from bankiot_core.filters import Output
from bankiot_core.presence import PresenceEvent
from bankiot_core.readings import Reading
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers
from bankiot_core.ticks import MASK, PERIOD
from tests.core import batch_scenarios as scenarios

SCENARIO_SOURCE = Path(scenarios.__file__).read_text()

A = bytes.fromhex(scenarios.A)
B = bytes.fromhex(scenarios.B)
C = bytes.fromhex(scenarios.C)


def temp(value: float) -> Reading:
    return Reading("temperature", value, "°C")


def batcher(**limits: Any) -> Batcher:
    return Batcher(SequenceNumbers(MemoryCounterStore()), **limits)


def records(ready: ReadyBatch) -> list[Any]:
    return decode_batch(ready.payload).records


def lanes_and_seqs(ready: list[ReadyBatch]) -> list[tuple[str, int]]:
    return [(r.lane, r.seq) for r in ready]


# --- Lanes ----------------------------------------------------------------------------------


def test_routine_waits_and_urgent_leaves_at_once_in_its_own_batch() -> None:
    b = batcher(max_delay_ms=1000)
    assert b.add(Output(A, (temp(21.5),), ()), 0) == []
    ready = b.add(Output(B, (Reading("button", "press", "event"),), ()), 10)
    assert lanes_and_seqs(ready) == [(LANE_URGENT, 0)]
    assert records(ready[0]) == [BatchReading(B, 10, "button", "press", "event")]
    assert b.pending() == 1  # the temperature still waits
    ready = b.poll(1000)
    assert lanes_and_seqs(ready) == [(LANE_ROUTINE, 1)]
    assert records(ready[0]) == [BatchReading(A, 0, "temperature", 21.5, "°C")]


def test_presence_events_are_urgent_with_their_frame_and_from_tick() -> None:
    b = batcher()
    enter = PresenceEvent("enter", A, 5, -60, 70)
    ready = b.add(Output(A, (temp(20.25),), (enter,)), 5)
    assert lanes_and_seqs(ready) == [(LANE_URGENT, 0)]
    assert records(ready[0]) == [enter, BatchReading(A, 5, "temperature", 20.25, "°C")]
    # One wire record: the event and the reading of one frame share the time.
    assert cbor2.loads(ready[0].payload)[3] == [A, [0, -1, [-60, 70], 0, 2025]]
    leave = PresenceEvent("leave", A, 9000, -90, 0)
    ready = b.add_events([leave], 9000)
    assert lanes_and_seqs(ready) == [(LANE_URGENT, 1)] and records(ready[0]) == [leave]
    assert b.add_events([], 9001) == []


def test_an_evicted_devices_leave_goes_in_its_own_group() -> None:
    b = batcher()
    evicted = PresenceEvent("leave", B, 50, -80, 0)
    ready = b.add(Output(A, (temp(19.0),), (evicted,)), 50)
    assert records(ready[0]) == [evicted, BatchReading(A, 50, "temperature", 19.0, "°C")]
    groups = cbor2.loads(ready[0].payload)[3:]
    assert [g[0] for g in groups] == [B, A]


def test_events_take_their_whole_frame_urgent_and_alarms_only_when_raised() -> None:
    b = batcher(max_delay_ms=60000)
    frame = (
        Reading("dimmer", "rotate_left", "event"),
        Reading("dimmer_steps", 3, "event"),
        Reading("battery", 80, "%"),
    )
    ready = b.add(Output(A, frame, ()), 0)
    assert lanes_and_seqs(ready) == [(LANE_URGENT, 0)]
    assert [r.metric for r in records(ready[0])] == ["dimmer", "dimmer_steps", "battery"]
    assert b.add(Output(A, (Reading("smoke", False, ""),), ()), 1) == []  # cleared: routine
    assert b.add(Output(A, (Reading("tamper", 0, ""),), ()), 2) == []
    ready = b.add(Output(A, (Reading("smoke", True, ""),), ()), 3)  # raised: urgent
    assert lanes_and_seqs(ready) == [(LANE_URGENT, 1)]
    custom = batcher(urgent_metrics=("door",))
    assert custom.add(Output(A, (Reading("smoke", True, ""),), ()), 0) == []
    assert lanes_and_seqs(custom.add(Output(A, (Reading("door", True, ""),), ()), 1)) == [
        (LANE_URGENT, 0)
    ]


def test_health_travels_routine_in_the_gateway_group() -> None:
    b = batcher(max_delay_ms=100)
    assert b.add_health({"frames_in": 7, "lost_first": None}, 0) == []
    assert b.add_health({}, 1) == []  # nothing to say: no record
    ready = b.poll(100)
    assert lanes_and_seqs(ready) == [(LANE_ROUTINE, 0)]
    assert records(ready[0]) == [Health(0, {"frames_in": 7, "lost_first": None})]
    assert cbor2.loads(ready[0].payload)[3][0] is None


def test_results_leave_urgent_and_running_travels_routine_in_the_gateway_group() -> None:
    steps = json.loads(json.dumps(scenarios.batcher_gateway_records()))
    frames_in = COUNTER_NAMES.index("frames_in")
    assert steps == [
        ["t0 health", []],
        ["t10 running", []],
        # urgent at once, in a batch of its own: [dt, -3, id, status, detail]
        ["t20 result", [["urgent", 0, [0, 20, [["result", 20, 41, 0, "rebooted"]]]]]],
        # a customer's action at the kiosk: urgent too, [dt, -5, kind, id, wearable, detail]
        ["t30 kiosk", [["urgent", 1, [0, 30, [["kiosk", 30, 0, 9, scenarios.A, ""]]]]]],
        # refused before anything changed: the routine lane still holds its two entries
        ["status 9", "LocalError", 2],
        ["detail of 201 bytes", "LocalError", 2],
        ["software empty", "LocalError", 2],
        ["kiosk kind 7", "LocalError", 2],
        ["kiosk wearable of 5 bytes", "LocalError", 2],
        ["kiosk detail of 65 bytes", "LocalError", 2],
        [
            "t100 poll",
            [
                [
                    "routine",
                    2,
                    [0, 0, [["health", 0, [["frames_in", 1]]], ["running", 10, "fw 1.0", 7]]],
                ]
            ],
        ],
        ["too large", []],  # a result that fits no batch of 32 bytes: dropped, counted
        ["counters", 1],
    ]
    # The wire form, read by cbor2: [1, clock 0, base, [null, health, running]]
    b = batcher(max_delay_ms=100)
    b.add_health({"frames_in": 1}, 0)
    b.add_running("fw 1.0", None, 10)
    (ready,) = b.poll(100)
    assert cbor2.loads(ready.payload) == [
        1,
        0,
        0,
        [None, [0, frames_in, 1], [10, -4, "fw 1.0", None]],
    ]
    (ready,) = b.add_result(2**40 - 1, 3, "", 200)
    assert cbor2.loads(ready.payload) == [1, 0, 200, [None, [0, -3, 2**40 - 1, 3, ""]]]


@pytest.mark.micropython
def test_gateway_records_scenario_under_micropython_matches_cpython(micropython) -> None:
    run = micropython.run(
        "import json, batch_scenarios\n"
        "print(json.dumps(batch_scenarios.batcher_gateway_records()))",
        files={"/lib/batch_scenarios.py": SCENARIO_SOURCE},
    ).check()
    expected = json.loads(json.dumps(scenarios.batcher_gateway_records()))
    assert json.loads(run.stdout) == expected


# --- Timing: only the times passed in ----------------------------------------------------------


def test_routine_is_due_exactly_after_the_delay_and_due_in_says_when() -> None:
    b = batcher(max_delay_ms=1000)
    assert b.due_in(0) is None
    b.add(Output(A, (temp(21.0),), ()), 100)
    assert b.due_in(100) == 1000 and b.due_in(600) == 500
    b.add(Output(B, (temp(22.0),), ()), 600)  # joins the open batch; the deadline stays
    assert b.due_in(600) == 500
    assert b.poll(1099) == [] and b.due_in(1099) == 1
    ready = b.poll(1100)
    assert len(ready) == 1 and [r.at_ms for r in records(ready[0])] == [100, 600]
    assert b.due_in(1100) is None and b.poll(5000) == []


def test_a_due_batch_leaves_before_a_late_frame_joins_it() -> None:
    b = batcher(max_delay_ms=1000)
    b.add(Output(A, (temp(21.0),), ()), 0)
    ready = b.add(Output(A, (temp(22.0),), ()), 2500)  # no poll in between
    assert len(ready) == 1 and [r.at_ms for r in records(ready[0])] == [0]
    assert b.pending() == 1 and b.due_in(2500) == 1000


def test_zero_delay_sends_every_frame_at_once() -> None:
    b = batcher(max_delay_ms=0)
    ready = b.add(Output(A, (temp(21.0),), ()), 0)
    assert lanes_and_seqs(ready) == [(LANE_ROUTINE, 0)]


def test_times_wrap_with_the_ticks() -> None:
    b = batcher(max_delay_ms=1000)
    start = PERIOD + MASK - 300  # 300 ms before the ticks wrap
    b.add(Output(A, (temp(21.0),), ()), start)
    b.add(Output(A, (temp(21.5),), ()), start + 500)
    assert b.poll(start + 999) == []
    ready = b.poll(start + 1000)
    decoded = decode_batch(ready[0].payload)
    assert decoded.clock == CLOCK_TICKS and decoded.base_ms == start & MASK
    assert [r.at_ms - decoded.base_ms for r in decoded.records] == [0, 500]


def test_unix_clock_once_set_and_kept_fresh_by_the_batcher() -> None:
    b = batcher(max_delay_ms=1000)
    b.add(Output(A, (temp(21.0),), ()), 10)  # opened before the clock is known: ticks
    b.set_clock(20, 1_700_000_000_000)
    ready = b.poll(1010)
    assert decode_batch(ready[0].payload).clock == CLOCK_TICKS
    ready = b.add(Output(A, (Reading("button", "press", "event"),), ()), 2020)
    decoded = decode_batch(ready[0].payload)
    assert decoded.clock == CLOCK_UNIX_MS and decoded.records[0].at_ms == 1_700_000_002_000
    b.set_clock(2030, 1_700_000_002_510)  # a new NTP answer: 500 ms later than counted
    ready = b.add(Output(A, (Reading("button", "press", "event"),), ()), 2040)
    decoded = decode_batch(ready[0].payload)
    assert decoded.base_ms == 1_700_000_002_000 and decoded.records[0].at_ms == 1_700_000_002_520
    assert cbor2.loads(ready[0].payload)[2:4] == [1_700_000_002, [A, [520, 8, "press"]]]
    # Days later, across several wraps of the tick period: the batcher moves its reference
    # along as long as it is called (here once a day, with poll).
    day = 86_400_000
    now = 2020
    for _ in range(40):
        now += day
        b.poll(now)
    ready = b.add(Output(A, (Reading("button", "press", "event"),), ()), now + 5)
    assert records(ready[0])[0].at_ms == 1_700_000_002_510 + (now + 5 - 2030)


# --- Limits -------------------------------------------------------------------------------------


def test_a_batch_full_by_count_leaves_at_once() -> None:
    b = batcher(max_readings=3, max_delay_ms=60000)
    assert b.add(Output(A, (temp(20.0), Reading("humidity", 50, "%")), ()), 0) == []
    ready = b.add(Output(B, (temp(21.0),), ()), 1)
    assert lanes_and_seqs(ready) == [(LANE_ROUTINE, 0)] and len(records(ready[0])) == 3
    ready = b.add(Output(A, (temp(20.0), Reading("humidity", 50, "%")), ()), 2)
    assert ready == [] and b.pending() == 2
    ready = b.add(Output(B, (temp(22.0), temp(23.0)), ()), 3)  # would make 4: closes first
    assert [len(records(r)) for r in ready] == [2] and b.pending() == 2


def test_a_batch_never_exceeds_max_bytes_and_big_frames_are_split() -> None:
    b = batcher(max_bytes=64, max_delay_ms=60000)
    text = [Reading("text_%d" % i, "x" * 10, "") for i in range(1, 7)]
    ready = b.add(Output(A, tuple(text), ()), 0)  # about 90 bytes: split, one per reading
    ready += b.flush()
    assert all(len(r.payload) <= 64 for r in ready)
    got = [r for batch in ready for r in records(batch)]
    assert [r.metric for r in got] == ["text_%d" % i for i in range(1, 7)]
    assert b.counters()["entries_too_large"] == 0


def test_an_entry_too_large_for_any_batch_is_dropped_and_counted() -> None:
    b = batcher(max_bytes=64)
    ready = b.add(Output(A, (Reading("raw", bytes(100), ""), temp(21.0)), ()), 0)
    ready += b.flush()
    assert [r.metric for batch in ready for r in records(batch)] == ["temperature"]
    assert b.counters()["entries_too_large"] == 1


def test_limits_are_checked() -> None:
    seq = SequenceNumbers(MemoryCounterStore())
    bad: dict[str, Any]
    for bad in (
        {"max_readings": 0},
        {"max_readings": 1.5},
        {"max_bytes": 16},
        {"max_delay_ms": -1},
        {"max_delay_ms": 2**30},
        {"urgent_metrics": (1,)},
    ):
        with pytest.raises(ConfigError):
            Batcher(seq, **bad)
    with pytest.raises(ConfigError, match="take"):
        Batcher(object())


# --- Vital signs in every batch -------------------------------------------------------------------

VITAL_NAMES = ("heap_free", "uptime_s", "depth")
# The largest values a counter may hold: every value takes its longest CBOR head (9 bytes).
WORST: dict[str, int | None] = {
    "heap_free": 2**64 - 1,
    "uptime_s": -(2**64),
    "depth": 2**64 - 1,
    "other": 1,
}


def vitals_batcher(source: dict[str, int | None], **limits: Any) -> Batcher:
    return batcher(vitals=lambda: dict(source), vitals_names=VITAL_NAMES, **limits)


def healths(ready: ReadyBatch) -> list[Health]:
    return [r for r in records(ready) if isinstance(r, Health)]


def test_every_batch_carries_the_vitals_as_they_stand_when_it_closes() -> None:
    source: dict[str, int | None] = {"heap_free": 80000, "uptime_s": 5, "depth": 0, "x": 9}
    b = vitals_batcher(source, max_delay_ms=1000)
    assert b.add(Output(A, (temp(21.5),), ()), 0) == []
    source["uptime_s"] = 6
    [urgent] = b.add(Output(B, (Reading("button", "press", "event"),), ()), 10)
    source.update(uptime_s=7, depth=1)
    [routine] = b.poll(1000)
    # Only the names asked for; at the time the batch closed, in the gateway's group.
    assert healths(urgent) == [Health(10, {"heap_free": 80000, "uptime_s": 6, "depth": 0})]
    assert healths(routine) == [Health(1000, {"heap_free": 80000, "uptime_s": 7, "depth": 1})]
    assert isinstance(records(routine)[-1], Health)  # after the readings: added as it closed
    assert b.pending() == 0 and b.counters()["batches_routine"] == 1


def test_a_batch_with_a_full_health_record_gets_no_second_one() -> None:
    b = vitals_batcher(dict.fromkeys(VITAL_NAMES, 1))
    b.add_health({"frames_in": 4, "depth": 3}, 0)
    [ready] = b.flush()
    assert healths(ready) == [Health(0, {"frames_in": 4, "depth": 3})]


def test_flush_dates_the_vitals_at_the_newest_record() -> None:
    b = vitals_batcher({"heap_free": 1, "depth": None}, max_delay_ms=60000)
    b.add(Output(A, (temp(20.0),), ()), 100)
    b.add(Output(A, (temp(21.0),), ()), 250)
    [ready] = b.flush()
    assert healths(ready) == [Health(250, {"heap_free": 1, "depth": None})]


@pytest.mark.parametrize("max_bytes", [64, 100, 256, 960])
def test_with_the_vitals_a_batch_still_fits_max_bytes(max_bytes: int) -> None:
    b = vitals_batcher(WORST, max_bytes=max(max_bytes, 160), max_delay_ms=60000, max_readings=4096)
    limit = b.max_bytes
    ready = []
    for i in range(200):  # frames of every size, many batches full by bytes
        text = "x" * (i % 23)
        ready += b.add(Output(A if i % 2 else B, (temp(i / 4), Reading("text", text, "")), ()), i)
    ready += b.flush()
    assert len(ready) > 3
    assert all(len(r.payload) <= limit for r in ready)
    assert all(len(healths(r)) == 1 and len(healths(r)[0].counters) == 3 for r in ready)
    # The room kept is no more than the worst case needs (the vitals' dt here takes 1 byte
    # of the 5 kept for it): batches full by bytes come close to the limit.
    assert max(len(r.payload) for r in ready) > limit - 16
    assert b.counters()["entries_too_large"] == 0


def test_vitals_need_room_in_a_batch() -> None:
    with pytest.raises(ConfigError, match="vitals"):
        vitals_batcher(WORST, max_bytes=64)
    plain = batcher(max_bytes=64)  # without vitals the old floor stays
    assert plain.max_bytes == 64


# --- One sequence space, and a store that fails ---------------------------------------------------


class FlakyStore(MemoryCounterStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def save(self, value: int) -> None:
        if self.fail:
            raise OSError(28, "no space left")
        super().save(value)


def test_a_failing_sequence_store_keeps_the_batch_until_a_number_is_had() -> None:
    store = FlakyStore()
    b = Batcher(SequenceNumbers(store, block=1))
    store.fail = True
    with pytest.raises(OSError):
        b.add(Output(A, (Reading("button", "press", "event"),), ()), 0)
    assert b.pending() == 1 and b.due_in(1) == 0
    store.fail = False
    ready = b.poll(1)
    assert lanes_and_seqs(ready) == [(LANE_URGENT, 0)]
    assert records(ready[0]) == [BatchReading(A, 0, "button", "press", "event")]


POOL = [
    temp(21.5),
    temp(-3.25),
    Reading("humidity", 45.5, "%"),
    Reading("battery", 90, "%"),
    Reading("heart_rate", 71, "bpm"),
    Reading("button", "press", "event"),
    Reading("smoke", True, ""),
    Reading("text", "hello", ""),
    Reading("raw", bytes(70), ""),  # alone too large for max_bytes 80 (89 bytes), not for 120
]

OPERATIONS = st.lists(
    st.tuples(
        st.integers(0, 700),  # time step
        st.sampled_from(["add", "add", "add", "events", "health", "poll"]),
        st.sampled_from([A, B, C]),
        st.lists(st.sampled_from(POOL), max_size=5, unique=True),
        st.booleans(),  # a presence event with the frame
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(
    OPERATIONS,
    st.integers(1, 8),
    st.sampled_from([80, 120, 400]),
    st.sampled_from([0, 500, 2000]),
)
def test_every_entry_leaves_once_within_the_limits_numbered_in_one_space(
    operations: list[Any], max_readings: int, max_bytes: int, max_delay_ms: int
) -> None:
    b = batcher(max_readings=max_readings, max_bytes=max_bytes, max_delay_ms=max_delay_ms)
    too_large = "raw" if max_bytes == 80 else None
    now = 0
    sent: list[tuple[Any, ...]] = []
    ready: list[ReadyBatch] = []
    for step, op, address, readings, presence in operations:
        now += step
        if op == "add":
            events = (PresenceEvent("enter", address, now, -50, 60),) if presence else ()
            got = b.add(Output(address, tuple(readings), events), now)
            sent += [("p", address, now)] * len(events)
            sent += [("r", address, now, r.metric) for r in readings]
            urgent = presence or any(r.unit == "event" or r.metric == "smoke" for r in readings)
            if urgent and (readings or events):
                urgent_out = [r for r in got if r.lane == LANE_URGENT]
                # urgent entries leave in this call, unless dropped as too large
                assert urgent_out or all(r.metric == too_large for r in readings)
        elif op == "events":
            got = b.add_events([PresenceEvent("leave", address, now, -90, 0)], now)
            assert [r.lane for r in got][-1:] == [LANE_URGENT]
            sent.append(("p", address, now))
        elif op == "health":
            got = b.add_health({"frames_in": now}, now)
            sent.append(("h", now))
        else:
            got = b.poll(now)
        ready += got
        due = b.due_in(now)
        assert due is None or due > 0, "a due batch was left waiting"
    ready += b.flush()
    assert b.pending() == 0
    assert [r.seq for r in ready] == list(range(len(ready)))
    received: list[tuple[Any, ...]] = []
    for r in ready:
        assert len(r.payload) <= max_bytes
        got_records = records(r)
        assert 1 <= len(got_records) <= max_readings
        for rec in got_records:
            if isinstance(rec, PresenceEvent):
                received.append(("p", rec.address, rec.at_ms))
            elif isinstance(rec, Health):
                received.append(("h", rec.at_ms))
            else:
                received.append(("r", rec.address, rec.at_ms, rec.metric))
    dropped = b.counters()["entries_too_large"]
    assert dropped == sum(1 for s in sent if s[0] == "r" and s[3] == too_large)
    assert sorted(received) == sorted(s for s in sent if not (s[0] == "r" and s[3] == too_large))


# --- MicroPython --------------------------------------------------------------------------------


def test_lane_scenario_gives_what_the_lanes_promise() -> None:
    steps = json.loads(json.dumps(scenarios.batcher_lanes()))
    summary: dict[str, Any] = {}
    batches: dict[int, Any] = {}
    for name, *rest in steps:
        if name in ("t10 due_in", "pending", "counters"):
            summary[name] = rest
            continue
        summary[name] = [[lane, seq] for lane, seq, _ in rest[0]]
        batches.update((seq, decoded) for _, seq, decoded in rest[0])
    assert summary == {
        "t0 temperature": [],
        "t10 due_in": [990],
        "t10 button": [["urgent", 0]],
        "t20 humidity": [],
        "t999 poll": [],
        "t1000 poll": [["routine", 1]],  # max_delay_ms 1000 after the first entry
        "t1100 four readings": [["routine", 2]],  # max_readings 4: full at once
        "t1200 presence from tick": [["urgent", 3]],
        "t1300 smoke cleared": [],
        "t1310 smoke raised": [["urgent", 4]],
        "t1400 health": [],
        "pending": [2, 900],
        "flush": [["routine", 5]],
        # 6 batches from blocks of 4 numbers: two saves, the reservation now 8.
        "counters": [
            [["batches_routine", 3], ["batches_urgent", 3], ["entries_too_large", 0]],
            8,
            2,
        ],
    }
    assert batches[1] == [
        0,
        0,
        [
            ["reading", scenarios.A, 0, "temperature", 21.5, "°C"],
            ["reading", scenarios.A, 20, "humidity", 40.0, "%"],
        ],
    ]
    assert batches[5][2] == [
        ["reading", scenarios.A, 1300, "smoke", False, ""],
        ["health", 1400, [["frames_in", 9]]],
    ]


@pytest.mark.micropython
def test_lane_scenario_under_micropython_matches_cpython(micropython) -> None:
    run = micropython.run(
        "import json, batch_scenarios\nprint(json.dumps(batch_scenarios.batcher_lanes()))",
        files={"/lib/batch_scenarios.py": SCENARIO_SOURCE},
    ).check()
    assert json.loads(run.stdout) == json.loads(json.dumps(scenarios.batcher_lanes()))
