"""iBeacon and Eddystone: known answers, and iBeacon against TheengsDecoder.

TheengsDecoder takes a JSON object with ``manufacturerdata`` as hex including the company id
(little-endian, so ``4c00`` for Apple) and answers ``uuid`` (hex without dashes), ``major``,
``minor`` and ``txpower``, the measured power at 1 m that we call ``measured_power``.

Two systematic disagreements (TheengsDecoder 2.5.0), both pinned below: it reads major and
minor as signed 16-bit (0x8000 -> -32768) where Apple's format and we have unsigned
0..65535, and it leaves ``txpower`` out unless it is negative (a real beacon's measured power
at 1 m always is; we report the signed byte whatever it holds).
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from TheengsDecoder import decodeBLE

from bankiot_core.beacons import decode_eddystone, decode_ibeacon, is_ibeacon
from bankiot_core.errors import CoreError
from tests.core import vectors

PREFIXES = ("iBeacon", "Eddystone", "other Apple")


@pytest.mark.parametrize(
    "case", [c for c in vectors.CASES if c[0].startswith(PREFIXES)], ids=lambda c: c[0]
)
def test_known_answers(case: tuple) -> None:
    assert vectors.run_case(case) == vectors.normalize(case[3])


def test_is_ibeacon() -> None:
    assert is_ibeacon(b"\x02\x15" + b"\x00" * 21)
    assert not is_ibeacon(b"\x10\x05")
    assert not is_ibeacon(b"")


@given(
    st.binary(min_size=16, max_size=16),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(-128, 127),
)
def test_ibeacon_agrees_with_theengs(uuid: bytes, major: int, minor: int, power: int) -> None:
    body = b"\x02\x15" + uuid + major.to_bytes(2, "big") + minor.to_bytes(2, "big")
    body += power.to_bytes(1, "big", signed=True)
    theirs = json.loads(
        decodeBLE(json.dumps({"manufacturerdata": "4c00" + body.hex(), "id": "11:22:33:44:55:66"}))
    )
    ours = {r.metric: r.value for r in decode_ibeacon(body).readings}
    assert theirs["model_id"] == "IBEACON"
    assert ours["uuid"].replace("-", "") == theirs["uuid"]
    assert 0 <= ours["major"] <= 0xFFFF and 0 <= ours["minor"] <= 0xFFFF
    assert ours["major"] == theirs["major"] % 0x10000  # TheengsDecoder: signed
    assert ours["minor"] == theirs["minor"] % 0x10000
    if power < 0:
        assert ours["measured_power"] == theirs["txpower"]
    else:
        assert ours["measured_power"] == power and "txpower" not in theirs


def test_theengs_reads_major_and_minor_signed_and_drops_positive_power() -> None:
    body = bytes.fromhex("0215" + "00" * 16 + "8000" + "FFFF" + "05")
    theirs = json.loads(decodeBLE(json.dumps({"manufacturerdata": "4c00" + body.hex()})))
    assert (theirs["major"], theirs["minor"]) == (-32768, -1)
    assert "txpower" not in theirs
    ours = {r.metric: r.value for r in decode_ibeacon(body).readings}
    assert (ours["major"], ours["minor"], ours["measured_power"]) == (32768, 65535, 5)


@given(st.binary(max_size=30))
def test_random_bytes_raise_only_core_errors(data: bytes) -> None:
    for fn in (decode_ibeacon, decode_eddystone):
        with contextlib.suppress(CoreError):
            fn(data)


def test_wrong_types_are_decode_errors() -> None:
    for fn in (decode_ibeacon, decode_eddystone):
        with pytest.raises(CoreError):
            fn("0215")  # type: ignore[arg-type]
