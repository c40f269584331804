"""ATC1441 and pvvx thermometer frames: known answers and TheengsDecoder as the oracle.

TheengsDecoder takes ``{"servicedata": hex, "servicedatauuid": "0x181a", "id": MAC}`` and
answers ``tempc``, ``hum``, ``batt`` and ``volt`` (and ``mac`` from the payload); the frame
counter and pvvx flags are not reported by it. It only recognises these firmwares when the
MAC in the payload has Xiaomi's prefix A4:C1:38 (the devices they run on), so the generated
MACs keep that prefix.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from TheengsDecoder import decodeBLE

from bankiot_core.decoded import FLAG_MAC_INCLUDED
from bankiot_core.errors import CoreError
from bankiot_core.xiaomi import decode_thermometer
from tests.core import vectors

PREFIXES = ("ATC1441", "pvvx", "0x181A")


@pytest.mark.parametrize(
    "case", [c for c in vectors.CASES if c[0].startswith(PREFIXES)], ids=lambda c: c[0]
)
def test_known_answers(case: tuple) -> None:
    assert vectors.run_case(case) == vectors.normalize(case[3])


def _mac_text(mac: bytes) -> str:
    return ":".join("%02X" % b for b in mac)


def theengs(data: bytes, mac: bytes) -> dict:
    query = {"servicedata": data.hex(), "servicedatauuid": "0x181a", "id": _mac_text(mac)}
    text = decodeBLE(json.dumps(query))
    assert text is not None
    return json.loads(text)


xiaomi_macs = st.binary(min_size=3, max_size=3).map(lambda tail: b"\xa4\xc1\x38" + tail)


@given(
    xiaomi_macs,
    st.integers(-400, 850),
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 3600),
    st.integers(0, 255),
)
def test_atc1441_agrees_with_theengs(
    mac: bytes, temp: int, hum: int, batt: int, mv: int, count: int
) -> None:
    data = mac + temp.to_bytes(2, "big", signed=True) + bytes([hum, batt])
    data += mv.to_bytes(2, "big") + bytes([count])
    frame = decode_thermometer(data)
    ours = {r.metric: r.value for r in frame.readings}
    theirs = theengs(data, mac)
    assert theirs["model_id"].endswith("_ATC")
    assert frame.address == mac and frame.flags == FLAG_MAC_INCLUDED
    assert theirs["mac"] == _mac_text(mac)
    assert ours["temperature"] == pytest.approx(theirs["tempc"], abs=1e-9)
    assert ours["humidity"] == theirs["hum"]
    assert ours["battery"] == theirs["batt"]
    assert ours["voltage"] == pytest.approx(theirs["volt"], abs=1e-9)
    assert ours["packet_id"] == count == frame.packet_id


@given(
    xiaomi_macs,
    st.integers(-4000, 8500),
    st.integers(0, 10000),
    st.integers(0, 3600),
    st.integers(0, 100),
    st.integers(0, 255),
    st.integers(0, 255),
)
def test_pvvx_agrees_with_theengs(
    mac: bytes, temp: int, hum: int, mv: int, batt: int, count: int, flags: int
) -> None:
    data = mac[::-1] + temp.to_bytes(2, "little", signed=True) + hum.to_bytes(2, "little")
    data += mv.to_bytes(2, "little") + bytes([batt, count, flags])
    frame = decode_thermometer(data)
    ours = {r.metric: r.value for r in frame.readings}
    theirs = theengs(data, mac)
    assert theirs["model_id"].endswith("_PVVX")
    assert frame.address == mac and theirs["mac"] == _mac_text(mac)
    assert ours["temperature"] == pytest.approx(theirs["tempc"], abs=1e-9)
    assert ours["humidity"] == pytest.approx(theirs["hum"], abs=1e-9)
    assert ours["battery"] == theirs["batt"]
    assert ours["voltage"] == pytest.approx(theirs["volt"], abs=1e-9)
    assert ours["packet_id"] == count == frame.packet_id


@given(st.binary(max_size=20))
def test_random_bytes_raise_only_core_errors(data: bytes) -> None:
    with contextlib.suppress(CoreError):
        decode_thermometer(data)


def test_wrong_type_is_a_decode_error() -> None:
    with pytest.raises(CoreError):
        decode_thermometer("a4c1388000210107311d09b7")  # type: ignore[arg-type]
