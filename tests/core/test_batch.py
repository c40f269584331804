"""bankiot_core.batch: the batch wire format, both ways, on both interpreters.

Known answers are the documented schema built by hand and encoded by ``cbor2`` (an
independent CBOR implementation, in preferred serialization: ``canonical=True`` writes the
shortest exact float); what the core writes is also read back by ``cbor2`` and checked
against the schema by a checker written here from the module docstring's CDDL, not by
``decode_batch``. The same scenarios run under real MicroPython and must give the same bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core import batch
from bankiot_core.batch import (
    CLOCK_TICKS,
    CLOCK_UNIX_MS,
    COUNTER_NAMES,
    METRICS,
    STATUS_NAMES,
    BatchBuilder,
    BatchReading,
    CommandResult,
    Health,
    KioskEvent,
    Running,
    clip_detail,
    decode_batch,
    encode_batch,
    record_size,
)
from bankiot_core.batcher import COUNTERS as BATCHER_COUNTERS
from bankiot_core.bthome import OBJECTS
from bankiot_core.errors import DecodeError, LocalError
from bankiot_core.filters import COUNTERS as FILTER_COUNTERS
from bankiot_core.intake import Intake
from bankiot_core.presence import PresenceEvent
from bankiot_core.ticks import MAX_DURATION_MS
from tests.core import batch_scenarios as scenarios

SCENARIO_SOURCE = Path(scenarios.__file__).read_text()

A = bytes.fromhex(scenarios.A)
B = bytes.fromhex(scenarios.B)
C = bytes.fromhex(scenarios.C)
U64 = 1 << 64
MAX_ID = 2**40 - 1


def spec_bytes(obj: Any) -> bytes:
    """``obj`` in CBOR preferred serialization, by cbor2."""
    return cbor2.dumps(obj, canonical=True)


# --- The schema, checked on what cbor2 reads ------------------------------------------------


def is_int(x: Any) -> bool:
    return type(x) is int and -U64 <= x < U64


def is_scalar(x: Any) -> bool:
    return is_int(x) or x is None or type(x) in (float, str, bytes, bool)


def check_schema(obj: Any) -> None:
    """Assert that ``obj`` (decoded by cbor2) is a batch as the module docstring's CDDL says."""
    assert type(obj) is list and len(obj) >= 4
    assert obj[0] == 1 and type(obj[0]) is int
    assert obj[1] in (0, 1) and type(obj[1]) is int
    assert type(obj[2]) is int and 0 <= obj[2] < U64
    addresses = set()
    for group in obj[3:]:
        assert type(group) is list and len(group) >= 2
        address = group[0]
        assert address is None or (type(address) is bytes and len(address) == 6)
        assert address not in addresses
        addresses.add(address)
        for record in group[1:]:
            assert type(record) is list and len(record) >= 3
            assert type(record[0]) is int and 0 <= record[0] <= MAX_DURATION_MS
            if address is None and record[1] == -3 and type(record[1]) is int:  # result
                assert len(record) == 5
                _, _, command_id, status, detail = record
                assert type(command_id) is int and 0 <= command_id <= MAX_ID
                assert type(status) is int and 0 <= status <= 3
                assert type(detail) is str and len(detail.encode()) <= 200
                continue
            if address is None and record[1] == -5 and type(record[1]) is int:  # kiosk
                assert len(record) == 6
                _, _, kind, event_id, wearable, detail = record
                assert type(kind) is int and 0 <= kind <= 3
                assert type(event_id) is int and 0 <= event_id <= MAX_ID
                assert wearable is None or (type(wearable) is bytes and len(wearable) == 6)
                assert type(detail) is str and len(detail.encode()) <= 64
                continue
            if address is None and record[1] == -4 and type(record[1]) is int:  # running
                assert len(record) == 4
                _, _, software, config = record
                assert type(software) is str and 1 <= len(software.encode()) <= 32
                assert config is None or (type(config) is int and 0 <= config <= MAX_ID)
                continue
            assert len(record) % 2 == 1
            pairs = list(zip(record[1::2], record[2::2], strict=True))
            for key, value in pairs:
                if address is None:  # health
                    assert (type(key) is int and 0 <= key < len(COUNTER_NAMES)) or type(key) is str
                    assert value is None or is_int(value)
                elif key in (-1, -2):
                    assert type(value) is list and len(value) == 2
                    assert type(value[0]) is int and -127 <= value[0] <= 20
                    assert type(value[1]) is int and 0 <= value[1] <= 100
                else:
                    if type(key) is int:
                        assert 0 <= key < len(METRICS)
                    else:
                        assert type(key) is list and len(key) == 2
                        a, b = key
                        assert (type(a) is str and type(b) is str) or (
                            type(a) is int and 0 <= a < len(METRICS) and type(b) is int and b >= 1
                        )
                    if type(value) is list:
                        assert all(is_scalar(item) for item in value)
                    else:
                        assert is_scalar(value)


