"""The decoded-frame record and its flags."""

from __future__ import annotations

from bankiot_core import decoded
from bankiot_core.decoded import DecodedFrame, readings_dict
from bankiot_core.readings import Reading


def test_flags_are_distinct_bits() -> None:
    flags = [getattr(decoded, n) for n in dir(decoded) if n.startswith("FLAG_")]
    assert len(flags) == 5
    for f in flags:
        assert f and not f & (f - 1)
    assert sum(flags) == 0x1F


def test_frame_fields_and_readings_dict() -> None:
    frame = DecodedFrame(
        b"\x01" * 6,
        decoded.FORMAT_BTHOME,
        (Reading("temperature", 21.5, "°C"), Reading("button", "press", decoded.EVENT_UNIT)),
        7,
        None,
        decoded.FLAG_TRIGGER_BASED,
    )
    assert frame.format == "bthome" and frame.packet_id == 7 and frame.counter is None
    assert readings_dict(frame) == {"temperature": 21.5, "button": "press"}
    assert frame == DecodedFrame(*frame)  # a plain, comparable record
