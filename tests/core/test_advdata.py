"""Advertising data: AD structures from the radio and bleak's maps reach the same record."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankiot_core.advdata import (
    Advertisement,
    advertisement_from_bleak,
    parse_advertisement,
    uuid_from_str,
    uuid_to_str,
)
from bankiot_core.errors import CoreError, DecodeError
from tests.core import vectors


@pytest.mark.parametrize(
    "case", [c for c in vectors.CASES if c[0].startswith("AD ")], ids=lambda c: c[0]
)
def test_known_answers(case: tuple) -> None:
    assert vectors.run_case(case) == vectors.normalize(case[3])


def test_bthome_io_example_advertisement() -> None:
    adv = parse_advertisement(
        bytes.fromhex("020106 0B094449592D73656E736F72 0A16D2FC4002C40903BF13")
    )
    assert adv == Advertisement(
        6, "DIY-sensor", None, {0xFCD2: bytes.fromhex("4002C40903BF13")}, {}
    )


def test_every_service_data_width_and_manufacturer_data() -> None:
    payload = bytes.fromhex(
        "0416AAFE10"  # 16-bit 0xFEAA
        "0620D2FC000001"  # 32-bit alias of 0xFCD2
        "1221"
        "FB349B5F8000008000100000" + "1A180000" + "AB"  # 128-bit alias of 0x181A
        "1221" + "00112233445566778899AABBCCDDEEFF" + "CD"  # a vendor 128-bit UUID
        "05FF4C000215"  # Apple
        "020AF4"  # TX power -12 dBm
        "0319AABB"  # appearance: not used, passed over
    )
    adv = parse_advertisement(payload)
    assert adv.service_data == {
        0xFEAA: b"\x10",
        0xFCD2: b"\x01",
        0x181A: b"\xab",
        "ffeeddcc-bbaa-9988-7766-554433221100": b"\xcd",
    }
    assert adv.manufacturer_data == {0x004C: b"\x02\x15"}
    assert adv.tx_power == -12
    assert adv.flags is None and adv.local_name is None


def test_memoryview_from_an_irq_is_copied() -> None:
    raw = bytearray.fromhex("0416AAFE10")
    adv = parse_advertisement(memoryview(raw))
    raw[4] = 0
    assert adv.service_data[0xFEAA] == b"\x10"


def test_complete_name_wins_over_shortened() -> None:
    adv = parse_advertisement(bytes.fromhex("0408414243") + bytes.fromhex("0309585A"))
    assert adv.local_name == "XZ"
    adv = parse_advertisement(bytes.fromhex("0309585A") + bytes.fromhex("0408414243"))
    assert adv.local_name == "XZ"


def test_shortened_name_cut_inside_utf8_loses_the_broken_tail() -> None:
    name = "Zürich".encode()  # ü is two bytes
    cut = name[:2]  # "Z" and half of ü
    adv = parse_advertisement(bytes([len(cut) + 1, 0x08]) + cut)
    assert adv.local_name == "Z"
    with pytest.raises(DecodeError, match="not UTF-8"):
        parse_advertisement(bytes([len(cut) + 1, 0x09]) + cut)


@pytest.mark.parametrize(
    "payload, message",
    [
        ("0201", "claims 2 bytes"),
        ("0101", "flags at offset 0 are empty"),
        ("010A", "TX power"),
        ("030AF4F4", "TX power"),
        ("02FF4C", "no company id"),
        ("032000FC", "32-bit service data"),
        ("1021" + "00" * 15, "128-bit service data"),
    ],
)
def test_malformed_structures(payload: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_advertisement(bytes.fromhex(payload))


def test_not_bytes() -> None:
    with pytest.raises(DecodeError):
        parse_advertisement("020106")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, key",
    [
        ("fcd2", 0xFCD2),
        ("0xFCD2", 0xFCD2),
        ("0000FCD2", 0xFCD2),
        ("0000fcd2-0000-1000-8000-00805f9b34fb", 0xFCD2),
        ("12345678-0000-1000-8000-00805F9B34FB", 0x12345678),
        ("E2C56DB5-DFFB-48D2-B060-D0F5A71096E0", "e2c56db5-dffb-48d2-b060-d0f5a71096e0"),
    ],
)
def test_uuid_from_str(text: str, key: int | str) -> None:
    assert uuid_from_str(text) == key
    assert uuid_from_str(uuid_to_str(key)) == key


@pytest.mark.parametrize(
    "text", ["", "fcd", "fcd2x", "0x", "gggg", "0000fcd2_0000-1000-8000-00805f9b34fb", "+fcd"]
)
def test_bad_uuid_strings(text: str) -> None:
    with pytest.raises(DecodeError):
        uuid_from_str(text)


def test_uuid_to_str() -> None:
    assert uuid_to_str(0x2A37) == "00002a37-0000-1000-8000-00805f9b34fb"
    assert uuid_to_str("FCD2") == "0000fcd2-0000-1000-8000-00805f9b34fb"
    with pytest.raises(DecodeError):
        uuid_to_str(-1)


def test_bleak_maps_are_checked() -> None:
    with pytest.raises(DecodeError):
        advertisement_from_bleak({"nope": b""})
    with pytest.raises(DecodeError):
        advertisement_from_bleak(None, {0x10000: b""})
    with pytest.raises(DecodeError):
        advertisement_from_bleak({"fcd2": "40"})  # type: ignore[dict-item]
    adv = advertisement_from_bleak(
        {"0000fcd2-0000-1000-8000-00805f9b34fb": bytearray(b"\x40")},
        {76: b"\x02\x15"},
        "name",
        -4,
        6,
    )
    assert adv == Advertisement(6, "name", -4, {0xFCD2: b"\x40"}, {0x4C: b"\x02\x15"})


uuid16 = st.integers(0, 0xFFFF)
small_data = st.binary(max_size=12)


@given(
    st.dictionaries(uuid16, small_data, max_size=3),
    st.dictionaries(uuid16, small_data, max_size=3),
    st.one_of(st.none(), st.text(min_size=1, max_size=10)),
)
def test_raw_and_bleak_routes_agree(
    service_data: dict[int, bytes], manufacturer_data: dict[int, bytes], name: str | None
) -> None:
    """The same advertisement as AD bytes and as bleak would report it (128-bit UUID strings)."""
    payload = b"\x02\x01\x06"
    for uuid, data in service_data.items():
        payload += bytes([len(data) + 3, 0x16]) + uuid.to_bytes(2, "little") + data
    for company, data in manufacturer_data.items():
        payload += bytes([len(data) + 3, 0xFF]) + company.to_bytes(2, "little") + data
    if name is not None:
        encoded = name.encode()
        payload += bytes([len(encoded) + 1, 0x09]) + encoded
    raw = parse_advertisement(payload)
    bleak = advertisement_from_bleak(
        {"%08x-0000-1000-8000-00805f9b34fb" % u: d for u, d in service_data.items()},
        manufacturer_data,
        name,
        None,
        6,
    )
    assert raw == bleak


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_core_errors(payload: bytes) -> None:
    try:
        adv = parse_advertisement(payload)
    except CoreError:
        return
    assert isinstance(adv.service_data, dict) and isinstance(adv.manufacturer_data, dict)


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), max_size=6))
def test_well_framed_random_structures_raise_only_core_errors(
    structures: list[tuple[int, bytes]],
) -> None:
    payload = b"".join(bytes([len(d) + 1, t]) + d for t, d in structures)
    with contextlib.suppress(CoreError):
        parse_advertisement(payload)
