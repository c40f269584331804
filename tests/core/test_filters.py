"""bankiot_core.filters and its parts: allow-list with private addresses, duplicates,
deadband and heartbeat, rate limit, presence, configuration.

Deterministic: every time is passed in. The behavioural scenarios live in
``filter_scenarios.py`` (MicroPython-compatible); they run here on CPython, again under real
MicroPython, and both results must equal what the behaviour's specification predicts
(``EXPECTED``, derived in the comments). Hypothesis checks the properties the filters promise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core import rpa
from bankiot_core.errors import ConfigError, LocalError
from bankiot_core.filterconfig import defaults, load_filter_config
from bankiot_core.filters import COUNTERS, FilterPipeline
from bankiot_core.presence import PresenceEvent
from bankiot_core.readings import Reading
from bankiot_core.ticks import MASK, PERIOD, elapsed
from hw.fakes import cryptolib as fake_cryptolib
from tests.core import filter_scenarios as scenarios

SCENARIO_SOURCE = Path(scenarios.__file__).read_text()

A = bytes.fromhex("aabbccddee01")
B = bytes.fromhex("aabbccddee02")  # never paired
SPEC_IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")
SPEC_PRAND = bytes.fromhex("708194")
SPEC_HASH = bytes.fromhex("0dfbaa")
IDENTITY = bytes.fromhex("c00000000001")


def aes_ecb(key: bytes, block: bytes) -> bytes:
    """AES-128 of one block by cryptography: the oracle, independent of the core."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def make_rpa(irk: bytes, prand_low: int) -> bytes:
    """A resolvable private address for ``irk``, built from the spec's formula by the oracle."""
    prand = bytes([0x40 | (prand_low >> 16) & 0x3F, (prand_low >> 8) & 0xFF, prand_low & 0xFF])
    return prand + aes_ecb(irk, bytes(13) + prand)[13:]


def quiet(**changes: Any) -> dict[str, Any]:
    """A configuration with every filter off but the ones a test turns on."""
    return scenarios.config(**changes)


def temp(value: float) -> Reading:
    return Reading("temperature", value, "C")


# --- Resolvable private addresses


def test_ah_gives_the_core_spec_sample_hash() -> None:
    # Core spec vol 3 part H, D.7: IRK ec0234a3..., prand 708194 -> hash 0dfbaa.
    assert rpa.ah(rpa.default_block_cipher(SPEC_IRK), SPEC_PRAND) == SPEC_HASH


def test_ah_gives_the_sample_hash_over_the_board_cryptolib_interface() -> None:
    def board(key: bytes):
        return fake_cryptolib.aes(key, 1).encrypt

    assert rpa.ah(board(SPEC_IRK), SPEC_PRAND) == SPEC_HASH


def test_resolver_matches_the_spec_address_and_nothing_else() -> None:
    resolver = rpa.RpaResolver([(IDENTITY, SPEC_IRK)])
    assert resolver.resolve(SPEC_PRAND + SPEC_HASH) is IDENTITY
    assert resolver.resolve(SPEC_PRAND + bytes.fromhex("0dfbab")) is None
    # Right hash, but the top bits say "static random", not "resolvable": not tried.
    assert resolver.resolve(bytes.fromhex("f08194") + SPEC_HASH) is None
    assert rpa.is_resolvable(SPEC_PRAND + SPEC_HASH)
    assert not rpa.is_resolvable(bytes.fromhex("c00000000001"))


def test_resolver_caches_hits_forgets_rotated_addresses_and_never_keeps_misses() -> None:
    calls = []

    def counting(key: bytes):
        encrypt = rpa.default_block_cipher(key)

        def run(block):
            calls.append(key)
            return encrypt(block)

        return run

    other_irk = bytes(range(1, 17))
    other = bytes.fromhex("c00000000002")
    resolver = rpa.RpaResolver([(IDENTITY, SPEC_IRK), (other, other_irk)], counting, 4)
    first = SPEC_PRAND + SPEC_HASH
    assert resolver.resolve(first) is IDENTITY
    spent = len(calls)
    assert resolver.resolve(first) is IDENTITY
    assert len(calls) == spent, "a cached address costs no AES"
    assert resolver.resolved == 1

    rotated = make_rpa(SPEC_IRK, 0x123456)
    assert resolver.resolve(rotated) is IDENTITY
    assert len(resolver) == 1, "the device's previous address was forgotten"

    stranger = make_rpa(bytes(range(100, 116)), 0x0A0B0C)
    assert resolver.resolve(stranger) is None
    assert len(resolver) == 1, "nothing kept about an address that does not resolve"
    assert resolver.resolve(make_rpa(other_irk, 0x010203)) is other
    assert len(resolver) == 2


