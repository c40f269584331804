"""bankiot_core.framing: COBS, CRC-32, the resynchronising deframer, and a real serial line.

Known answers: the COBS examples of Cheshire and Baker's paper as tabulated on Wikipedia,
the CRC-32 check value ("123456789" -> 0xCBF43926, the Rocksoft catalogue's and zlib's) and
frames derived by hand; they run on CPython and under real MicroPython
(``framing_scenarios.py``). Hypothesis compares the CRC with ``zlib.crc32`` and checks that
any payloads survive any split of the stream, that garbage between frames costs nothing and
that a corrupted frame is dropped, never delivered. Streams for those properties are built
by a reference encoder written here from the paper, not by the code under test. Finally,
frames with garbage between them cross a real pseudo-terminal pair opened with pyserial.
"""

from __future__ import annotations

import json
import os
import threading
import time
import zlib

import pytest
import serial
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bankiot_core import framing
from bankiot_core.errors import DecodeError, LocalError
from hw.micropython_runner import MicroPythonRunner
from tests.core import framing_scenarios as scenarios
from tests.core.scenario_runner import run_scenario

_RUN_01_FE = bytes(range(1, 255))  # 01 02 ... FE: 254 non-zero bytes

# The paper's examples as Wikipedia tabulates them: (input, encoding without delimiter).
COBS_EXAMPLES = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (_RUN_01_FE, b"\xff" + _RUN_01_FE),
    (b"\x00" + _RUN_01_FE, b"\x01\xff" + _RUN_01_FE),
    (bytes(range(1, 256)), b"\xff" + _RUN_01_FE + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]

CHECK_INPUT = b"123456789"
CHECK_CRC32 = 0xCBF43926

# Frames by hand: CRC-32 of b"" is 0, so the body is four zero bytes, COBS 01 01 01 01 01;
# "123456789" has no zero and neither has its CRC (26 39 f4 cb little-endian): one block
# of 13 bytes, code 0x0e.
FRAME_EMPTY = bytes.fromhex("00010101010100")
FRAME_CHECK = bytes.fromhex("000e") + CHECK_INPUT + bytes.fromhex("2639f4cb00")


