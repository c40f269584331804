"""bankiot_core.sequence: numbers reserved ahead in blocks never repeat, whatever the crash.

The rule is RFC 8613 Appendix B.1.1 (OSCORE): persist the next reservation before handing out
a number beyond the last one; after a restart, continue from the stored reservation. Crashes
are simulated at every point a power cut can hit: between two numbers, during a save before
the value is stored, and after it is stored but before ``save`` returns; for files, after the
temp file is written and before the rename. The same runs happen under real MicroPython,
including reboots that carry the board's ``/data`` from one run to the next.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core import cose, sequence
from bankiot_core.errors import ConfigError, LocalError
from bankiot_core.sequence import (
    DEFAULT_BLOCK,
    MAX_SEQUENCE,
    FileCounterStore,
    MemoryCounterStore,
    SequenceNumbers,
)
from tests.core import batch_scenarios as scenarios

SCENARIO_SOURCE = Path(scenarios.__file__).read_text()


class PowerCut(Exception):
    """The simulated power failure: everything in memory is gone."""


class WatchingStore(MemoryCounterStore):
    """Fails saves on demand, before or after storing; records what was stored when."""

    def __init__(self) -> None:
        super().__init__()
        self.cut: str | None = None  # "before" or "after" the value is stored, once

    def save(self, value: int) -> None:
        cut, self.cut = self.cut, None
        if cut == "before":
            raise PowerCut
        super().save(value)
        if cut == "after":
            raise PowerCut


def test_numbers_count_up_and_the_store_is_written_once_per_block() -> None:
    store = WatchingStore()
    seq = SequenceNumbers(store, block=5)
    taken = []
    for _ in range(12):
        n = seq.take()
        assert store.value is not None and n < store.value  # persisted before it left
        taken.append(n)
    assert taken == list(range(12))
    assert store.saves == 3 and store.value == 15 and seq.reserved == 15 and seq.next == 12


def test_a_restart_skips_the_rest_of_the_block_and_never_goes_back() -> None:
    store = MemoryCounterStore()
    seq = SequenceNumbers(store, block=10)
    assert [seq.take() for _ in range(3)] == [0, 1, 2]
    again = SequenceNumbers(store, block=10)  # memory lost
    assert again.first == 10 and again.take() == 10 and store.value == 20
    assert SequenceNumbers(MemoryCounterStore()).first == 0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6),
    st.lists(st.sampled_from(["take", "take", "take", "crash", "cut before", "cut after"])),
)
def test_no_number_repeats_across_crashes_at_any_point(block: int, steps: list[str]) -> None:
    store = WatchingStore()
    seq = SequenceNumbers(store, block=block)
    handed_out: list[int] = []
    restarts = 0
    for step in steps:
        if step == "crash":
            seq = SequenceNumbers(store, block=block)
            restarts += 1
            continue
        if step.startswith("cut"):
            store.cut = step.split()[1]
        try:
            n = seq.take()
        except PowerCut:
            seq = SequenceNumbers(store, block=block)
            restarts += 1
            continue
        if store.cut is not None:  # no save was due: the cut did not happen
            store.cut = None
        assert store.value is not None and n < store.value
        handed_out.append(n)
    assert handed_out == sorted(set(handed_out)), "a number repeated or went back"
    if handed_out:  # each restart skips at most one block
        assert handed_out[-1] - (len(handed_out) - 1) <= block * restarts


def test_the_last_number_then_exhaustion() -> None:
    store = MemoryCounterStore(MAX_SEQUENCE - 1)
    seq = SequenceNumbers(store)
    assert seq.take() == MAX_SEQUENCE - 1 and store.value == MAX_SEQUENCE + 1  # capped
    assert seq.take() == MAX_SEQUENCE
    with pytest.raises(LocalError, match="exhausted"):
        seq.take()
    with pytest.raises(LocalError, match="exhausted"):
        SequenceNumbers(store).take()
    small = SequenceNumbers(MemoryCounterStore(), block=100, limit=2)
    assert [small.take() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(LocalError):
        small.take()


def test_the_limit_is_the_cose_partial_iv_limit() -> None:
    assert MAX_SEQUENCE == cose.MAX_SEQ == 2**40 - 1


def test_bad_stored_values_and_settings_are_refused() -> None:
    for stored in (-1, MAX_SEQUENCE + 2, "5", 2.0, True):
        with pytest.raises(LocalError, match="stored sequence reservation"):
            SequenceNumbers(MemoryCounterStore(stored))
    blocks: list[Any] = [0, 2**20 + 1, 1.5]
    for block in blocks:
        with pytest.raises(ConfigError):
            SequenceNumbers(MemoryCounterStore(), block=block)
    with pytest.raises(ConfigError):
        SequenceNumbers(MemoryCounterStore(), limit=MAX_SEQUENCE + 1)
    assert 1 <= DEFAULT_BLOCK <= 2**20


def test_a_failed_save_hands_out_nothing_and_the_next_take_retries() -> None:
    store = WatchingStore()
    seq = SequenceNumbers(store, block=2)
    store.cut = "before"
    with pytest.raises(PowerCut):
        seq.take()
    assert seq.next == 0 and store.value is None
    assert seq.take() == 0 and store.value == 2


# --- The file store ---------------------------------------------------------------------------


def test_file_store_round_trip_and_format(tmp_path: Path) -> None:
    store = FileCounterStore(tmp_path / "seq")
    assert store.load() is None
    store.save(1024)
    assert (tmp_path / "seq").read_bytes() == b"1024\n"
    assert FileCounterStore(str(tmp_path / "seq")).load() == 1024
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]
    with pytest.raises(LocalError):
        store.save(-1)


@pytest.mark.parametrize("content", [b"", b"12", b"12\n\n", b"1x\n", b"-5\n", b"\n", b"9" * 25])
def test_a_damaged_counter_file_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "seq").write_bytes(content)
    with pytest.raises(LocalError, match="damaged"):
        FileCounterStore(tmp_path / "seq").load()


def test_file_store_syncs_the_file_and_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = sequence._fsync
    assert real is not None

    def recording(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(sequence, "_fsync", recording)
    FileCounterStore(tmp_path / "seq").save(7)
    assert len(synced) == 2  # the temp file, then the directory after the rename
    FileCounterStore(tmp_path / "seq2", sync=False).save(7)
    assert len(synced) == 2


class CutBeforeRename(FileCounterStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.cut = False

    def _rename(self, source: str, target: str) -> None:
        if self.cut:
            self.cut = False
            raise PowerCut
        super()._rename(source, target)


def test_file_store_survives_a_cut_between_temp_write_and_rename(tmp_path: Path) -> None:
    path = tmp_path / "seq"
    store = CutBeforeRename(path)
    seq = SequenceNumbers(store, block=10)
    assert [seq.take() for _ in range(10)] == list(range(10))
    store.cut = True
    with pytest.raises(PowerCut):
        seq.take()  # needs block 10..19: the temp file holds 20, the rename never happened
    assert (tmp_path / "seq").read_bytes() == b"10\n"
    assert (tmp_path / "seq.tmp").read_bytes() == b"20\n"
    seq = SequenceNumbers(CutBeforeRename(path), block=10)  # reboot
    assert seq.first == 10 and seq.take() == 10
    assert (tmp_path / "seq").read_bytes() == b"20\n"
    assert not (tmp_path / "seq.tmp").exists()


def test_a_cut_while_writing_the_temp_file_leaves_the_old_value(tmp_path: Path) -> None:
    path = tmp_path / "seq"
    FileCounterStore(path).save(40)
    (tmp_path / "seq.tmp").write_bytes(b"5")  # a temp write cut short
    assert FileCounterStore(path).load() == 40


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["take", "take", "take", "crash", "cut"]), max_size=40))
def test_file_store_never_repeats_across_cuts(tmp_path_factory, steps: list[str]) -> None:
    path = tmp_path_factory.mktemp("seq") / "seq"
    store = CutBeforeRename(path)
    seq = SequenceNumbers(store, block=3)
    handed_out: list[int] = []
    for step in steps:
        if step == "crash":
            store = CutBeforeRename(path)
            seq = SequenceNumbers(store, block=3)
            continue
        store.cut = step == "cut"
        try:
            handed_out.append(seq.take())
        except PowerCut:
            store = CutBeforeRename(path)
            seq = SequenceNumbers(store, block=3)
        store.cut = False
    assert handed_out == sorted(set(handed_out))


# --- MicroPython --------------------------------------------------------------------------------


def test_crash_scenario_never_repeats() -> None:
    results: list[Any] = scenarios.sequence_crashes()
    assert len(results) == 8
    for at, after, numbers, stored in results:
        assert numbers == sorted(set(numbers)), (at, after)
        assert stored is not None and numbers[-1] < stored
        # a cut before storing loses nothing; after storing, the rest of one block of 3
        assert len(numbers) == 9
        assert numbers[-1] - 8 <= (3 if after else 0)


@pytest.mark.micropython
def test_crash_scenario_under_micropython_matches_cpython(micropython) -> None:
    run = micropython.run(
        "import json, batch_scenarios\nprint(json.dumps(batch_scenarios.sequence_crashes()))",
        files={"/lib/batch_scenarios.py": SCENARIO_SOURCE},
    ).check()
    assert json.loads(run.stdout) == json.loads(json.dumps(scenarios.sequence_crashes()))


@pytest.mark.micropython
def test_reboots_on_micropython_carry_the_counter_in_flash(micropython) -> None:
    files = {"/lib/batch_scenarios.py": SCENARIO_SOURCE}

    def boot(code: str, flash: dict[str, bytes]) -> tuple[Any, dict[str, bytes]]:
        run = micropython.run(
            "import json, os, batch_scenarios as s\n"
            "try:\n    os.mkdir('/data')\nexcept OSError:\n    pass\n"
            "print(json.dumps(%s))\n" % code,
            files={**files, **flash},
            export=["/data"],
        ).check()
        return json.loads(run.stdout), run.files

    first, flash = boot("s.file_sequence('/data/seq', 3)", {})
    assert first == [0, [0, 1, 2], "10\n"]
    assert flash == {"/data/seq": b"10\n"}
    second, flash = boot("s.file_sequence('/data/seq', 12)", flash)
    assert second == [10, list(range(10, 22)), "30\n"]
    # Power fails on the second reservation, after the temp file, before the rename.
    third, flash = boot("s.file_sequence_cut('/data/seq', 20)", flash)
    assert third == [list(range(30, 40)), "power cut before rename"]
    assert flash == {"/data/seq": b"40\n", "/data/seq.tmp": b"50\n"}
    fourth, flash = boot("s.file_sequence('/data/seq', 2)", flash)
    assert fourth == [40, [40, 41], "50\n"]  # 30..39 never again
    assert flash == {"/data/seq": b"50\n"}