def test_resolver_cache_is_bounded() -> None:
    irks = [(bytes([0xC0, 0, 0, 0, 0, i]), bytes([i + 1]) * 16) for i in range(10)]
    resolver = rpa.RpaResolver(irks, cache_size=3)
    for identity, irk in irks:
        assert resolver.resolve(make_rpa(irk, 0x111111)) is identity
        assert len(resolver) <= 3


def test_pipeline_follows_a_device_across_address_rotation() -> None:
    pipe = FilterPipeline(
        quiet(irks={"C0:00:00:00:00:01": SPEC_IRK.hex()}, presence=True, presence_min_samples=1)
    )
    out = pipe.process(SPEC_PRAND + SPEC_HASH, -50, 0, 1, [temp(20.0)])
    assert out is not None and out.address == IDENTITY
    assert [e.kind for e in out.events] == ["enter"]
    out = pipe.process(make_rpa(SPEC_IRK, 0x2A2A2A), -50, 100, 2, [temp(20.0)])
    # Same identity, same state: no second enter, the unchanged value is not sent again.
    assert out is None
    assert pipe.tracked() == [IDENTITY]
    assert pipe.counters()["rpa_resolved"] == 2


# --- Behavioural scenarios, CPython and MicroPython

_AA01 = "aabbccddee01"
_C001 = "c00000000001"

EXPECTED: dict[str, Any] = {
    # Paired address passes under its own address; the spec's RPA resolves to the IRK's
    # identity (once by AES, then from the cache); the unpaired address and the RPA-shaped
    # address that does not resolve give nothing and leave no state; the identity address
    # itself is the same device.
    "allow_list": {
        "outputs": [
            [_AA01, [["temperature", 21.5]], []],
            [_C001, [["heart_rate", 70]], []],
            [_C001, [["heart_rate", 71]], []],
            None,
            None,
            [_C001, [["heart_rate", 72]], []],
        ],
        "tracked": [_AA01, _C001],
        "counters": {"frames_in": 6, "frames_not_paired": 2, "rpa_resolved": 1},
    },
    # Window 1000 ms, depth 2. t=100 and t=300 repeat id 1 within the window: dropped. t=400
    # pushes id 1 out (ids 3, 2 remain), so at t=500 it is new again. At t=1600 id 1 is 1100
    # ms old: a repeat, whose event is not sent again and whose count is unchanged; its
    # window restarts, so t=1700 is a duplicate. No id (t=1750): only the deadband applies.
    "duplicates": {
        "outputs": [
            [_AA01, [["count", 1], ["button", "press"]], []],
            None,
            [_AA01, [["count", 2]], []],
            None,
            [_AA01, [["count", 3]], []],
            [_AA01, [["count", 1], ["button", "press"]], []],
            None,
            None,
            None,
        ],
        "counters": {
            "frames_duplicate": 3,
            "readings_repeated": 1,
            "readings_unchanged": 2,
            "readings_out": 6,
        },
    },
    # Deadband 0.5 is exclusive: 20.0 -> 20.5 stays, 20.0 -> 20.75 goes, 20.75 -> 20.25
    # stays. Heartbeat 60000 ms after the send at t=2000: not at 61999, yes at exactly 62000.
    # Text goes out when changed only (no default heartbeat here); events every new frame;
    # battery (deadband 0 here) on any change.
    "deadband": {
        "outputs": [
            [_AA01, [["temperature", 20.0], ["state", "idle"]], []],
            None,
            [_AA01, [["temperature", 20.75], ["state", "busy"]], []],
            None,
            None,
            [_AA01, [["temperature", 20.25]], []],
            None,
            [_AA01, [["battery", 90], ["button", "press"]], []],
            [_AA01, [["button", "press"]], []],
            [_AA01, [["battery", 91]], []],
        ],
        "counters": {"readings_unchanged": 6, "readings_out": 9},
    },
    # Bucket of 3, one token per 1000 ms (60000 units, 60 units/ms). t=0,1,2 spend it (60 +
    # 60 units refilled meanwhile, 180 left at t=3: refused). 180 + 60 * 997 = 60000 first at
    # t=1000: t=999 refused, t=1000 passes, t=1001 refused. The refused frame 10 was not
    # remembered, so its repeat at t=1000 is not a duplicate. After 180 s the bucket is full
    # again: three pass, the fourth is refused.
    "rate_limit": {
        "passed": [True, True, True, False, False, True, False, True, True, True, False],
        "counters": {"frames_rate_limited": 4},
    },
    # No smoothing (alpha 100), enter -70, leave -80, two samples, timeout 5000 ms.
    # -75 then -70: enter at the threshold (confidence 50). -80 is not below the leave
    # threshold: stays; -81 leaves. -71 is not enough, -70 enters again. Silence from t=700:
    # tick at 5699 is 4999 ms later (nothing), at 5700 exactly the timeout (leave, last
    # average -50). The average restarts: one sample at 5800 is not enough, the second enters
    # at -60, one band (10 dB) above enter: confidence 100. A frame at 20000 after a silence
    # no tick saw: leave first, then a fresh start; enter again at 20100. A frame without
    # RSSI (t=20200) is no sample and changes nothing.
    "presence_thresholds": {
        "events": [
            ["enter", _AA01, 100, -70, 50],
            ["leave", _AA01, 400, -81, 0],
            ["enter", _AA01, 600, -70, 50],
            ["leave", _AA01, 5700, -50, 0],
            ["enter", _AA01, 5900, -60, 100],
            ["leave", _AA01, 20000, -60, 0],
            ["enter", _AA01, 20100, -60, 100],
        ],
        "present": [0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1],
    },
    # -80 dBm is -1280/16; the -60 sample adds (50 * 320 + 50) // 100 = 160: -1120/16 = -70,
    # exactly the enter threshold, at the second sample.
    "presence_smoothing": {"events": [["enter", _AA01, 100, -70, 50]]},
    # Three devices, room for two: C evicts B (heard at 10, before A's 20), which leaves.
    # TTL 1000 ms: at 1029 A (last heard at 20) expires and leaves; C (30) stays.
    "eviction": {
        "events": [
            ["enter", "aabbccddee0a", 0, -50, 100],
            ["enter", "aabbccddee0b", 10, -50, 100],
            ["leave", "aabbccddee0b", 30, -50, 0],
            ["enter", "aabbccddee0c", 30, -50, 100],
            ["leave", "aabbccddee0a", 1029, -50, 0],
        ],
        "tracked_before": ["aabbccddee0a", "aabbccddee0c"],
        "tracked_after": ["aabbccddee0c"],
        "counters": {"devices_evicted": 1, "devices_expired": 1},
    },
    # Both enter at t=0. The push at t=100 unpairs 0C (it leaves at once) and grows the
    # frame-id memory to 3 and sets a one-token bucket. 0A keeps its state: id 1 is still a
    # duplicate, 20.0 still unchanged; 21.0 spends the token (clamped to the new size), 22.0
    # 100 ms later finds 6000 of 60000 units: refused. 0C is no longer paired. Record:
    # heard, presence, 2 bucket, 3 * 2 frame ids, one metric triple = 13 slots.
    "reconfigure": {
        "outputs": [
            ["aabbccddee0a", [["temperature", 20.0]], [["enter", "aabbccddee0a", 0, -50, 100]]],
            ["aabbccddee0c", [["temperature", 20.0]], [["enter", "aabbccddee0c", 0, -50, 100]]],
            None,
            None,
            ["aabbccddee0a", [["temperature", 21.0]], []],
            None,
            None,
        ],
        "events": [["leave", "aabbccddee0c", 100, -50, 0]],
        "tracked": ["aabbccddee0a"],
        "record_length": 13,
        "counters": {
            "devices_unpaired": 1,
            "frames_duplicate": 1,
            "frames_rate_limited": 1,
            "frames_not_paired": 1,
        },
    },
}