def reference_cobs_decode(data: bytes) -> bytes | None:
    """COBS decoding straight from the paper, for building and judging test streams."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            return None
        out += data[i + 1 : i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def reference_cobs_encode(data: bytes) -> bytes:
    """COBS encoding straight from the paper: split at zeros, then cap blocks at 254."""
    out = bytearray()
    blocks = data.split(b"\x00")
    for index, block in enumerate(blocks):
        last = index == len(blocks) - 1
        while len(block) >= 254:
            out += b"\xff" + block[:254]
            block = block[254:]
            if not block and last:
                return bytes(out)
        out += bytes([len(block) + 1]) + block
    return bytes(out)


def reference_frame(payload: bytes) -> bytes:
    body = payload + zlib.crc32(payload).to_bytes(4, "little")
    return b"\x00" + reference_cobs_encode(body) + b"\x00"


def reference_valid(piece: bytes) -> bool:
    """Whether the bytes between two delimiters are an intact frame."""
    body = reference_cobs_decode(piece)
    if body is None or len(body) < 4:
        return False
    return zlib.crc32(body[:-4]) == int.from_bytes(body[-4:], "little")


def test_reference_encoder_matches_the_papers_examples() -> None:
    for data, encoded in COBS_EXAMPLES:
        assert reference_cobs_encode(data) == encoded
        assert reference_cobs_decode(encoded) == data


# --- Known answers, on both interpreters


def stream_cases() -> tuple[list, list]:
    """Streams for the deframer and what must come out: [max_payload, chunks], results."""
    corrupted = FRAME_CHECK.replace(b"1", b"0", 1)  # one data byte changed: CRC fails
    oversize = reference_frame(b"\x01" * 65)  # max_payload 64
    hi = reference_frame(b"hi")
    chunks = [
        b"\x55\xaa",  # noise before anything: ends at the next delimiter, not valid COBS
        FRAME_CHECK[:4],
        FRAME_CHECK[4:],
        b"\xff\x00\xee",  # noise with a delimiter in it: two bad pieces
        FRAME_EMPTY,
        corrupted,
        oversize,
        b"\x02\x01\x00",  # valid COBS of one byte: shorter than a CRC
        hi[:1],
        hi[1:],
    ]
    expected = [
        [],
        [],
        [CHECK_INPUT.hex()],
        [],
        [""],
        [],
        [],
        [],
        [],
        ["6869"],
        {
            "bad_crc": 1,
            "bytes_in": sum(len(c) for c in chunks),
            "frames": 3,
            "malformed": 3,
            "oversize": 1,
            "too_short": 1,
        },
    ]
    return [[64, [c.hex() for c in chunks]]], [expected]


def known_answer_cases() -> tuple[dict, dict]:
    streams, stream_results = stream_cases()
    cases = {
        "cobs": [data.hex() for data, _ in COBS_EXAMPLES],
        "crc": [b"".hex(), CHECK_INPUT.hex(), bytes(range(256)).hex()],
        "frames": ["", CHECK_INPUT.hex()],
        "streams": streams,
    }
    expected = {
        "cobs": [[encoded.hex(), data.hex()] for data, encoded in COBS_EXAMPLES],
        "crc": [
            [0, 0],
            [CHECK_CRC32, CHECK_CRC32],
            # Two more check values from zlib, the independent implementation.
            [zlib.crc32(bytes(range(256)))] * 2,
        ],
        "frames": [FRAME_EMPTY.hex(), FRAME_CHECK.hex()],
        "streams": stream_results,
    }
    return cases, json.loads(json.dumps(expected))


def test_known_answers() -> None:
    cases, expected = known_answer_cases()
    assert scenarios.run(cases) == expected


@pytest.mark.micropython
def test_known_answers_under_micropython(micropython: MicroPythonRunner) -> None:
    cases, expected = known_answer_cases()
    assert run_scenario(micropython, scenarios, "run", cases) == expected


def test_bad_input_gets_typed_errors() -> None:
    with pytest.raises(DecodeError):
        framing.cobs_decode(b"\x05\x01")  # the block claims 4 bytes, 1 follows
    with pytest.raises(DecodeError):
        framing.cobs_decode(b"\x02\x00")
    with pytest.raises(LocalError):
        framing.encode_frame("text")  # type: ignore[arg-type]
    with pytest.raises(LocalError):
        framing.Deframer(-1)


# --- Properties

payloads = st.lists(st.binary(max_size=600), max_size=8)


@given(st.binary(max_size=2000))
def test_cobs_round_trips_without_zeros_within_its_bound(data: bytes) -> None:
    encoded = framing.cobs_encode(data)
    assert b"\x00" not in encoded
    assert encoded == reference_cobs_encode(data)
    assert len(encoded) <= framing.encoded_size(len(data))
    assert framing.cobs_decode(encoded) == data


@given(st.binary(max_size=3000), st.integers(0, 0xFFFFFFFF))
def test_crc32_equals_zlib(data: bytes, start: int) -> None:
    assert framing.crc32(data, start) == zlib.crc32(data, start)
    assert framing.crc32_python(data, start) == zlib.crc32(data, start)


@given(payloads, st.lists(st.integers(0, 10_000), max_size=10))
def test_any_split_of_the_stream_gives_the_payloads(items: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(reference_frame(p) for p in items)
    for p in items:
        assert framing.encode_frame(p) == reference_frame(p)
    deframer = framing.Deframer(600)
    out = []
    last = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        out += deframer.feed(stream[last:cut])
        last = cut
    assert out == items
    counters = deframer.counters()
    assert counters["frames"] == len(items)
    assert counters["bad_crc"] == counters["malformed"] == counters["too_short"] == 0


@given(payloads, st.lists(st.binary(max_size=50), max_size=9), st.integers(1, 64))
def test_garbage_between_frames_costs_nothing(
    items: list[bytes], garbage: list[bytes], chunk: int
) -> None:
    # Garbage that happens to hold an intact frame would rightly come out: leave it out.
    for g in garbage:
        assume(not any(reference_valid(piece) for piece in g.split(b"\x00") if piece))
    stream = b""
    for i, p in enumerate(items):
        stream += garbage[i] if i < len(garbage) else b""
        stream += reference_frame(p)
    stream += b"".join(garbage[len(items) :])
    deframer = framing.Deframer(600)
    out = []
    for i in range(0, len(stream), chunk):
        out += deframer.feed(stream[i : i + chunk])
    out += deframer.feed(b"\x00")  # the end of the line flushes trailing garbage
    assert out == items


@settings(max_examples=300)
@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=6),
    st.data(),
)
def test_a_corrupted_frame_is_dropped_never_delivered(items: list[bytes], data) -> None:
    victim = data.draw(st.integers(0, len(items) - 1))
    frames = [bytearray(reference_frame(p)) for p in items]
    # Change one byte strictly inside the victim (not its delimiters) to another value.
    where = data.draw(st.integers(1, len(frames[victim]) - 2))
    frames[victim][where] ^= data.draw(st.integers(1, 255))
    deframer = framing.Deframer(300)
    out = deframer.feed(b"".join(bytes(f) for f in frames))
    assert out == items[:victim] + items[victim + 1 :]
    counters = deframer.counters()
    assert counters["bad_crc"] + counters["malformed"] + counters["too_short"] >= 1


@given(st.integers(0, 40), st.integers(0, 40))
def test_oversize_frames_are_dropped_and_counted(limit: int, size: int) -> None:
    deframer = framing.Deframer(limit)
    payload = bytes((i % 255) + 1 for i in range(size))
    out = deframer.feed(reference_frame(payload) + reference_frame(b"ok"))
    if size <= limit:
        assert out == [payload] + ([b"ok"] if limit >= 2 else [])
    else:
        assert out == ([b"ok"] if limit >= 2 else [])
        assert deframer.counters()["oversize"] >= 1


# --- A real serial line: a pseudo-terminal pair, pyserial on the receiving end


def test_frames_with_garbage_cross_a_pseudo_terminal() -> None:
    master, slave = os.openpty()
    port = serial.Serial()
    port.port = os.ttyname(slave)
    port.baudrate = 115200
    port.timeout = 0.05
    # Pseudo-terminals reject modem-line ioctls: no flow control, RTS/DTR left alone.
    port.rtscts = False
    port.dsrdtr = False
    port.open()
    items = [os.urandom(n) for n in (0, 1, 17, 254, 255, 600, 1000)] + [b"\x00" * 300]
    noise = [b"rst:0x1 (POWERON_RESET),boot:0x13\r\n", b"\x00\x00", b"\xff\xfe\x00\x01", b"ets"]
    stream = b""
    for i, p in enumerate(items):
        stream += noise[i % len(noise)] + framing.encode_frame(p)

    def write() -> None:
        # The sending side writes in odd-sized pieces, as a UART driver would.
        for i in range(0, len(stream), 97):
            os.write(master, stream[i : i + 97])
            time.sleep(0.001)

    writer = threading.Thread(target=write)
    writer.start()
    deframer = framing.Deframer(1024)
    received: list[bytes] = []
    deadline = time.monotonic() + 60  # a bound for a loaded machine: only a hang reaches it
    try:
        while len(received) < len(items) and time.monotonic() < deadline:
            received += deframer.feed(port.read(256))
    finally:
        writer.join(10)
        port.close()
        os.close(master)
        os.close(slave)
    assert received == items
    counters = deframer.counters()
    assert counters["frames"] == len(items)
    assert counters["bytes_in"] == len(stream)
    assert counters["malformed"] + counters["bad_crc"] + counters["too_short"] >= 1
