"""Device addresses: six bytes in display order, text in and out."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankiot_core.address import check_mac, mac_from_str, mac_to_str
from bankiot_core.errors import CoreError, DecodeError

MAC = b"\xaa\xbb\xcc\xdd\xee\x01"


@pytest.mark.parametrize(
    "text", ["AA:BB:CC:DD:EE:01", "aa:bb:cc:dd:ee:01", "AA-BB-CC-DD-EE-01", "aabbccddee01"]
)
def test_accepted_forms(text: str) -> None:
    assert mac_from_str(text) == MAC


def test_display_order_and_upper_case() -> None:
    assert mac_to_str(MAC) == "AA:BB:CC:DD:EE:01"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "AA:BB:CC:DD:EE",
        "AA:BB:CC:DD:EE:0G",
        "AA:BB-CC:DD:EE:01",
        "A:ABB:CC:DD:EE:01",
        "AABBCCDDEE01FF",
        "+a:bb:cc:dd:ee:01",
        " aabbccddee0",
    ],
)
def test_rejected_forms(text: str) -> None:
    with pytest.raises(DecodeError):
        mac_from_str(text)


def test_wrong_types_and_sizes() -> None:
    with pytest.raises(DecodeError):
        mac_from_str(b"AA:BB:CC:DD:EE:01")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        mac_to_str(b"\x00" * 5)
    with pytest.raises(DecodeError):
        mac_to_str(None)  # type: ignore[arg-type]
    assert check_mac(bytearray(MAC)) == MAC
    with pytest.raises(DecodeError):
        check_mac("AA:BB:CC:DD:EE:01")


@given(st.binary(min_size=6, max_size=6))
def test_round_trip(mac: bytes) -> None:
    assert mac_from_str(mac_to_str(mac)) == mac
    assert mac_from_str(mac_to_str(mac).lower().replace(":", "-")) == mac


@given(st.text(max_size=20))
def test_random_text_raises_only_core_errors(text: str) -> None:
    with contextlib.suppress(CoreError):
        assert len(mac_from_str(text)) == 6


ACCEPTED = ["AA:BB:CC:DD:EE:01", "aa:bb:cc:dd:ee:01", "AA-BB-CC-DD-EE-01", "aabbccddee01"]
REJECTED = [
    "",
    "AA:BB:CC:DD:EE",
    "AA:BB:CC:DD:EE:0G",
    "AA:BB-CC:DD:EE:01",
    "A:ABB:CC:DD:EE:01",
    "AABBCCDDEE01FF",
    "+a:bb:cc:dd:ee:01",
    " aabbccddee0",
]


def test_same_forms_under_micropython(micropython) -> None:
    out = (
        micropython.run(
            "from bankiot_core.address import mac_from_str, mac_to_str\n"
            "from bankiot_core.errors import DecodeError\n"
            "for t in %r:\n"
            "    print(mac_to_str(mac_from_str(t)))\n"
            "for t in %r:\n"
            "    try:\n"
            "        mac_from_str(t)\n"
            "        print('accepted', t)\n"
            "    except DecodeError:\n"
            "        print('rejected')\n" % (ACCEPTED, REJECTED)
        )
        .check()
        .stdout.splitlines()
    )
    assert out == ["AA:BB:CC:DD:EE:01"] * len(ACCEPTED) + ["rejected"] * len(REJECTED)