def check_kiosk(result: dict[str, Any]) -> None:
    """One visit: one enter while approaching or standing, one leave once walking away
    (by signal, or at the latest by timeout: last frame 139900 + 20000 ms + the 1 s tick)."""
    events = result["events"]
    assert [kind for kind, _ in events] == ["enter", "leave"], events
    (_, entered), (_, left) = events
    assert 0 < entered < 130000
    assert 130000 <= left <= 139900 + 20000 + 1000


def check_scenario(name: str, result: dict[str, Any]) -> None:
    if name == "kiosk":
        check_kiosk(result)
    else:
        assert result == EXPECTED[name]


@pytest.mark.parametrize("name", [name for name, _ in scenarios.SCENARIOS])
def test_scenario_on_cpython(name: str) -> None:
    result = json.loads(json.dumps(dict(scenarios.SCENARIOS)[name]()))
    check_scenario(name, result)


@pytest.mark.micropython
def test_scenarios_under_micropython_match_cpython_and_the_spec(micropython) -> None:
    run = micropython.run(
        "import json, filter_scenarios\nprint(json.dumps(filter_scenarios.run_all()))",
        files={"/lib/filter_scenarios.py": SCENARIO_SOURCE},
        fakes=("cryptolib",),  # the board interface: RPA resolution through cryptolib.aes
    ).check()
    on_micropython = json.loads(run.stdout)
    on_cpython = json.loads(json.dumps(scenarios.run_all()))
    assert on_micropython == on_cpython
    assert sorted(on_micropython) == sorted(name for name, _ in scenarios.SCENARIOS)
    for name, result in on_micropython.items():
        check_scenario(name, result)