# --- Known answers ----------------------------------------------------------------------------

# The first codes are the contract's one-byte keys: they never change.
FIRST_CODES = [
    ("temperature", "°C", 2),
    ("humidity", "%", 2),
    ("battery", "%", 0),
    ("voltage", "V", 3),
    ("heart_rate", "bpm", 0),
    ("rr_intervals", "ms", 0),
    ("sensor_contact", "", 0),
    ("energy_expended", "kJ", 0),
    ("button", "event", 0),
]
RAW = METRICS.index(("raw", "", 0))


def test_the_sample_batch_is_the_documented_structure_in_cbor2_bytes() -> None:
    # Built by hand from the module docstring: [version, clock, base, groups...], groups in
    # order of first appearance, the gateway's (null) where its first health record falls.
    expected = [
        1,
        0,
        1000,
        [
            A,
            [0, 0, 2137, 1, 4550, 2, 87],  # 21.37 °C and 45.5 % as hundredths; battery as is
            [1000, 0, 21.0 / 256, [0, 2], -350, RAW, b"\x00\xff"],  # a float; temperature_2
        ],
        [
            B,
            [200, -1, [-58, 71], 4, 72, 5, [781.25, 832.03125], 6, True],
            [2500, -2, [-90, 0]],
        ],
        [
            None,
            [
                500,
                COUNTER_NAMES.index("dropped_batches"),
                0,
                COUNTER_NAMES.index("frames_in"),
                120,
                COUNTER_NAMES.index("lost_first"),
                None,
                "x_y",
                -4,
            ],
        ],
        [C, [1500, 8, "press", ["lux_sum", "klx"], 12]],
    ]
    payload = encode_batch(scenarios.sample_records())
    assert payload == spec_bytes(expected)
    check_schema(cbor2.loads(payload))
    assert METRICS[: len(FIRST_CODES)] == tuple(FIRST_CODES)


def test_the_gateway_records_are_the_documented_structure_in_cbor2_bytes() -> None:
    clipped = "r\u00e9" * 66 + "r"  # 199 bytes: one more "é" would make 201
    expected = [
        1,
        0,
        5000,
        [
            None,
            [0, -4, "bankiot-fw 1.4.2", None],
            [100, -3, 41, 3, "downloading 2/7"],
            [200, COUNTER_NAMES.index("frames_in"), 3],
            [300, -3, MAX_ID, 2, clipped],
            [400, -3, 41, 0, ""],
            [400, -4, "bankiot-fw 1.5.0", MAX_ID],
            [500, -5, 0, 7, B, ""],
            [600, -5, 1, MAX_ID, None, "A042"],
            [700, -5, 3, 8, None, "7KQ2M9XD"],
        ],
        [A, [150, 2, 90]],
    ]
    payload = encode_batch(scenarios.gateway_records())
    assert payload == spec_bytes(expected)
    check_schema(cbor2.loads(payload))
    # One record by hand from the CDDL: [dt 100, -3, id 41, status 3, detail "ok"]
    assert batch.result_fields(41, 3, "ok", [100]) == [100, -3, 41, 3, "ok"]
    assert spec_bytes([100, -3, 41, 3, "ok"]) == bytes.fromhex("85186422182903626f6b")
    assert spec_bytes([0, -4, "1", None]) == bytes.fromhex("8400236131f6")
    # [dt 0, -5, ticket 1, id 3, no wearable, "A1"]: -5 is 0x24 (major type 1, argument 4)
    assert batch.kiosk_fields(1, 3, None, "A1", [0]) == [0, -5, 1, 3, None, "A1"]
    assert spec_bytes([0, -5, 1, 3, None, "A1"]) == bytes.fromhex("8600240103f6624131")
    # [dt 0, -5, pairing 3, id 8, no wearable, "7KQ2M9XD"]: the code as 8 bytes of text (0x68)
    assert batch.kiosk_fields(3, 8, None, "7KQ2M9XD", [0]) == [0, -5, 3, 8, None, "7KQ2M9XD"]
    pairing = bytes.fromhex("8600240308f668") + b"7KQ2M9XD"
    assert spec_bytes([0, -5, 3, 8, None, "7KQ2M9XD"]) == pairing
    decoded = decode_batch(payload)
    assert decoded.records == [
        Running(5000, "bankiot-fw 1.4.2", None),
        CommandResult(5100, 41, 3, "downloading 2/7"),
        Health(5200, {"frames_in": 3}),
        CommandResult(5300, MAX_ID, 2, clipped),
        CommandResult(5400, 41, 0, ""),
        Running(5400, "bankiot-fw 1.5.0", MAX_ID),
        KioskEvent(5500, 0, 7, B, ""),
        KioskEvent(5600, 1, MAX_ID, None, "A042"),
        KioskEvent(5700, 3, 8, None, "7KQ2M9XD"),
        BatchReading(A, 5150, "battery", 90, "%"),
    ]
    assert batch.KIOSK_KINDS[:4] == ("checkin", "ticket", "request", "pairing")
    assert batch.KIOSK_KINDS[4:] == ("offer_shown", "offer_accepted", "offer_declined")
    assert (batch.KIOSK_OFFER_SHOWN, batch.KIOSK_OFFER_DECLINED) == (4, 6)
    assert batch.KIOSK_PAIRING == 3
    assert STATUS_NAMES == ("done", "failed", "refused", "accepted")
    assert (batch.STATUS_DONE, batch.STATUS_FAILED) == (0, 1)
    assert (batch.STATUS_REFUSED, batch.STATUS_ACCEPTED) == (2, 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("x" * 200, "x" * 200),
        ("x" * 201, "x" * 200),
        ("\u00e9" * 150, "\u00e9" * 100),
        ("a" + "\u00e9" * 150, "a" + "\u00e9" * 99),  # not half a character
        ("ab" + "\u20ac" * 100, "ab" + "\u20ac" * 66),  # 3-byte characters: 200 bytes
        ("a" + "\U0001f600" * 60, "a" + "\U0001f600" * 49),  # 4-byte characters: 197
    ],
)
def test_clip_detail_cuts_on_a_character_boundary(text: str, expected: str) -> None:
    clipped = clip_detail(text)
    assert clipped == expected
    assert len(clipped.encode()) <= 200 and text.encode().startswith(clipped.encode())


