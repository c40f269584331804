"""bankiot_core.replay: the per-gateway anti-replay window (RFC 4303 3.4.3, RFC 8613 7.4).

The reference is the definition itself, written as a set: a sequence number is fresh if it
is above every accepted one, or within the last ``size`` below the highest and not yet
accepted. Hypothesis drives the window and the set side by side; fixed stories (derived by
hand in the comments) run on CPython and under real MicroPython from
``sealing_scenario.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core.errors import ConfigError, DecodeError, RemoteError, ReplayError
from bankiot_core.replay import DEFAULT_SIZE, MAX_SIZE, ReplayWindow
from tests.core import sealing_scenario as scenario

SCENARIO_SOURCE = Path(scenario.__file__).read_text()


class SetModel:
    """The window's definition, with no bitmap: every accepted number in a set."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.accepted: set[int] = set()

    def verdict(self, seq: int) -> str:
        top = max(self.accepted, default=-1)
        if seq > top:
            return "fresh"
        if top - seq >= self.size:
            return "too_old"
        return "replayed" if seq in self.accepted else "fresh"


@settings(max_examples=200, deadline=None)
@given(
    size=st.sampled_from([8, 16, 64, 128]),
    steps=st.lists(
        st.tuples(st.sampled_from(["check", "accept"]), st.integers(-80, 150)), max_size=60
    ),
    base=st.sampled_from([0, 1000, (1 << 64) - 200]),
)
def test_window_matches_its_definition(size: int, steps: list, base: int) -> None:
    window = ReplayWindow(size)
    model = SetModel(size)
    counts = {"accepted": 0, "replayed": 0, "too_old": 0}
    for op, offset in steps:
        seq = base + offset
        if not 0 <= seq < 1 << 64:
            continue
        verdict = model.verdict(seq)
        if verdict == "fresh":
            getattr(window, op)(seq)
            if op == "accept":
                model.accepted.add(seq)
                counts["accepted"] += 1
        else:
            with pytest.raises(ReplayError):
                getattr(window, op)(seq)
            counts[verdict] += 1
        assert window.counters() == counts
        assert window.top == max(model.accepted, default=-1)
        restored = ReplayWindow.from_state(window.state())
        assert (restored.top, restored.bitmap, restored.size) == (window.top, window.bitmap, size)
        for probe in range(window.top - size - 2, window.top + 3):
            if probe >= 0:
                in_window = window.top - probe < size
                assert window.seen(probe) == (probe in model.accepted and in_window)


# Accepting 0, 5, 3, 3, 100, 36, 37, 2**64 - 1, 0 in a 64-wide window:
# 0, 5, 3 fresh; 3 again replayed; 100 moves the top (window 37..100); 36 is too old, 37 is
# the oldest number still inside; 2**64 - 1 moves the top to the end of the range; 0 is
# far too old. Final: top 2**64 - 1 alone in the bitmap.
STORIES: list[tuple[list[int], int, dict[str, Any]]] = [
    (
        [0, 5, 3, 3, 100, 36, 37, (1 << 64) - 1, 0],
        64,
        {
            "results": [
                "ok",
                "ok",
                "ok",
                "ReplayError: sequence number 3 was already accepted",
                "ok",
                "ReplayError: sequence number 36 is too old: the window starts at 37",
                "ok",
                "ok",
                "ReplayError: sequence number 0 is too old: the window starts at "
                "18446744073709551552",
            ],
            "state": "ff" * 8 + "00" * 7 + "01",
            "restored equal": True,
            "counters": {"accepted": 6, "replayed": 1, "too_old": 2},
        },
    ),
    # Out of order inside an 8-wide window: 10, 7, 9, 3, 2, 8, 7. 3 is the oldest inside
    # (10 - 7); 2 is too old; 7 again is a replay. Bits from top 10: 10, 9, 8, 7, 3 ->
    # offsets 0, 1, 2, 3, 7 -> 0b10001111 = 0x8f.
    (
        [10, 7, 9, 3, 2, 8, 7],
        8,
        {
            "results": [
                "ok",
                "ok",
                "ok",
                "ok",
                "ReplayError: sequence number 2 is too old: the window starts at 3",
                "ok",
                "ReplayError: sequence number 7 was already accepted",
            ],
            "state": "000000000000000a" + "8f",
            "restored equal": True,
            "counters": {"accepted": 5, "replayed": 1, "too_old": 1},
        },
    ),
    # A jump wider than the window forgets everything below it: 1, 2, then 30 in a 16-wide
    # window -> top 30, bitmap 1; 14 is too old (30 - 16), 15 is inside and fresh.
    (
        [1, 2, 30, 14, 15],
        16,
        {
            "results": [
                "ok",
                "ok",
                "ok",
                "ReplayError: sequence number 14 is too old: the window starts at 15",
                "ok",
            ],
            "state": "000000000000001e" + "8001",
            "restored equal": True,
            "counters": {"accepted": 4, "replayed": 0, "too_old": 1},
        },
    ),
]


