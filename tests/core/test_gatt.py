"""GATT values: Heart Rate Measurement (0x2A37) and Battery Level (0x2A19)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankiot_core.decoded import FORMAT_HEART_RATE
from bankiot_core.errors import CoreError, DecodeError
from bankiot_core.gatt import decode_battery_level, decode_gatt, decode_heart_rate
from bankiot_core.readings import Reading
from tests.core import vectors

PREFIXES = ("heart rate", "battery level", "unknown characteristic")


@pytest.mark.parametrize(
    "case", [c for c in vectors.CASES if c[0].startswith(PREFIXES)], ids=lambda c: c[0]
)
def test_known_answers(case: tuple) -> None:
    assert vectors.run_case(case) == vectors.normalize(case[3])


def test_frame_carries_the_address() -> None:
    frame = decode_gatt(0x2A37, b"\x00\x48", b"\x01" * 6)
    assert frame.address == b"\x01" * 6 and frame.format == FORMAT_HEART_RATE
    assert frame.packet_id is None and frame.counter is None and frame.flags == 0


def test_rr_intervals_are_exact_milliseconds() -> None:
    # 1/1024 s steps: 1 -> 0.9765625 ms, 1023 -> 999.0234375 ms, 65535 -> 63999.0234375 ms.
    (hr, rr) = decode_heart_rate(bytes.fromhex("10500100FF03FFFF"))
    assert hr == Reading("heart_rate", 80, "bpm")
    assert rr == Reading("rr_intervals", [0.9765625, 999.0234375, 63999.0234375], "ms")


def test_rr_flag_without_intervals_gives_no_rr_reading() -> None:
    assert decode_heart_rate(b"\x10\x50") == (Reading("heart_rate", 80, "bpm"),)


def test_reserved_flag_bits_are_ignored() -> None:
    assert decode_heart_rate(b"\xe0\x50") == (Reading("heart_rate", 80, "bpm"),)


def test_uuid_forms_and_bad_values() -> None:
    for uuid in (0x2A19, "2a19", "0x2A19", "00002a19-0000-1000-8000-00805f9b34fb"):
        assert decode_gatt(uuid, b"\x32").readings == (Reading("battery", 50, "%"),)
    with pytest.raises(DecodeError, match="no decoder"):
        decode_gatt("e2c56db5-dffb-48d2-b060-d0f5a71096e0", b"\x00")
    with pytest.raises(DecodeError, match="must be bytes"):
        decode_gatt(0x2A19, "2")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode_battery_level(b"\x01\x02")


@st.composite
def heart_rate_values(draw: st.DrawFn) -> tuple[bytes, dict]:
    """A valid measurement built from its fields, and what it must decode to."""
    wide = draw(st.booleans())
    rate = draw(st.integers(0, 0xFFFF if wide else 0xFF))
    contact = draw(st.integers(0, 3))
    energy = draw(st.one_of(st.none(), st.integers(0, 0xFFFF)))
    rr = draw(st.one_of(st.none(), st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=8)))
    flags = (1 if wide else 0) | (contact << 1) | (8 if energy is not None else 0)
    flags |= 16 if rr is not None else 0
    data = bytes([flags]) + rate.to_bytes(2 if wide else 1, "little")
    expected: dict = {"heart_rate": rate}
    if contact >= 2:
        expected["sensor_contact"] = contact == 3
    if energy is not None:
        data += energy.to_bytes(2, "little")
        expected["energy_expended"] = energy
    if rr is not None:
        data += b"".join(v.to_bytes(2, "little") for v in rr)
        expected["rr_intervals"] = [v / 1.024 for v in rr]
    return data, expected


@given(heart_rate_values())
def test_heart_rate_round_trip(value: tuple[bytes, dict]) -> None:
    data, expected = value
    got = {r.metric: r.value for r in decode_heart_rate(data)}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == (pytest.approx(v, rel=1e-12) if k == "rr_intervals" else v)


@given(st.binary(max_size=24))
def test_random_bytes_raise_only_core_errors(data: bytes) -> None:
    for uuid in (0x2A37, 0x2A19):
        with contextlib.suppress(CoreError):
            decode_gatt(uuid, data)


def test_wrong_types_are_decode_errors() -> None:
    for fn in (decode_heart_rate, decode_battery_level):
        with pytest.raises(DecodeError, match="must be bytes"):
            fn("0048")  # type: ignore[arg-type]