def test_floats_are_in_the_shortest_exact_form_and_decimals_are_exact() -> None:
    def one(value: Any, metric: str = "temperature", unit: str = "°C") -> Any:
        payload = encode_batch([BatchReading(A, 0, metric, value, unit)])
        return cbor2.loads(payload)[3][1][2]

    assert one(21.37) == 2137 and type(one(21.37)) is int
    assert one(-0.01) == -1
    assert one(0.001) == 0.001 and type(one(0.001)) is float  # not an exact hundredth
    assert spec_bytes(0.5) == b"\xf9\x38\x00"  # the reference: half precision
    assert encode_batch([BatchReading(A, 0, "x", 0.5, "")]).endswith(b"\xf9\x38\x00")
    assert math.copysign(1, one(-0.0)) == -1 and type(one(-0.0)) is float
    assert math.isnan(one(float("nan")))
    assert one(float("inf")) == float("inf")
    assert one(1e300) == 1e300  # beyond any mantissa: sent as the float it is
    assert one(21, "humidity", "%") == 2100  # an int of a scaled metric ...
    decoded = decode_batch(encode_batch([BatchReading(A, 0, "humidity", 21, "%")]))
    assert decoded.records[0].value == 21.0 and type(decoded.records[0].value) is float
    assert one(2.981, "voltage", "V") == 2981
    assert one(U64 - 1, "count", "") == U64 - 1  # 64-bit ints as they are


def test_unix_clock_batch() -> None:
    # The base is in whole Unix seconds (a 4-byte uint until 2106), dt in ms from it.
    at = 1700000000123
    payload = encode_batch([BatchReading(A, at, "co2", 612, "ppm")], CLOCK_UNIX_MS)
    assert payload == spec_bytes([1, 1, 1700000000, [A, [123, 11, 612]]])
    assert payload[3] == 0x1A  # uint32
    decoded = decode_batch(payload)
    assert decoded.clock == CLOCK_UNIX_MS and decoded.base_ms == 1700000000000
    assert decoded.records == [BatchReading(A, at, "co2", 612, "ppm")]
    with pytest.raises(LocalError, match="whole second"):
        encode_batch([BatchReading(A, at, "co2", 612, "ppm")], CLOCK_UNIX_MS, at)