@pytest.mark.parametrize(("seqs", "size", "expected"), STORIES)
def test_stories_on_cpython(seqs: list[int], size: int, expected: dict) -> None:
    assert scenario.replay_story(seqs, size) == expected


@pytest.mark.micropython
def test_stories_under_micropython(micropython) -> None:
    code = "import json, sealing_scenario as s\n"
    for seqs, size, _ in STORIES:
        code += "print(json.dumps(s.replay_story(%s, %d)))\n" % (json.dumps(seqs), size)
    run = micropython.run(code, files={"/lib/sealing_scenario.py": SCENARIO_SOURCE}).check()
    got = [json.loads(line) for line in run.stdout.splitlines()]
    assert got == [expected for _, _, expected in STORIES]


def test_check_changes_nothing_accept_records() -> None:
    window = ReplayWindow()
    window.check(7)
    window.check(7)
    assert (window.top, window.bitmap) == (-1, 0)
    window.accept(7)
    with pytest.raises(ReplayError, match="already accepted"):
        window.check(7)
    assert window.counters() == {"accepted": 1, "replayed": 1, "too_old": 0}
    window.check(6)  # below the top but not seen: still fresh
    window.accept(6)
    assert (window.top, window.bitmap) == (7, 0b11)


def test_the_oldest_number_inside_and_the_first_outside() -> None:
    window = ReplayWindow(64)
    window.accept(100)
    window.accept(37)  # 100 - 63: the last slot of the window
    assert window.bitmap == 1 | 1 << 63
    with pytest.raises(ReplayError, match="too old: the window starts at 37"):
        window.accept(36)


def test_state_bytes_layout() -> None:
    window = ReplayWindow(64)
    assert window.state() == bytes(16)
    for seq in (0, 1, 2, 5):
        window.accept(seq)
    # top 5; accepted 5, 2, 1, 0 -> offsets 0, 3, 4, 5 -> 0b111001
    assert window.state().hex() == "0000000000000005" + "0000000000000039"
    empty = ReplayWindow.from_state(bytes(16))
    assert (empty.top, empty.bitmap, empty.size) == (-1, 0, 64)
    empty.accept(0)  # a restored empty window accepts sequence number 0
    assert ReplayWindow.from_state(bytes(8) + bytes(128)).size == MAX_SIZE
    assert ReplayWindow.from_state(bytearray(bytes(9))).size == 8


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (bytes(8), "no valid size"),
        (bytes(7), "no valid size"),
        (bytes(8 + 129), "no valid size"),
        (bytes.fromhex("0000000000000005" + "02"), "top is not marked"),
        (bytes.fromhex("0000000000000005" + "00"), "top is not marked"),
        (bytes.fromhex("0000000000000001" + "05"), "below 0"),
        ("00" * 16, "must be bytes"),
    ],
)
def test_corrupt_state_raises_decode_error(state: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        ReplayWindow.from_state(state)


@pytest.mark.parametrize("size", [0, 4, 7, 12, MAX_SIZE + 8, "64", 64.0, True])
def test_bad_sizes_raise_config_error(size: Any) -> None:
    with pytest.raises(ConfigError, match="multiple of 8"):
        ReplayWindow(size)


def test_sequence_number_range() -> None:
    window = ReplayWindow()
    assert window.size == DEFAULT_SIZE == 64
    window.accept((1 << 64) - 1)
    for bad in (-1, 1 << 64):
        with pytest.raises(DecodeError, match="out of range"):
            window.accept(bad)
    for bad in (1.0, True, "5", None):
        with pytest.raises(ConfigError, match="must be an int"):
            window.check(bad)
    assert issubclass(ReplayError, RemoteError)
    assert repr(window) == "ReplayWindow(size=64, top=18446744073709551615, bitmap=0x1)"