@pytest.mark.micropython
def test_rpa_known_answer_under_micropython(micropython) -> None:
    code = (
        "import binascii\n"
        "from bankiot_core import rpa\n"
        f"irk = binascii.unhexlify('{SPEC_IRK.hex()}')\n"
        "enc = rpa.default_block_cipher(irk)\n"
        "print(binascii.hexlify(rpa.ah(enc, binascii.unhexlify('708194'))).decode())\n"
        "identity = binascii.unhexlify('c00000000001')\n"
        "r = rpa.RpaResolver([(identity, irk)])\n"
        "print(r.resolve(binascii.unhexlify('7081940dfbaa')) is identity, r.resolve(bytes(6)))\n"
    )
    out = micropython.run(code, fakes=("cryptolib",)).check().stdout.splitlines()
    assert out == ["0dfbaa", "True None"]


# --- Allow-list and privacy ------------------------------------------------------------------


def test_unpaired_devices_get_no_state_and_are_only_counted() -> None:
    pipe = FilterPipeline(quiet(presence=True, presence_min_samples=1))
    for t in range(5):
        assert pipe.process(B, -40, t * 100, t, [temp(20.0 + t)]) is None
    assert len(pipe) == 0 and pipe.tracked() == [] and pipe.present() == []
    assert pipe.tick(10**6) == []
    counts = pipe.counters()
    assert counts["frames_in"] == 5 and counts["frames_not_paired"] == 5
    assert sum(counts.values()) == 10


def test_counters_are_all_present_and_a_copy() -> None:
    pipe = FilterPipeline()
    counts = pipe.counters()
    assert sorted(counts) == sorted(COUNTERS)
    counts["frames_in"] = 99
    assert pipe.counters()["frames_in"] == 0


def test_address_must_be_six_bytes() -> None:
    pipe = FilterPipeline(quiet())
    for bad in (bytearray(A), A[:5], A.hex()):
        with pytest.raises(LocalError, match="6 bytes"):
            pipe.process(bad, -50, 0, None, [])


# --- Duplicates, deadband, heartbeat, rate limit


def test_values_refused_by_the_rate_limit_go_out_later() -> None:
    pipe = FilterPipeline(quiet(rate_per_min=60, rate_burst=1))
    assert pipe.process(A, -50, 0, 1, [temp(20.0)]) is not None
    assert pipe.process(A, -50, 10, 2, [temp(25.0)]) is None  # refused: nothing committed
    out = pipe.process(A, -50, 1010, 3, [temp(25.0)])
    assert out is not None and list(out.readings) == [temp(25.0)]
    assert pipe.counters()["frames_rate_limited"] == 1


def test_presence_events_pass_even_when_readings_are_rate_limited() -> None:
    pipe = FilterPipeline(
        quiet(rate_per_min=1, rate_burst=1, presence=True, presence_min_samples=2)
    )
    assert pipe.process(A, -50, 0, 1, [temp(20.0)]) is not None
    out = pipe.process(A, -50, 100, 2, [temp(30.0)])
    assert out is not None and out.readings == ()
    assert [e.kind for e in out.events] == ["enter"]


def test_event_metrics_from_configuration_are_never_deadbanded() -> None:
    pipe = FilterPipeline(quiet(event_metrics=["rr_intervals"], dedup_window_ms=1000))
    rr = Reading("rr_intervals", [800, 810], "ms")
    for n in range(3):
        out = pipe.process(A, -50, n * 10, n, [rr])
        assert out is not None and list(out.readings) == [rr]
    assert pipe.process(A, -50, 2000, 2, [rr]) is None  # a repeated frame: not again
    assert pipe.counters()["readings_repeated"] == 1


def test_metrics_beyond_max_metrics_pass_without_state() -> None:
    pipe = FilterPipeline(quiet(max_metrics=2))
    readings = [Reading(f"m{i}", 1, "") for i in range(5)]
    for n in range(3):
        out = pipe.process(A, -50, n, n, readings)
        assert out is not None
        assert [r.metric for r in out.readings] == (
            ["m0", "m1", "m2", "m3", "m4"] if n == 0 else ["m2", "m3", "m4"]
        )
    record = pipe._devices[A]
    assert len(record) == 1 + 1 + 2 + 2 * 2 + 3 * 2


def test_default_deadbands_and_heartbeats_apply() -> None:
    pipe = FilterPipeline({"paired": ["AA:BB:CC:DD:EE:01"], "presence": False})
    assert pipe.process(A, -50, 0, 1, [temp(20.0), Reading("battery", 90, "%")]) is not None
    assert pipe.process(A, -50, 1000, 2, [temp(20.125), Reading("battery", 91, "%")]) is None
    out = pipe.process(A, -50, 2000, 3, [temp(20.25), Reading("battery", 92, "%")])
    assert out is not None and [r.value for r in out.readings] == [20.25, 92]
    # Default heartbeat 300000 ms for temperature, one hour for battery.
    out = pipe.process(A, -50, 302000, 4, [temp(20.25), Reading("battery", 92, "%")])
    assert out is not None and [r.metric for r in out.readings] == ["temperature"]
    out = pipe.process(A, -50, 3602000, 5, [temp(20.25), Reading("battery", 92, "%")])
    assert out is not None and [r.metric for r in out.readings] == ["temperature", "battery"]