def test_every_metric_the_decoders_produce_has_a_row() -> None:
    rows = {(m, u): d for m, u, d in METRICS}
    assert len(rows) == len(METRICS), "a (metric, unit) pair twice in METRICS"
    produced = {(m, u) for m, _, _, _, _, u, _ in OBJECTS.values()}
    produced |= {("dimmer_steps", "event"), ("command_args", "event")}  # bthome companions
    produced |= {  # gatt, beacons, xiaomi
        ("heart_rate", "bpm"),
        ("sensor_contact", ""),
        ("energy_expended", "kJ"),
        ("rr_intervals", "ms"),
        ("uuid", ""),
        ("major", ""),
        ("minor", ""),
        ("measured_power", "dBm"),
        ("tx_power", "dBm"),
        ("namespace", ""),
        ("instance", ""),
        ("advertisement_count", ""),
        ("uptime", "s"),
        ("voltage", "V"),
    }
    assert produced <= set(rows), produced - set(rows)
    # A BTHome object with a decimal factor fits its row's decimals exactly: raw * mul / div
    # has at most log10(div) decimals.
    for metric, _, _, mul, div, unit, _ in OBJECTS.values():
        if div in (10, 100, 1000) and rows[(metric, unit)] < len(str(div)) - 1:
            pytest.fail(
                "%s %s: factor %d/%d, decimals %d" % (metric, unit, mul, div, rows[(metric, unit)])
            )


def test_the_counters_gateways_report_have_codes() -> None:
    from bankiot_core.queue import COUNTERS as QUEUE_COUNTERS

    names = set(FILTER_COUNTERS) | set(Intake().counters()) | set(BATCHER_COUNTERS)
    names |= set(QUEUE_COUNTERS)
    assert names <= set(COUNTER_NAMES), names - set(COUNTER_NAMES)
    assert len(set(COUNTER_NAMES)) == len(COUNTER_NAMES)


# --- Round trips ------------------------------------------------------------------------------

ADDRESSES = st.sampled_from([A, B, C, bytes(6), b"\xff" * 6])
INTS = st.integers(-(2**50), 2**50)
SCALARS = st.one_of(
    INTS, st.floats(), st.text(max_size=8), st.binary(max_size=8), st.booleans(), st.none()
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))


@st.composite
def metric_units(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.integers(0, 3))
    metric, unit, _ = draw(st.sampled_from(METRICS))
    if kind == 0:
        return metric, unit
    if kind == 1:  # a BTHome repeated object, or a suffix that is not one (leading zero)
        suffix = draw(st.sampled_from(["1", "2", "17", "01", "0", "x"]))
        return "%s_%s" % (metric, suffix), unit
    return draw(st.text(max_size=12)), draw(st.text(max_size=4))


@st.composite
def records(draw: st.DrawFn, base: int) -> Any:
    at = base + draw(st.integers(0, MAX_DURATION_MS))
    kind = draw(st.integers(0, 8))
    if kind == 8:
        wearable = draw(st.one_of(st.none(), ADDRESSES))
        detail = draw(st.text(max_size=20))
        return KioskEvent(
            at, draw(st.integers(0, 3)), draw(st.integers(0, MAX_ID)), wearable, detail
        )
    if kind == 6:
        detail = draw(st.text(max_size=60))
        return CommandResult(at, draw(st.integers(0, MAX_ID)), draw(st.integers(0, 3)), detail)
    if kind == 7:
        software = draw(st.text(min_size=1, max_size=8))
        return Running(at, software, draw(st.one_of(st.none(), st.integers(0, MAX_ID))))
    if kind == 0:
        return PresenceEvent(
            draw(st.sampled_from(["enter", "leave"])),
            draw(ADDRESSES),
            at,
            draw(st.integers(-127, 20)),
            draw(st.integers(0, 100)),
        )
    if kind == 1:
        names = st.one_of(st.sampled_from(COUNTER_NAMES), st.text(max_size=10))
        counts = st.one_of(st.none(), st.integers(-(2**63), U64 - 1))
        return Health(at, draw(st.dictionaries(names, counts, min_size=1, max_size=5)))
    metric, unit = draw(metric_units())
    return BatchReading(draw(ADDRESSES), at, metric, draw(VALUES), unit)


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, list[Any]]:
    base = draw(st.one_of(st.integers(0, 2**30), st.just(1700000000000)))
    items = draw(st.lists(records(base), min_size=1, max_size=12))
    return base, items


def scale_of(metric: str, unit: str) -> int:
    """The wire contract's scale of a metric (module docstring), computed here."""
    rows = {(m, u): d for m, u, d in METRICS}
    if (metric, unit) in rows:
        return 10 ** rows[(metric, unit)]
    stem, _, digits = metric.rpartition("_")
    if digits.isascii() and digits.isdigit() and digits[0] != "0" and (stem, unit) in rows:
        return 10 ** rows[(stem, unit)]
    return 1


