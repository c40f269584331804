"""bankiot_core.radio: the radio-mode messages an ESP32 sends a Raspberry Pi over a UART.

Known answers come from cbor2 (canonical encoding, RFC 8949 4.2.1) for the messages the
module's CDDL describes; the same cases run on CPython and under real MicroPython
(``radio_scenarios.py``). Every way a message can break the CDDL, or be encoded in a longer
form than needed, must be refused with DecodeError, and nothing the encoder would refuse may
be produced. Finally adverts in frames go through the deframer the gateway uses.
"""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankiot_core import framing, radio
from bankiot_core.errors import DecodeError, LocalError
from hw.micropython_runner import MicroPythonRunner
from tests.core import radio_scenarios as scenarios
from tests.core.scenario_runner import run_scenario

ADDRESS = bytes.fromhex("a4c138123456")
BTHOME = bytes.fromhex("020106") + bytes.fromhex("0a16d2fc4000cd02c409")  # flags + service data

# (address, type, rssi, data) that fit the CDDL: RSSI at the edges of CBOR's one-byte
# negative ints (-24 is 0x37, -25 needs 0x38 0x18), data lengths at the head's edges.
GOOD_ADVERTS = [
    (ADDRESS, 0, -60, BTHOME),
    (ADDRESS, 1, -24, b""),
    (ADDRESS, 2, -25, bytes(23)),
    (ADDRESS, 3, -128, bytes(range(24))),
    (bytes(6), 1, 127, bytes(255)),
    (b"\xff" * 6, 0, 0, b"\x00"),
    (ADDRESS, 0, 23, b"x"),
    (ADDRESS, 0, 24, b"y"),
]
BAD_ADVERTS = [
    (ADDRESS[:5], 0, -60, b""),
    (ADDRESS + b"\x00", 0, -60, b""),
    (ADDRESS, 4, -60, b""),
    (ADDRESS, -1, -60, b""),
    (ADDRESS, True, -60, b""),
    (ADDRESS, 0, -129, b""),
    (ADDRESS, 0, 128, b""),
    (ADDRESS, 0, -60, bytes(256)),
]
GOOD_STATUSES: list[tuple[str, int, dict[str, int]]] = [
    ("1.4.0", 0, {}),
    ("radio-0.1.0+esp32", 86_400, {"heard": 1234, "sent": 1200, "dropped": 34}),
    ("x" * 32, 0xFFFFFFFF, {"n%02d" % i: i for i in range(16)}),
    ("é", 1, {"a" * 32: 0xFFFFFFFF, "b": 0, "aa": 24}),
]
BAD_STATUSES: list[tuple[Any, Any, Any]] = [
    ("", 0, {}),
    ("x" * 33, 0, {}),
    ("é" * 17, 0, {}),  # 17 characters but 34 bytes
    ("1.0", -1, {}),
    ("1.0", 1 << 32, {}),
    ("1.0", 0, {"n%02d" % i: i for i in range(17)}),
    ("1.0", 0, {"": 1}),
    ("1.0", 0, {"a" * 33: 1}),
    ("1.0", 0, {"heard": -1}),
    ("1.0", 0, {"heard": 1 << 32}),
    ("1.0", 0, {"heard": True}),
    (b"1.0", 0, {}),
]


def advert_cbor(address: bytes, address_type: Any, rssi: Any, data: bytes) -> bytes:
    return cbor2.dumps([1, address, address_type, rssi, data], canonical=True)


def status_cbor(software: Any, uptime_s: Any, counters: Any) -> bytes:
    return cbor2.dumps([2, software, uptime_s, counters], canonical=True)


def bad_messages() -> list[bytes]:
    """Messages outside the CDDL, or inside it but not in deterministic encoding."""
    good = advert_cbor(ADDRESS, 0, -60, BTHOME)
    out = [advert_cbor(*fields) for fields in BAD_ADVERTS]
    out += [status_cbor(*fields) for fields in BAD_STATUSES]
    out += [
        b"",
        good[:-1],  # truncated
        good + b"\x00",  # something after the item
        cbor2.dumps({1: 2}),
        cbor2.dumps([]),
        cbor2.dumps([3, ADDRESS, 0, -60, b""]),  # unknown kind
        cbor2.dumps([True, ADDRESS, 0, -60, b""]),
        cbor2.dumps(["advert", ADDRESS, 0, -60, b""]),
        cbor2.dumps([1, ADDRESS, 0, -60]),
        cbor2.dumps([1, ADDRESS, 0, -60, b"", 0]),
        cbor2.dumps([1, ADDRESS.hex(), 0, -60, b""]),
        cbor2.dumps([1, ADDRESS, 0, -60, "text"]),
        cbor2.dumps([1, ADDRESS, 0, -60.0, b""]),
        cbor2.dumps([2, "1.0", 0]),
        cbor2.dumps([2, "1.0", 0, [1, 2]]),
        cbor2.dumps([2, "1.0", 0, {1: 2}]),
        # Right values, longer forms than needed: address type 1 as 0x18 0x01, the array
        # head as 0x98 0x05, the data length as 0x58 0x00.
        bytes.fromhex("850146") + ADDRESS + bytes.fromhex("1801") + bytes.fromhex("383b40"),
        bytes.fromhex("98050146") + ADDRESS + bytes.fromhex("01383b40"),
        bytes.fromhex("850146") + ADDRESS + bytes.fromhex("01383b5800"),
        # Map keys out of order: "heard" (head 0x65) before "sent" (0x64), kept by cbor2
        # without canonical=True.
        cbor2.dumps([2, "1.0", 0, {"heard": 1, "sent": 2}]),
        # Longer than any message can be.
        advert_cbor(ADDRESS, 0, -60, bytes(255)) + bytes(800),
    ]
    return out