def test_tick_clears_expired_timestamps_and_heartbeats_still_come() -> None:
    pipe = FilterPipeline(
        quiet(
            dedup_window_ms=1000,
            heartbeat_ms={"temperature": 5000},
            rate_per_min=600,
            device_ttl_ms=10**6,
        )
    )
    pipe.process(A, -50, 0, 7, [temp(20.0)])
    assert pipe.tick(6000) == []
    record = pipe._devices[A]
    # [heard, presence, bucket units, bucket tick, id, id tick, id, id tick, metric...]
    assert record[3] is None and record[2] == 60000 * 20
    assert record[4] == 7 and record[5] is None
    assert record[8:] == ["temperature", 20.0, None]
    out = pipe.process(A, -50, 6001, 7, [temp(20.0)])  # a repeat of 7 with its heartbeat due
    assert out is not None and list(out.readings) == [temp(20.0)]


def test_times_wrap_like_ticks_ms() -> None:
    # 500 ms before the 2**30 wrap of ticks_ms(); times given wrapped or not are the same.
    pipe = FilterPipeline(
        quiet(dedup_window_ms=2000, dedup_depth=4, heartbeat_ms={"temperature": 1000})
    )
    start = PERIOD - 500
    assert pipe.process(A, -50, start, 1, [temp(20.0)]) is not None
    assert pipe.process(A, -50, start + 999, 2, [temp(20.0)]) is None
    out = pipe.process(A, -50, (start + 1000) & MASK, 3, [temp(20.0)])  # heartbeat due
    assert out is not None and (start + 1000) & MASK == 500
    assert pipe.process(A, -50, start + 1500, 1, [temp(20.0)]) is None  # duplicate of t=start
    assert pipe.counters()["frames_duplicate"] == 1
    assert elapsed(5, MASK) == 6 and elapsed(5, None) == MASK


# --- Presence


def test_presence_confidence_scale() -> None:
    pipe = FilterPipeline(quiet(presence=True))
    presence = pipe._presence
    assert presence.confidence(-80 * 16) == 0
    assert presence.confidence(-81 * 16) == 0
    assert presence.confidence(-75 * 16) == 25
    assert presence.confidence(-70 * 16) == 50
    assert presence.confidence(-60 * 16) == 100
    assert presence.confidence(-30 * 16) == 100


def test_presence_ignores_missing_rssi_and_can_be_switched_off() -> None:
    pipe = FilterPipeline(quiet(presence=True, presence_min_samples=1))
    for rssi in (None, 127, -128, 21):
        assert pipe.process(A, rssi, 0, None, []) is None
    assert pipe.present() == []
    off = FilterPipeline(quiet(presence=False))
    assert off.process(A, -30, 0, None, []) is None
    assert off.tick(10**6) == []


def test_presence_event_is_a_small_record() -> None:
    pipe = FilterPipeline(quiet(presence=True, presence_min_samples=1))
    out = pipe.process(A, -50, 42, None, [])
    assert out is not None
    assert out.events == (PresenceEvent("enter", A, 42, -50, 100),)
    assert out.events[0].address is pipe.tracked()[0]


# --- Reconfiguration


def test_reconfigure_keeps_paired_state_and_forgets_unpaired_devices() -> None:
    c = bytes.fromhex("aabbccddee03")
    cfg = quiet(
        paired=["AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:03"],
        presence=True,
        presence_min_samples=1,
        dedup_window_ms=5000,
    )
    pipe = FilterPipeline(cfg)
    pipe.process(A, -50, 0, 1, [temp(20.0)])
    pipe.process(c, -50, 0, 1, [temp(20.0)])
    events = pipe.reconfigure(dict(cfg, paired=["AA:BB:CC:DD:EE:01"], dedup_depth=4), 100)
    assert events == [PresenceEvent("leave", c, 100, -50, 0)]
    assert pipe.tracked() == [A] and pipe.present() == [A]
    assert pipe.counters()["devices_unpaired"] == 1
    # State kept: the same frame is still a duplicate, the same value still unchanged.
    assert pipe.process(A, -50, 200, 1, [temp(20.0)]) is None
    assert pipe.process(A, -50, 300, 2, [temp(20.0)]) is None
    assert len(pipe._devices[A]) == 1 + 1 + 2 + 2 * 4 + 3
    assert pipe.process(c, -50, 400, 3, [temp(20.0)]) is None  # no longer paired