def same_value(got: Any, sent: Any, scale: int) -> bool:
    if type(sent) is float:
        if math.isnan(sent):
            return type(got) is float and math.isnan(got)
        return (
            type(got) is float and got == sent and math.copysign(1, got) == math.copysign(1, sent)
        )
    if type(sent) is int and scale != 1:
        return type(got) is float and got == sent
    if type(sent) is list:
        return (
            type(got) is list
            and len(got) == len(sent)
            and all(same_value(g, s, 1) for g, s in zip(got, sent, strict=True))
        )
    return type(got) is type(sent) and got == sent


def grouped(items: list[Any]) -> list[Any]:
    """``items`` in the order a batch gives them back: by group of first appearance."""
    order: dict[Any, list[Any]] = {}
    for item in items:
        key = None if type(item) in (Health, CommandResult, Running, KioskEvent) else item.address
        order.setdefault(key, []).append(item)
    return [item for group in order.values() for item in group]


@settings(max_examples=150, deadline=None)
@given(batches())
def test_round_trip(case: tuple[int, list[Any]]) -> None:
    base, items = case
    payload = encode_batch(items, CLOCK_TICKS, base)
    check_schema(cbor2.loads(payload))
    decoded = decode_batch(payload)
    assert decoded.clock == CLOCK_TICKS and decoded.base_ms == base
    expected = grouped(items)
    assert len(decoded.records) == len(expected)
    for got, sent in zip(decoded.records, expected, strict=True):
        assert type(got) is type(sent)
        if type(sent) is BatchReading:
            assert got[:3] == sent[:3] and got.unit == sent.unit
            assert same_value(got.value, sent.value, scale_of(sent.metric, sent.unit)), (got, sent)
        else:
            assert got == sent


@settings(max_examples=80, deadline=None)
@given(batches())
def test_builder_knows_the_exact_size(case: tuple[int, list[Any]]) -> None:
    base, items = case
    builder = BatchBuilder(CLOCK_TICKS, base)
    for item in items:
        if type(item) is BatchReading:
            record = batch.reading_pairs(
                [(item.metric, item.value, item.unit)], [item.at_ms - base]
            )
            address = item.address
        elif type(item) is PresenceEvent:
            record = batch.event_pair(item, [item.at_ms - base])
            address = item.address
        elif type(item) is CommandResult:
            record = batch.result_fields(item.id, item.status, item.detail, [item.at_ms - base])
            address = None
        elif type(item) is Running:
            record = batch.running_fields(item.software, item.config_revision, [item.at_ms - base])
            address = None
        elif type(item) is KioskEvent:
            dt = [item.at_ms - base]
            record = batch.kiosk_fields(item.kind, item.id, item.wearable, item.detail, dt)
            address = None
        else:
            record = batch.counter_pairs(item.counters, [item.at_ms - base])
            address = None
        size = record_size(record)
        before = builder.size
        cost = builder.cost(address, size)
        builder.add(address, record, size, 1)
        assert builder.size == before + cost == len(builder.payload())


# --- Bad input ------------------------------------------------------------------------------

GOOD_RECORD = [0, 0, 2150]
INDEFINITE = bytes.fromhex("9f010001") + spec_bytes([A, GOOD_RECORD]) + b"\xff"

MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("truncated", spec_bytes([1, 0, 0, [A, GOOD_RECORD]])[:-1]),
    ("trailing byte", spec_bytes([1, 0, 0, [A, GOOD_RECORD]]) + b"\x00"),
    ("indefinite array", INDEFINITE),
    ("a map", spec_bytes({"v": 1})),
    ("no groups", spec_bytes([1, 0, 0])),
    ("version 2", spec_bytes([2, 0, 0, [A, GOOD_RECORD]])),
    ("version as text", spec_bytes(["1", 0, 0, [A, GOOD_RECORD]])),
    ("clock 2", spec_bytes([1, 2, 0, [A, GOOD_RECORD]])),
    ("clock true", spec_bytes([1, True, 0, [A, GOOD_RECORD]])),
    ("negative base", spec_bytes([1, 0, -1, [A, GOOD_RECORD]])),
    ("float base", spec_bytes([1, 0, 1.5, [A, GOOD_RECORD]])),
    ("group not an array", spec_bytes([1, 0, 0, A])),
    ("group without records", spec_bytes([1, 0, 0, [A]])),
    ("address of 5 bytes", spec_bytes([1, 0, 0, [A[:5], GOOD_RECORD]])),
    ("address as text", spec_bytes([1, 0, 0, [A.hex(), GOOD_RECORD]])),
    ("address twice", spec_bytes([1, 0, 0, [A, GOOD_RECORD], [A, GOOD_RECORD]])),
    ("gateway twice", spec_bytes([1, 0, 0, [None, [0, 6, 1]], [None, [0, 6, 1]]])),
    ("record not an array", spec_bytes([1, 0, 0, [A, 5]])),
    ("record without pairs", spec_bytes([1, 0, 0, [A, [0]]])),
    ("record with a key alone", spec_bytes([1, 0, 0, [A, [0, 0, 2150, 1]]])),
    ("negative dt", spec_bytes([1, 0, 0, [A, [-1, 0, 2150]]])),
    ("dt too large", spec_bytes([1, 0, 0, [A, [MAX_DURATION_MS + 1, 0, 2150]]])),
    ("dt float", spec_bytes([1, 0, 0, [A, [0.5, 0, 2150]]])),
    ("unknown code", spec_bytes([1, 0, 0, [A, [0, len(METRICS), 1]]])),
    ("presence key -3", spec_bytes([1, 0, 0, [A, [0, -3, [-50, 50]]]])),
    ("suffix 0", spec_bytes([1, 0, 0, [A, [0, [0, 0], 1]]])),
    ("suffix text", spec_bytes([1, 0, 0, [A, [0, [0, "1"], 1]]])),
    ("suffix of an unknown code", spec_bytes([1, 0, 0, [A, [0, [len(METRICS), 1], 1]]])),
    ("key of three", spec_bytes([1, 0, 0, [A, [0, ["a", "b", "c"], 1]]])),
    ("key a map", spec_bytes([1, 0, 0, [A, [0, {"a": 1}, 1]]])),
    ("key bool", spec_bytes([1, 0, 0, [A, [0, True, 1]]])),
    ("value a map", spec_bytes([1, 0, 0, [A, [0, 0, {"a": 1}]]])),
    ("value nested list", spec_bytes([1, 0, 0, [A, [0, 5, [[1]]]]])),
    ("value a tag", spec_bytes([1, 0, 0, [A, [0, 0, cbor2.CBORTag(4, [-2, 2150])]]])),
    ("value a bignum", spec_bytes([1, 0, 0, [A, [0, 12, U64]]])),
    ("presence value not a pair", spec_bytes([1, 0, 0, [A, [0, -1, -50]]])),
    ("presence rssi 21", spec_bytes([1, 0, 0, [A, [0, -1, [21, 50]]]])),
    ("presence confidence 101", spec_bytes([1, 0, 0, [A, [0, -2, [-50, 101]]]])),
    ("presence rssi float", spec_bytes([1, 0, 0, [A, [0, -1, [-50.0, 50]]]])),
    ("health unknown code", spec_bytes([1, 0, 0, [None, [0, len(COUNTER_NAMES), 1]]])),
    ("health name twice", spec_bytes([1, 0, 0, [None, [0, 6, 1, "frames_in", 2]]])),
    ("health float count", spec_bytes([1, 0, 0, [None, [0, 6, 1.0]]])),
    ("health bytes name", spec_bytes([1, 0, 0, [None, [0, b"x", 1]]])),
    ("health presence key", spec_bytes([1, 0, 0, [None, [0, -1, [-50, 50]]]])),
    ("health with a counter alone", spec_bytes([1, 0, 0, [None, [0, 6, 1, 7]]])),
    ("gateway record -5", spec_bytes([1, 0, 0, [None, [0, -5, 1, 0, ""]]])),
    ("result of four items", spec_bytes([1, 0, 0, [None, [0, -3, 1, 0]]])),
    ("result of six items", spec_bytes([1, 0, 0, [None, [0, -3, 1, 0, "", 0]]])),
    ("result id negative", spec_bytes([1, 0, 0, [None, [0, -3, -1, 0, ""]]])),
    ("result id beyond 2**40-1", spec_bytes([1, 0, 0, [None, [0, -3, MAX_ID + 1, 0, ""]]])),
    ("result id text", spec_bytes([1, 0, 0, [None, [0, -3, "1", 0, ""]]])),
    ("result status 4", spec_bytes([1, 0, 0, [None, [0, -3, 1, 4, ""]]])),
    ("result status -1", spec_bytes([1, 0, 0, [None, [0, -3, 1, -1, ""]]])),
    ("result status true", spec_bytes([1, 0, 0, [None, [0, -3, 1, True, ""]]])),
    ("result detail bytes", spec_bytes([1, 0, 0, [None, [0, -3, 1, 0, b"ok"]]])),
    ("result detail null", spec_bytes([1, 0, 0, [None, [0, -3, 1, 0, None]]])),
    ("result detail of 201 bytes", spec_bytes([1, 0, 0, [None, [0, -3, 1, 0, "x" * 201]]])),
    ("result detail of 202 bytes", spec_bytes([1, 0, 0, [None, [0, -3, 1, 0, "\u00e9" * 101]]])),
    ("result in a device group", spec_bytes([1, 0, 0, [A, [0, -3, 1, 0, ""]]])),
    ("running of three items", spec_bytes([1, 0, 0, [None, [0, -4, "1.0"]]])),
    ("running of five items", spec_bytes([1, 0, 0, [None, [0, -4, "1.0", None, 0]]])),
    ("running software empty", spec_bytes([1, 0, 0, [None, [0, -4, "", None]]])),
    ("running software of 33 bytes", spec_bytes([1, 0, 0, [None, [0, -4, "v" * 33, None]]])),
    ("running software bytes", spec_bytes([1, 0, 0, [None, [0, -4, b"1.0", None]]])),
    ("running config negative", spec_bytes([1, 0, 0, [None, [0, -4, "1.0", -1]]])),
    ("running config beyond 2**40-1", spec_bytes([1, 0, 0, [None, [0, -4, "1.0", MAX_ID + 1]]])),
    ("running config text", spec_bytes([1, 0, 0, [None, [0, -4, "1.0", "7"]]])),
    ("running config float", spec_bytes([1, 0, 0, [None, [0, -4, "1.0", 7.0]]])),
    ("running in a device group", spec_bytes([1, 0, 0, [A, [0, -4, "1.0", None]]])),
    ("kiosk of five items", spec_bytes([1, 0, 0, [None, [0, -5, 0, 1, None]]])),
    ("kiosk of seven items", spec_bytes([1, 0, 0, [None, [0, -5, 0, 1, None, "", 0]]])),
    ("kiosk kind 7", spec_bytes([1, 0, 0, [None, [0, -5, 7, 1, None, ""]]])),
    ("kiosk id negative", spec_bytes([1, 0, 0, [None, [0, -5, 0, -1, None, ""]]])),
    ("kiosk id beyond 2**40-1", spec_bytes([1, 0, 0, [None, [0, -5, 0, MAX_ID + 1, None, ""]]])),
    ("kiosk wearable of 5 bytes", spec_bytes([1, 0, 0, [None, [0, -5, 0, 1, A[:5], ""]]])),
    ("kiosk wearable text", spec_bytes([1, 0, 0, [None, [0, -5, 0, 1, "aabbccddeeff", ""]]])),
    ("kiosk detail of 65 bytes", spec_bytes([1, 0, 0, [None, [0, -5, 1, 1, None, "x" * 65]]])),
    ("kiosk detail bytes", spec_bytes([1, 0, 0, [None, [0, -5, 1, 1, None, b"A1"]]])),
    ("kiosk in a device group", spec_bytes([1, 0, 0, [A, [0, -5, 0, 1, None, ""]]])),
]


