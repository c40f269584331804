"""The dispatcher: one frame per advertisement, None when nothing is ours, core errors only."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankiot_core.advdata import advertisement_from_bleak, parse_advertisement
from bankiot_core.bthome import BindKey, encrypt_bthome
from bankiot_core.dispatch import decode_advertisement, decode_payload
from bankiot_core.errors import AuthenticationError, CoreError, DecodeError
from tests.core import vectors

MAC = bytes.fromhex(vectors.MAC)
KEY = bytes.fromhex(vectors.KEY)
IBEACON = bytes.fromhex("4C000215E2C56DB5DFFB48D2B060D0F5A71096E000010002C5")
BTHOME = bytes.fromhex("D2FC4002C409")


def _ad(ad_type: int, data: bytes) -> bytes:
    return bytes([len(data) + 1, ad_type]) + data


@pytest.mark.parametrize(
    "case",
    [c for c in vectors.CASES if c[1] in ("payload", "bleak")],
    ids=lambda c: c[0],
)
def test_known_answers(case: tuple) -> None:
    assert vectors.run_case(case) == vectors.normalize(case[3])


def test_bthome_wins_over_an_ibeacon_in_the_same_advertisement() -> None:
    frame = decode_payload(_ad(0xFF, IBEACON) + _ad(0x16, BTHOME), MAC)
    assert frame is not None and frame.format == "bthome"
    frame = decode_payload(_ad(0xFF, IBEACON), MAC)
    assert frame is not None and frame.format == "ibeacon"


def test_unknown_advertisements_are_none() -> None:
    assert decode_payload(_ad(0x09, b"Phone") + _ad(0xFF, b"\x06\x00\x01\x09"), MAC) is None
    assert decode_payload(_ad(0x16, b"\xaa\xfe\x30\x00"), MAC) is None  # Eddystone EID
    assert decode_payload(_ad(0x16, b"\xaa\xfe"), MAC) is None  # Eddystone, no frame type


def test_keys_are_used_and_required() -> None:
    data = b"\xd2\xfc" + encrypt_bthome(b"\x02\xc4\x09", MAC, KEY, 3)
    frame = decode_payload(_ad(0x16, data), MAC, {MAC: BindKey(KEY)})
    assert frame is not None and frame.counter == 3
    with pytest.raises(AuthenticationError):
        decode_payload(_ad(0x16, data), MAC)
    with pytest.raises(AuthenticationError):
        decode_payload(_ad(0x16, BTHOME), MAC, {MAC: BindKey(KEY)})


def test_address_from_an_irq_memoryview_is_copied() -> None:
    raw = bytearray(MAC)
    frame = decode_payload(_ad(0xFF, IBEACON), memoryview(raw))
    raw[0] = 0
    assert frame is not None and frame.address == MAC and type(frame.address) is bytes


def test_bad_address() -> None:
    with pytest.raises(DecodeError):
        decode_payload(_ad(0xFF, IBEACON), b"\x00" * 5)
    with pytest.raises(DecodeError):
        decode_payload(_ad(0xFF, IBEACON), "54:48:E6:8F:80:A5")  # type: ignore[arg-type]


def test_bleak_and_raw_routes_give_the_same_frame() -> None:
    raw = decode_payload(_ad(0x01, b"\x06") + _ad(0x16, BTHOME), MAC)
    bleak = decode_advertisement(
        advertisement_from_bleak({"0000fcd2-0000-1000-8000-00805f9b34fb": BTHOME[2:]}), MAC
    )
    assert raw == bleak
    assert raw == decode_advertisement(parse_advertisement(_ad(0x16, BTHOME)), MAC)


service_data = st.tuples(
    st.sampled_from([b"\xd2\xfc", b"\x1a\x18", b"\xaa\xfe", b"\x0d\x18"]), st.binary(max_size=24)
)
manufacturer_data = st.tuples(st.sampled_from([b"\x4c\x00", b"\x06\x00"]), st.binary(max_size=24))


@given(
    st.lists(st.one_of(service_data, manufacturer_data), max_size=4),
    st.one_of(st.none(), st.binary(min_size=6, max_size=6)),
)
def test_random_payloads_for_our_formats_raise_only_core_errors(
    parts: list[tuple[bytes, bytes]], address: bytes | None
) -> None:
    payload = b""
    for head, body in parts:
        ad_type = 0xFF if head in (b"\x4c\x00", b"\x06\x00") else 0x16
        if head == b"\x4c\x00" and body[:1] == b"\x00":
            body = b"\x02\x15" + body
        payload += _ad(ad_type, head + body)
    keys = {address: BindKey(KEY)} if address else None
    for ks in (None, keys):
        with contextlib.suppress(CoreError):
            decode_payload(payload, address, ks)


@given(st.binary(max_size=62))
def test_random_bytes_raise_only_core_errors(payload: bytes) -> None:
    with contextlib.suppress(CoreError):
        decode_payload(payload, MAC)