def test_reconfigure_with_a_bad_configuration_changes_nothing() -> None:
    pipe = FilterPipeline(quiet(dedup_window_ms=5000))
    pipe.process(A, -50, 0, 1, [temp(20.0)])
    before = pipe.config
    with pytest.raises(ConfigError, match="rate_burst"):
        pipe.reconfigure(quiet(rate_burst=0), 100)
    assert pipe.config is before and pipe.tracked() == [A]
    assert pipe.process(A, -50, 200, 1, [temp(20.0)]) is None


# --- Configuration


def test_documented_defaults() -> None:
    d = defaults()
    assert d["max_devices"] == 64 and d["dedup_window_ms"] == 10000 and d["dedup_depth"] == 2
    assert d["heartbeat_default_ms"] == 300000 and d["heartbeat_ms"] == {"battery": 3600000}
    assert d["deadband"]["temperature"] == 0.2 and d["deadband_default"] == 0
    assert d["rate_per_min"] == 120 and d["rate_burst"] == 20
    assert (d["presence_enter_dbm"], d["presence_leave_dbm"]) == (-70, -80)
    assert d["presence_timeout_ms"] == 20000 and d["presence"] is True
    assert json.loads(json.dumps(d)) == d, "the defaults are plain JSON"
    assert load_filter_config(d) == load_filter_config(None)