@pytest.mark.parametrize(("name", "payload"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_batches_raise_decode_error(name: str, payload: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_batch(payload)
    assert str(info.value) and "\n" not in str(info.value)


def test_a_well_formed_neighbour_of_each_malformed_case_decodes() -> None:
    # The bad cases above differ from these in the one thing they break.
    for good in (
        spec_bytes([1, 0, 0, [A, GOOD_RECORD]]),
        spec_bytes([1, 1, 0, [A, [MAX_DURATION_MS, 0, 2150]]]),
        spec_bytes([1, 0, 0, [A, [0, -1, [20, 100], -2, [-127, 0]]]]),
        spec_bytes([1, 0, 0, [None, [0, 6, 1, "frames_x", None]], [A, GOOD_RECORD]]),
        spec_bytes([1, 0, 0, [A, [0, [0, 1], 1, ["a", "b"], [1, "x", None]]]]),
        spec_bytes([1, 0, 0, [None, [0, -3, MAX_ID, 3, "\u00e9" * 100], [0, -3, 0, 0, ""]]]),
        spec_bytes([1, 0, 0, [None, [0, -4, "v" * 32, MAX_ID], [0, -4, "\u00e9", None]]]),
        spec_bytes([1, 0, 0, [None, [0, 6, 1, 7, None], [0, -4, "1.0", 0]]]),
        spec_bytes([1, 0, 0, [None, [0, -5, 2, MAX_ID, A, "x" * 64], [0, -5, 0, 0, None, ""]]]),
    ):
        decode_batch(good)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_batches_decode_or_raise_decode_error_only(data: st.DataObject) -> None:
    payload = bytearray(encode_batch(scenarios.sample_records()))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(payload)))
    try:
        decoded = decode_batch(bytes(payload[:cut]))
    except DecodeError:
        return
    check_schema(cbor2.loads(bytes(payload[:cut])))
    assert decoded.records


def test_bad_records_are_local_errors_when_encoding() -> None:
    cases: list[tuple[list[Any], str]] = [
        ([], "at least one record"),
        ([BatchReading(A[:5], 0, "temperature", 1.0, "°C")], "6 bytes"),
        ([BatchReading(A, 0, "temperature", {"a": 1}, "°C")], "dict"),
        ([BatchReading(A, 0, "temperature", [[1]], "°C")], "list"),
        ([BatchReading(A, 0, "count", U64, "")], "64-bit"),
        ([BatchReading(A, 0, 5, 1, "")], "text"),
        ([("temperature", 1.0, "°C")], "tuple"),
        ([PresenceEvent("stay", A, 0, -50, 50)], "enter or leave"),
        ([Health(0, {"frames_in": 1.5})], "int or None"),
        ([Health(0, {3: 1})], "text"),
        ([Health(0, {})], "at least one counter"),
        ([CommandResult(0, -1, 0, "")], r"command id is an int in 0\.\.2\*\*40-1"),
        ([CommandResult(0, MAX_ID + 1, 0, "")], "command id"),
        ([CommandResult(0, True, 0, "")], "command id"),
        ([CommandResult(0, 1, 4, "")], "status is 0..3"),
        ([CommandResult(0, 1, None, "")], "status is 0..3"),
        ([CommandResult(0, 1, 0, "x" * 201)], "at most 200 bytes"),
        ([CommandResult(0, 1, 0, "\u00e9" * 101)], "at most 200 bytes"),
        ([CommandResult(0, 1, 0, b"ok")], "at most 200 bytes"),
        ([CommandResult(0, 1, 0, "\ud800")], "cannot be UTF-8"),
        ([Running(0, "", None)], "1 to 32 bytes"),
        ([Running(0, "v" * 33, None)], "1 to 32 bytes"),
        ([Running(0, b"1.0", None)], "1 to 32 bytes"),
        ([Running(0, "1.0", -1)], r"config revision is None or 0\.\.2\*\*40-1"),
        ([Running(0, "1.0", "7")], "config revision"),
        ([KioskEvent(0, 7, 1, None, "")], "kind is 0..6"),
        ([KioskEvent(0, 0, MAX_ID + 1, None, "")], "id is an int"),
        ([KioskEvent(0, 0, 1, A[:5], "")], "None or 6 bytes"),
        ([KioskEvent(0, 1, 1, None, "x" * 65)], "at most 64 bytes"),
        (
            [
                BatchReading(A, 0, "battery", 1, "%"),
                BatchReading(A, MAX_DURATION_MS + 1, "battery", 1, "%"),
            ],
            "within",
        ),
    ]
    for items, message in cases:
        with pytest.raises(LocalError, match=message):
            encode_batch(items)
    with pytest.raises(LocalError, match="clock"):
        encode_batch([BatchReading(A, 0, "battery", 1, "%")], clock=2)


# --- MicroPython ----------------------------------------------------------------------------


@pytest.mark.micropython
def test_micropython_writes_and_reads_the_same_batches(micropython) -> None:
    payloads = [p.hex() for _, p in MALFORMED] + [spec_bytes([1, 0, 7, [A, GOOD_RECORD]]).hex()]
    code = (
        "import json, batch_scenarios as s\n"
        "print(json.dumps(s.encode_sample()))\n"
        "print(json.dumps(s.decode_each(json.loads(%r))))\n" % json.dumps(payloads)
    )
    run = micropython.run(code, files={"/lib/batch_scenarios.py": SCENARIO_SOURCE}).check()
    sample, decoded = (json.loads(line) for line in run.stdout.splitlines())
    assert sample == json.loads(json.dumps(scenarios.encode_sample()))
    assert bytes.fromhex(sample["payload"]) == encode_batch(scenarios.sample_records())
    assert decoded == json.loads(json.dumps(scenarios.decode_each(payloads)))
    assert [d[0] for d in decoded] == ["DecodeError"] * len(MALFORMED) + ["ok"]