def known_answer_cases() -> tuple[dict[str, Any], dict[str, Any]]:
    good_adverts = [advert_cbor(*fields) for fields in GOOD_ADVERTS]
    good_statuses = [status_cbor(*fields) for fields in GOOD_STATUSES]
    bad = bad_messages()

    def advert_case(fields: tuple[Any, ...]) -> list[Any]:
        address, address_type, rssi, data = fields
        return [address.hex(), address_type, rssi, data.hex()]

    cases = {
        "adverts": [advert_case(f) for f in GOOD_ADVERTS + BAD_ADVERTS],
        "statuses": [list(f) for f in GOOD_STATUSES + BAD_STATUSES if isinstance(f[0], str)],
        "decode": [m.hex() for m in good_adverts + good_statuses + bad],
    }
    expected = {
        "adverts": [m.hex() for m in good_adverts] + ["LocalError"] * len(BAD_ADVERTS),
        "statuses": [m.hex() for m in good_statuses]
        + ["LocalError"] * sum(1 for f in BAD_STATUSES if isinstance(f[0], str)),
        "decode": [["advert", *advert_case(f)] for f in GOOD_ADVERTS]
        + [["status", *f] for f in GOOD_STATUSES]
        + ["DecodeError"] * len(bad),
    }
    return cases, json.loads(json.dumps(expected))


def test_known_answers() -> None:
    cases, expected = known_answer_cases()
    assert scenarios.run(cases) == expected


@pytest.mark.micropython
def test_known_answers_under_micropython(micropython: MicroPythonRunner) -> None:
    cases, expected = known_answer_cases()
    assert run_scenario(micropython, scenarios, "run", cases) == expected


def test_the_longest_messages_fit_max_message() -> None:
    longest_status = status_cbor("x" * 32, 0xFFFFFFFF, {"%032d" % i: 0xFFFFFFFF for i in range(16)})
    longest_advert = advert_cbor(ADDRESS, 3, -128, bytes(255))
    assert radio.decode(longest_status) == radio.Status(
        "x" * 32, 0xFFFFFFFF, {"%032d" % i: 0xFFFFFFFF for i in range(16)}
    )
    assert len(longest_status) <= radio.MAX_MESSAGE
    assert len(longest_advert) <= radio.MAX_MESSAGE


def test_encode_takes_the_named_tuples() -> None:
    advert = radio.Advert(ADDRESS, radio.RANDOM, -70, BTHOME)
    status = radio.Status("1.0.0", 5, {"heard": 3})
    assert radio.encode(advert) == advert_cbor(ADDRESS, 1, -70, BTHOME)
    assert radio.encode(status) == status_cbor("1.0.0", 5, {"heard": 3})
    assert radio.decode(radio.encode(advert)) == advert
    assert radio.decode(bytearray(radio.encode(status))) == status
    with pytest.raises(LocalError, match="Advert or a Status"):
        radio.encode((1, ADDRESS, 0, -60, b""))
    with pytest.raises(DecodeError):
        radio.decode("85")  # type: ignore[arg-type]


@given(
    address=st.binary(min_size=6, max_size=6),
    address_type=st.integers(0, 3),
    rssi=st.integers(-128, 127),
    data=st.binary(max_size=255),
)
def test_any_advert_matches_cbor2_and_crosses_a_frame(
    address: bytes, address_type: int, rssi: int, data: bytes
) -> None:
    message = radio.encode_advert(address, address_type, rssi, data)
    assert message == advert_cbor(address, address_type, rssi, data)
    deframer = framing.Deframer(radio.MAX_MESSAGE)
    (payload,) = deframer.feed(b"boot noise\r\n" + framing.encode_frame(message))
    assert radio.decode(payload) == radio.Advert(address, address_type, rssi, data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        message = radio.decode(data)
    except DecodeError:
        return
    # Whatever is accepted is exactly the deterministic encoding of what came out.
    assert radio.encode(message) == data