def test_config_converts_addresses_and_keys() -> None:
    cfg = load_filter_config(
        {"paired": ["aa-bb-cc-dd-ee-01"], "irks": {"C0:00:00:00:00:01": SPEC_IRK.hex()}}
    )
    assert cfg["paired"] == (A,)
    assert cfg["irks"] == ((IDENTITY, SPEC_IRK),)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "must be a map of settings"),
        ({"rate_limit": 5}, "unknown filter setting 'rate_limit'"),
        ({"max_devices": 0}, "'max_devices' must be an integer from 1 to 4096, got 0"),
        ({"max_devices": 10.0}, "'max_devices' must be an integer"),
        ({"max_devices": True}, "'max_devices' must be an integer"),
        ({"dedup_window_ms": 2**29}, "from 0 to 536870911"),
        ({"presence": 1}, "'presence' must be true or false"),
        ({"deadband_default": -1}, "'deadband_default' must be a number >= 0"),
        ({"deadband_default": float("nan")}, "must be a number >= 0"),
        ({"deadband": {"temperature": float("inf")}}, "'deadband.temperature' must be"),
        ({"deadband": [0.2]}, "'deadband' must be a map of metric name"),
        ({"heartbeat_ms": {"battery": 1.5}}, "'heartbeat_ms.battery' must be milliseconds"),
        ({"event_metrics": "button"}, "'event_metrics' must be a list of metric names"),
        ({"paired": ["AA:BB:CC:DD:EE"]}, "'paired' must be a list of addresses"),
        ({"paired": "AA:BB:CC:DD:EE:01"}, "'paired' must be a list of addresses"),
        ({"presence_enter_dbm": -80}, "must be above 'presence_leave_dbm'"),
        ({"presence_alpha_pct": 0}, "from 1 to 100"),
        ({"irks": {"C0:00:00:00:00:01": "00" * 16}}, "all zeros"),
        ({"irks": {"C0:00:00:00:00:01": "zz" * 16}}, "32 hex digits (value not shown)"),
        ({"irks": {"nope": SPEC_IRK.hex()}}, "'irks' must be a map of identity address"),
        ({"irks": ["C0:00:00:00:00:01"]}, "'irks' must be a map of identity address"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(config: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        FilterPipeline(config)
    assert message in str(info.value)


def test_config_errors_never_echo_a_key() -> None:
    secret = "0123456789abcdef0123456789abcdeX"
    with pytest.raises(ConfigError) as info:
        load_filter_config({"irks": {"C0:00:00:00:00:01": secret}})
    assert secret not in str(info.value) and "C0:00:00:00:00:01" in str(info.value)


@pytest.mark.micropython
def test_config_errors_under_micropython_match_cpython(micropython) -> None:
    bad = [
        {"rate_limit": 5},
        {"max_devices": 0},
        {"presence_enter_dbm": -80},
        {"heartbeat_ms": {"battery": 1.5}},
        {"irks": {"C0:00:00:00:00:01": "00" * 16}},
    ]
    code = (
        "from bankiot_core.filters import FilterPipeline\n"
        f"for config in {bad!r}:\n"
        "    try:\n"
        "        FilterPipeline(config)\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    lines = micropython.run(code).check().stdout.splitlines()
    expected = []
    for config in bad:
        with pytest.raises(ConfigError) as info:
            FilterPipeline(config)
        expected.append(f"ConfigError {info.value}")
    assert lines == expected


# --- Properties

rssi_values = st.one_of(st.none(), st.integers(-100, -30))
steps = st.lists(
    st.tuples(st.integers(0, 8000), rssi_values, st.booleans()), min_size=1, max_size=80
)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(1, 100), st.integers(1, 4))
def test_presence_alternates_enter_and_leave(
    script: list[tuple[int, int | None, bool]], alpha: int, min_samples: int
) -> None:
    pipe = FilterPipeline(
        quiet(
            presence=True,
            presence_alpha_pct=alpha,
            presence_min_samples=min_samples,
            presence_timeout_ms=3000,
        )
    )
    kinds = []
    now = 0
    for gap, rssi, is_tick in script:
        now += gap
        if is_tick:
            found = pipe.tick(now)
        else:
            out = pipe.process(A, rssi, now, None, [])
            found = out.events if out is not None else ()
        kinds += [e.kind for e in found]
        expected_present = [A] if kinds and kinds[-1] == "enter" else []
        assert pipe.present() == expected_present
    assert all(kind == ("enter" if i % 2 == 0 else "leave") for i, kind in enumerate(kinds))


frames = st.lists(
    st.tuples(
        st.booleans(),  # from the paired device?
        st.integers(0, 3000),  # gap in ms
        st.integers(-100, -30),
        st.one_of(st.none(), st.integers(0, 5)),  # frame id
        st.integers(0, 3),  # value
    ),
    max_size=60,
)


def busy_config() -> dict[str, Any]:
    return quiet(
        presence=True,
        presence_min_samples=1,
        presence_timeout_ms=4000,
        dedup_window_ms=1500,
        rate_per_min=30,
        rate_burst=2,
        heartbeat_default_ms=5000,
    )


@settings(max_examples=150, deadline=None)
@given(frames)
def test_unpaired_devices_never_change_state_or_output(script: list[Any]) -> None:
    mixed = FilterPipeline(busy_config())
    alone = FilterPipeline(busy_config())
    now = 0
    for paired, gap, rssi, frame_id, value in script:
        now += gap
        readings = [Reading("count", value, "")]
        if paired:
            assert mixed.process(A, rssi, now, frame_id, readings) == alone.process(
                A, rssi, now, frame_id, readings
            )
        else:
            assert mixed.process(B, rssi, now, frame_id, readings) is None
        assert mixed.tick(now) == alone.tick(now)
        assert mixed._devices == alone._devices
    ours = mixed.counters()
    theirs = alone.counters()
    extra = sum(1 for paired, *_ in script if not paired)
    assert ours.pop("frames_not_paired") == extra and theirs.pop("frames_not_paired") == 0
    assert ours.pop("frames_in") - theirs.pop("frames_in") == extra
    assert ours == theirs


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 9),  # device
            st.integers(0, 2000),
            st.one_of(st.none(), st.integers(0, 1000), st.binary(max_size=4)),
            st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), max_size=6),
        ),
        max_size=120,
    ),
    st.integers(1, 5),
    st.integers(1, 4),
)
def test_state_stays_bounded(script: list[Any], max_devices: int, depth: int) -> None:
    addresses = [f"AA:BB:CC:00:00:{i:02X}" for i in range(10)]
    pipe = FilterPipeline(
        quiet(
            paired=addresses,
            max_devices=max_devices,
            dedup_depth=depth,
            dedup_window_ms=500,
            max_metrics=3,
        )
    )
    now = 0
    for device, gap, frame_id, metrics in script:
        now += gap
        readings = [Reading(m, now % 7, "") for m in dict.fromkeys(metrics)]
        pipe.process(
            bytes.fromhex(addresses[device].replace(":", "")), -50, now, frame_id, readings
        )
        assert len(pipe) <= max_devices
        for record in pipe._devices.values():
            assert 1 + 1 + 2 + 2 * depth <= len(record) <= 1 + 1 + 2 + 2 * depth + 3 * 3


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 3000), min_size=1, max_size=80),
    st.integers(1, 600),
    st.integers(1, 5),
)
def test_rate_limit_never_exceeds_the_bucket(gaps: list[int], rate: int, burst: int) -> None:
    pipe = FilterPipeline(quiet(rate_per_min=rate, rate_burst=burst))
    times = []
    passed = []
    now = 0
    for n, gap in enumerate(gaps):
        now += gap
        times.append(now)
        passed.append(pipe.process(A, -50, now, None, [Reading("count", n, "")]) is not None)
    sent = [t for t, ok in zip(times, passed, strict=True) if ok]
    for i in range(len(sent)):
        for j in range(i, len(sent)):
            assert j - i + 1 <= burst + (sent[j] - sent[i]) * rate // 60000
    # And it is not stingier than that: a frame after a full refill always passes.
    fill = -(-burst * 60000 // rate)
    for k in range(1, len(times)):
        if times[k] - times[k - 1] >= fill:
            assert passed[k]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4000), st.integers(-20, 20)), min_size=1, max_size=60),
    st.integers(0, 5),
    st.integers(0, 10000),
)
def test_deadband_and_heartbeat_decide_exactly(
    script: list[tuple[int, int]], deadband: int, heartbeat: int
) -> None:
    pipe = FilterPipeline(quiet(deadband={"level": deadband}, heartbeat_ms={"level": heartbeat}))
    last: tuple[int, int] | None = None  # (value, time) last sent
    now = 0
    for gap, value in script:
        now += gap
        out = pipe.process(A, -50, now, None, [Reading("level", value, "")])
        due = (
            last is None
            or abs(value - last[0]) > deadband
            or (heartbeat > 0 and now - last[1] >= heartbeat)
        )
        assert (out is not None) == due
        if due:
            last = (value, now)


@settings(max_examples=100, deadline=None)
@given(frames, st.integers(0, 2**45))
def test_behaviour_does_not_depend_on_the_clock_origin(script: list[Any], offset: int) -> None:
    base = FilterPipeline(busy_config())
    shifted = FilterPipeline(busy_config())
    now = 0
    for _, gap, rssi, frame_id, value in script:
        now += gap
        readings = [Reading("count", value, "")]
        a = base.process(A, rssi, now, frame_id, readings)
        b = shifted.process(A, rssi, now + offset, frame_id, readings)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert list(a.readings) == list(b.readings)
            assert [(e.kind, e.at_ms + offset) for e in a.events] == [
                (e.kind, e.at_ms) for e in b.events
            ]
        ticked = [(e.kind, e.at_ms + offset) for e in base.tick(now)]
        assert ticked == [(e.kind, e.at_ms) for e in shifted.tick(now + offset)]


# --- Memory

# The WebAssembly port's gc.collect() only marks a collection as pending; it runs when
# control is back at the top level. Awaiting a short sleep gets there, so garbage is really
# collected before each side of the measurement.
_SETTLE = """
import gc, asyncio
async def _settle():
    gc.collect()
    await asyncio.sleep_ms(1)
"""

_HEAP_SETUP = (
    _SETTLE
    + """
from bankiot_core.filters import FilterPipeline
from bankiot_core.readings import Reading
N = 50
pipe = FilterPipeline({'paired': ['AA:BB:CC:00:00:%02X' % i for i in range(N)]})

def feed(now, k, thermometers_only):
    for i in range(N):
        address = bytes([0xAA, 0xBB, 0xCC, 0, 0, i])
        if thermometers_only or i % 2:
            readings = (
                Reading('temperature', 20.0 + i / 8 + k, 'C'),
                Reading('humidity', 40.0 + i / 4 + k, '%'),
                Reading('battery', 90 - k, '%'),
                Reading('voltage', 2.875 + k / 16, 'V'),
            )
        else:
            readings = (Reading('heart_rate', 60 + i + k, 'bpm'), Reading('battery', 80 + k, '%'))
        pipe.process(address, -60 - i % 20, now, k, readings)

await _settle()
"""
)


def heap_per_device(micropython, thermometers_only: bool) -> float:
    code = (
        "for k in range(3):\n"
        f"    feed(1000 * k, k, {thermometers_only})\n"
        "assert len(pipe) == N and pipe.counters()['readings_out'] > 0\n"
        "await _settle()\n"
    )
    return micropython.heap_delta(_HEAP_SETUP, code) / 50


@pytest.mark.micropython
def test_heap_held_per_tracked_device_is_under_budget(micropython) -> None:
    # Budget from issue 3: under 200 bytes of MicroPython heap per tracked device. Mixed
    # wearables (2 metrics) and thermometers (4 metrics, 3 of them floats), then the worst
    # case of only thermometers.
    mixed = heap_per_device(micropython, False)
    worst = heap_per_device(micropython, True)
    print(f"heap per device: mixed {mixed:.1f} B, thermometers {worst:.1f} B")
    assert 40 < mixed < 200
    assert mixed < worst < 200


@pytest.mark.micropython
def test_unpaired_traffic_holds_no_heap(micropython) -> None:
    # 500 strangers, two frames each. Keeping even 8 bytes per stranger would hold 4000
    # bytes; the measurement itself (asyncio's sleep, globals) is a few hundred at most.
    code = (
        "for k in range(1000):\n"
        "    stranger = bytes([0x11, 0x22, 0x33, 0, (k >> 1) >> 8, (k >> 1) & 0xFF])\n"
        "    pipe.process(stranger, -50, k, k, (Reading('temperature', 20.5, 'C'),))\n"
        "assert len(pipe) == 0 and pipe.counters()['frames_not_paired'] == 1000\n"
        "stranger = None\n"
        "await _settle()\n"
    )
    held = micropython.heap_delta(_HEAP_SETUP, code)
    assert held < 1000
