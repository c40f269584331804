"""bankiot_core.coap: codec, reliability, Block1, and real servers over UDP.

Known answers are RFC 7252 appendix A and RFC 7959 section 3.2 (the message flows), with
the bytes derived by hand from RFC 7252 section 3 and RFC 7959 section 2.2 (each derivation
is spelled out beside the vector) and confirmed by aiocoap's codec. Hypothesis compares
the codec with aiocoap's ``Message`` on random messages, round-trips it and fuzzes the
decoder. The scripted exchanges (``coap_scenarios.py``) run on CPython and under real
MicroPython against the same hand-derived transcripts.

Then the client goes on the wire, through a tiny blocking UDP driver written here: to an
aiocoap server (small body, 3 KB in Block1, a resource that asks for smaller blocks, a lossy
path that drops the first datagram) and to libcoap's ``coap-server-notls`` (a confirmable
PUT, a 3 KB Block1 upload read back with libcoap's ``coap-client-notls``, and the server
dropping its first answer so the client retransmits).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap import resource
from aiocoap.blockwise import Block1Spool, ContinueException
from aiocoap.numbers.codes import Code
from aiocoap.numbers.optionnumbers import OptionNumber
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bankiot_core import coap
from bankiot_core.errors import DecodeError, LocalError
from hw.micropython_runner import MicroPythonRunner
from tests.core import coap_scenarios as scenarios
from tests.support.environment import free_port, unavailable

SCENARIO_SOURCE = Path(scenarios.__file__).read_text()

TEMPERATURE = b"temperature".hex()
C223 = b"22.3 C".hex()
URI_TEMPERATURE = "bb" + TEMPERATURE  # option 11, delta 11, length 11


def fields(mtype: int, code: int, mid: int, token: str = "", options=(), payload: str = "") -> list:
    return [mtype, code, mid, token, [list(o) for o in options], payload]


# --- Golden datagrams: [name, hex, fields]. Fields are [type, code, mid, token hex,
# [[option number, value hex]], payload hex].

GOLDEN: list[list[Any]] = [
    # RFC 7252 Figure 16: Ver 1, T=CON, TKL 0 -> 0x40; GET 0.01; MID 0x7d34; Uri-Path
    # "temperature" (delta 11, length 11 -> 0xbb). 16 bytes, as the RFC says.
    ["fig16-request", "40017d34" + URI_TEMPERATURE, fields(0, 1, 0x7D34, "", [[11, TEMPERATURE]])],
    # ... and its piggybacked 2.05 (T=ACK -> 0x60, code 2.05 = 69 = 0x45), marker, payload.
    ["fig16-response", "60457d34ff" + C223, fields(2, 0x45, 0x7D34, "", [], C223)],
    # Figure 17: the same with token 0x20 (TKL 1): 17 and 12 bytes.
    [
        "fig17-request",
        "41017d3520" + URI_TEMPERATURE,
        fields(0, 1, 0x7D35, "20", [[11, TEMPERATURE]]),
    ],
    ["fig17-response", "61457d3520ff" + C223, fields(2, 0x45, 0x7D35, "20", [], C223)],
    # Figure 20: empty ACK, the separate CON 2.05 (0x41), the client's empty ACK.
    ["fig20-empty-ack", "60007d38", fields(2, 0, 0x7D38)],
    ["fig20-con-response", "4145ad7b53ff" + C223, fields(0, 0x45, 0xAD7B, "53", [], C223)],
    ["fig20-client-ack", "6000ad7b", fields(2, 0, 0xAD7B)],
    # Figure 21: the client rejects the unexpected CON response with RST (T=3 -> 0x70).
    ["fig21-reset", "7000ad7c", fields(3, 0, 0xAD7C)],
    # RFC 7959 3.2, the simple atomic blockwise PUT, first request: CON PUT (0.03), MID
    # 1234 = 0x04d2, token 0x17 (the figures leave tokens out); Uri-Path "options" (0xb7);
    # Block1 = option 27, delta 16 -> nibble 13 + byte 3 = d1 03, value NUM 0, M 1, SZX 3
    # (128) = 0x0b; then 128 bytes of payload.
    [
        "rfc7959-block0",
        "410304d217b7" + b"options".hex() + "d1030bff" + "ab" * 128,
        fields(0, 3, 1234, "17", [[11, b"options".hex()], [27, "0b"]], "ab" * 128),
    ],
    # ... answered 2.31 Continue (0x5f), echoing Block1 0/1/128: delta 27 -> d1 0e, 0x0b.
    ["rfc7959-continue", "615f04d217d10e0b", fields(2, 0x5F, 1234, "17", [[27, "0b"]])],
    # The same with negotiation: the server's Block1 0/1/32 = SZX 1 -> 0x09.
    ["rfc7959-continue-32", "615f04d217d10e09", fields(2, 0x5F, 1234, "17", [[27, "09"]])],
    # Extended forms (RFC 7252 3.1): Uri-Path "a" (b1 61); Block1 delta 16 (d1 03 0b);
    # Proxy-Uri 35: delta 8, length 20 -> nibble 13 + 7 (8d 07); option 300: delta 265 ->
    # nibble 13 + 252 (d0 fc), empty; option 2000: delta 1700 -> nibble 14 + 1431 (05 97),
    # length 300 -> nibble 14 + 31 (00 1f), so ee 05 97 00 1f; payload "hi".
    [
        "extended-forms",
        "40020001b161d1030b8d07" + "78" * 20 + "d0fc" + "ee0597001f" + "7a" * 300 + "ff6869",
        fields(
            0,
            2,
            1,
            "",
            [[11, "61"], [27, "0b"], [35, "78" * 20], [300, ""], [2000, "7a" * 300]],
            "6869",
        ),
    ],
    # Boundaries: NON (0x5_) with an 8-byte token (0x58), GET, MID 0xffff; option 13 (delta
    # 13 -> nibble 13 + 0) of 12 bytes (dc 00); option 282 (delta 269 -> nibble 14 + 0000)
    # of 13 bytes (length nibble 13 + 0): ed 00 00 00; option 282 again (delta 0) of 269
    # bytes (length nibble 14 + 0000): 0e 00 00.
    [
        "boundaries",
        "5801ffff0102030405060708dc00" + "61" * 12 + "ed000000" + "62" * 13 + "0e0000" + "63" * 269,
        fields(
            1,
            1,
            0xFFFF,
            "0102030405060708",
            [[13, "61" * 12], [282, "62" * 13], [282, "63" * 269]],
        ),
    ],
]

# Datagrams every CoAP decoder must refuse (RFC 7252 3, 3.1, 4.1).
REJECTS = [
    "40",  # shorter than the header
    "400100",
    "00010000",  # version 0
    "c0010000",  # version 3
    "4901000000000000000000000000",  # TKL 9 is reserved
    "42010000aa",  # token shorter than TKL
    "60001234ff00",  # an Empty message with bytes after the header
    "600012340a",
    "40010000ff",  # payload marker, no payload
    "40010000f0",  # delta 15 that is not the payload marker
    "400100000f",  # length 15
    "40010000d0",  # delta 13 without its extension byte
    "40010000e000",  # delta 14 with one extension byte
    "40010000b5616263",  # value runs past the end
    "40010000e0ffff",  # option number 65804
]


def test_golden_datagrams_both_ways() -> None:
    result = scenarios.codec(GOLDEN)
    for name, datagram, expected in GOLDEN:
        encoded, decoded = result[name]
        assert encoded == datagram, name
        assert decoded == expected, name


def aiocoap_message(fields_: list) -> aiocoap.Message:
    mtype, code, mid, token, options, payload = fields_
    msg = aiocoap.Message(code=Code(code), payload=bytes.fromhex(payload))
    # Header fields set as attributes: aiocoap manages them itself when it sends.
    msg.mtype = Type(mtype)
    msg.mid = mid
    msg.token = bytes.fromhex(token)
    for number, value in options:
        msg.opt.add_option(OptionNumber(number).create_option(decode=bytes.fromhex(value)))
    return msg


def aiocoap_fields(msg: aiocoap.Message) -> list:
    assert msg.mtype is not None and msg.code is not None
    return [
        int(msg.mtype),
        int(msg.code),
        msg.mid,
        msg.token.hex(),
        [[int(o.number), o.encode().hex()] for o in msg.opt.option_list()],
        msg.payload.hex(),
    ]


@pytest.mark.parametrize("name,datagram,expected", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_datagrams_agree_with_aiocoap(name: str, datagram: str, expected: list) -> None:
    # The hand derivations above, checked by an independent codec.
    assert aiocoap_message(expected).encode().hex() == datagram
    assert aiocoap_fields(aiocoap.Message.decode(bytes.fromhex(datagram))) == expected


def test_malformed_datagrams_raise_decode_error() -> None:
    assert None not in scenarios.rejects(REJECTS)
    for datagram in REJECTS:
        with pytest.raises(DecodeError):
            coap.decode_message(bytes.fromhex(datagram))


def test_encoder_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(LocalError):
        coap.encode_message(coap.CON, coap.POST, 1, token=bytes(9))
    with pytest.raises(LocalError):
        coap.encode_message(coap.CON, coap.POST, 0x10000)
    with pytest.raises(LocalError):
        coap.encode_message(coap.CON, coap.EMPTY, 1, payload=b"x")
    with pytest.raises(LocalError):
        coap.encode_message(coap.CON, coap.POST, 1, options=[(70000, b"")])


def test_options_sort_stably_and_blocks_round_trip() -> None:
    datagram = coap.encode_message(
        coap.CON,
        coap.POST,
        7,
        options=[(coap.CONTENT_FORMAT, b"\x3c"), (11, b"b"), (3, b"h"), (11, b"a"), (11, b"c")],
    )
    msg = coap.decode_message(datagram)
    assert msg.options == ((3, b"h"), (11, b"b"), (11, b"a"), (11, b"c"), (12, b"\x3c"))
    assert coap.option_values(msg.options, 11) == [b"b", b"a", b"c"]
    assert coap.option_value(msg.options, 12) == b"\x3c"
    assert coap.option_value(msg.options, 27) is None
    # RFC 7959 2.2: NUM 0 M 0 SZX 0 is the empty value; NUM 2**20 - 1 needs 3 bytes.
    assert coap.block_value(0, False, 0) == b""
    assert coap.block_value(0xFFFFF, True, 6) == bytes.fromhex("fffffe")
    assert coap.parse_block(bytes.fromhex("fffffe")) == (0xFFFFF, True, 6)
    with pytest.raises(DecodeError):
        coap.parse_block(b"\x07")  # SZX 7 is reserved
    with pytest.raises(DecodeError):
        coap.parse_block(b"\x00\x00\x00\x08")
    assert coap.code_text(coap.CONTINUE) == "2.31"
    assert coap.code_text(coap.REQUEST_ENTITY_TOO_LARGE) == "4.13"


# --- Scripted exchanges: [config, steps, expected records]


def response(token: str, code: str, payload: str = "", options=()) -> list:
    return [[], [["response", token, code, payload, [list(o) for o in options]]]]


NOTHING: list = [[], []]


def get(t: int, token: str) -> list:
    return ["request", t, coap.GET, "temperature", "", {"token": token}]


def con_get(mid: int, token: str) -> str:
    return "41%02x%04x%s%s" % (coap.GET, mid, token, URI_TEMPERATURE)


# RFC 7252 appendix A, Figures 16 to 21, from the client's side, one client whose Message
# IDs start at 0x7d34 as the figures' do.
RFC7252_FLOWS = [
    {"message_id": 0x7D34, "rand": 0},
    [
        # Figure 16: empty token, piggybacked response.
        (get(0, ""), ["sent", "40017d34" + URI_TEMPERATURE]),
        (["recv", 10, "60457d34ff" + C223], response("", "2.05", C223)),
        # Figure 17: token 0x20.
        (get(100, "20"), ["sent", con_get(0x7D35, "20")]),
        (["recv", 110, "61457d3520ff" + C223], response("20", "2.05", C223)),
        # Figure 18: the request is lost; after ACK_TIMEOUT (2 s: the random draw is 0) the
        # identical datagram goes again.
        (get(1000, "31"), ["sent", con_get(0x7D36, "31")]),
        (["timeout", 1000], 2000),
        (["tick", 2999], NOTHING),
        (["tick", 3000], [[con_get(0x7D36, "31")], []]),
        (["recv", 3010, "61457d3631ff" + C223], response("31", "2.05", C223)),
        # Figure 19: the ACK is lost: the same from here, and a late copy of it is ignored.
        (get(10000, "42"), ["sent", con_get(0x7D37, "42")]),
        (["tick", 12000], [[con_get(0x7D37, "42")], []]),
        (["recv", 12010, "61457d3742ff" + C223], response("42", "2.05", C223)),
        (["recv", 12020, "61457d3742ff" + C223], NOTHING),
        # Figure 20: empty ACK (no more retransmissions), then the separate CON response,
        # acknowledged with its own Message ID; its retransmission is acknowledged again
        # but reported once.
        (get(20000, "53"), ["sent", con_get(0x7D38, "53")]),
        (["recv", 20010, "60007d38"], NOTHING),
        (["tick", 40000], NOTHING),
        (["recv", 40010, "4145ad7b53ff" + C223], [["6000ad7b"], response("53", "2.05", C223)[1]]),
        (["recv", 40020, "4145ad7b53ff" + C223], [["6000ad7b"], []]),
        # Figure 21: the client crashes after sending; the ACK is silently ignored, the
        # unexpected CON response rejected with RST.
        (get(50000, "64"), ["sent", con_get(0x7D39, "64")]),
        (["restart"], None),
        (["recv", 50010, "60007d39"], NOTHING),
        (["recv", 50020, "4145ad7c64ff" + C223], [["7000ad7c"], []]),
        (
            ["counters"],
            {
                "datagrams_in": 2,
                "duplicates": 0,
                "give_ups": 0,
                "ignored": 1,
                "malformed": 0,
                "responses": 0,
                "resets_sent": 1,
                "retransmissions": 0,
            },
        ),
    ],
]

# POST /batches, Content-Format 60 (CBOR): option 11 "batches" (b7 ...), option 12 delta 1
# length 1 (11 3c).
BATCHES = "b7" + b"batches".hex() + "113c"


def post(t: int, token: str) -> list:
    return ["request", t, coap.POST, "batches", "a1", {"token": token, "content_format": 60}]


def con_post(mid: int, token: str) -> str:
    return "41%02x%04x%s%sffa1" % (coap.POST, mid, token, BATCHES)


# Reset, retransmissions to the end (RFC 7252 4.2: timeouts 2, 4, 8, 16, 32 s from the
# first transmission at 10 ms: resends at 2010, 6010, 14010 and 30010, give up at 62010),
# a separate response that never comes, pings and strangers.
GIVE_UPS = [
    {"message_id": 0x1000, "rand": 0},
    [
        (post(0, "01"), ["sent", con_post(0x1000, "01")]),
        (["recv", 5, "70001000"], [[], [["give_up", "01", "reset"]]]),
        (post(10, "02"), ["sent", con_post(0x1001, "02")]),
        (["timeout", 10], 2000),
        (["tick", 2009], NOTHING),
        (["tick", 2010], [[con_post(0x1001, "02")], []]),
        (["timeout", 2010], 4000),
        (["tick", 6009], NOTHING),
        (["tick", 6010], [[con_post(0x1001, "02")], []]),
        (["tick", 14010], [[con_post(0x1001, "02")], []]),
        (["tick", 30010], [[con_post(0x1001, "02")], []]),
        (["timeout", 30010], 32000),
        (["tick", 62009], NOTHING),
        (["tick", 62010], [[], [["give_up", "02", "no_ack"]]]),
        (["timeout", 62010], None),
        # Acknowledged but never answered: MAX_TRANSMIT_WAIT (93 s) after the empty ACK.
        (post(70000, "03"), ["sent", con_post(0x1002, "03")]),
        (["recv", 70005, "60001002"], NOTHING),
        (["timeout", 70005], 93000),
        (["tick", 163004], NOTHING),
        (["tick", 163005], [[], [["give_up", "03", "no_response"]]]),
        # A CoAP ping (empty CON) gets RST; a request to the client gets RST; a NON
        # response to nothing, an RST to nothing, and garbage are dropped.
        (["recv", 170000, "40007777"], [["70007777"], []]),
        (["recv", 170001, "42017778abcd"], [["70007778"], []]),
        (["recv", 170002, "5145777901ff00"], NOTHING),
        (["recv", 170003, "70007779"], NOTHING),
        (["recv", 170004, "40"], ["DecodeError"]),
        (
            ["counters"],
            {
                "datagrams_in": 7,
                "duplicates": 0,
                "give_ups": 3,
                "ignored": 2,
                "malformed": 1,
                "responses": 0,
                "resets_sent": 2,
                "retransmissions": 4,
            },
        ),
    ],
]

OPTIONS_PATH = "b7" + b"options".hex()


def block_put(mid: int, block: str, body: bytes, path: str = OPTIONS_PATH, token="17") -> str:
    """CON PUT with Uri-Path and Block1 (option 27 after 11: delta 16 = d1 03)."""
    return "41%02x%04x%s%sd103%sff%s" % (coap.PUT, mid, token, path, block, body.hex())


BODY_384 = bytes(range(256)) + bytes(range(128))
BODY_224 = bytes(range(224))

# RFC 7959 3.2, the simple atomic blockwise PUT: 384 bytes in three 128-byte blocks,
# 2.31 Continue between them, 2.04 Changed at the end. (The figures leave the token out:
# 0x17 here.)
RFC7959_PUT = [
    {"message_id": 1234, "block_size": 128},
    [
        (
            ["request", 0, coap.PUT, "options", BODY_384.hex(), {"token": "17"}],
            ["sent", block_put(1234, "0b", BODY_384[:128])],
        ),
        (["recv", 10, "615f04d217d10e0b"], [[block_put(1235, "1b", BODY_384[128:256])], []]),
        (["recv", 20, "615f04d317d10e1b"], [[block_put(1236, "23", BODY_384[256:])], []]),
        (["recv", 30, "614404d417d10e23"], response("17", "2.04", "", [[27, "23"]])),
    ],
]

# RFC 7959 3.2 with negotiation: the server answers block 0/1/128 with 0/1/32, so the
# client continues at block 4 (byte 128) in 32-byte blocks: 1:4/1/32, 1:5/1/32, 1:6/0/32.
# (The figure's last two ACKs show MIDs 1235 and 1236, an error in the figure: an ACK
# carries the Message ID of the CON it acknowledges, 1236 and 1237 here.)
RFC7959_NEGOTIATION = [
    {"message_id": 1234, "block_size": 128},
    [
        (
            ["request", 0, coap.PUT, "options", BODY_224.hex(), {"token": "17"}],
            ["sent", block_put(1234, "0b", BODY_224[:128])],
        ),
        (["recv", 10, "615f04d217d10e09"], [[block_put(1235, "49", BODY_224[128:160])], []]),
        (["recv", 20, "615f04d317d10e49"], [[block_put(1236, "59", BODY_224[160:192])], []]),
        (["recv", 30, "615f04d417d10e59"], [[block_put(1237, "61", BODY_224[192:])], []]),
        (["recv", 40, "614404d517d10e61"], response("17", "2.04", "", [[27, "61"]])),
    ],
]

BODY_300 = bytes(i * 7 & 0xFF for i in range(300))
PATH_B = "b162"  # Uri-Path "b"


def post_b(mid: int, body: bytes, block: str | None = None) -> str:
    head = "41%02x%04xaa%s" % (coap.POST, mid, PATH_B)
    if block is None:
        return head + "ff" + body.hex()
    return head + "d103" + block + "ff" + body.hex()


# RFC 7959 2.9.3: 4.13 Request Entity Too Large with Block1 0/0/64 (SZX 2 -> 0x02) to a
# 300-byte body sent whole: start again in 64-byte blocks (0x0a = 0/1/64, 0x1a, 0x2a,
# 0x3a, and 0x42 = 4/0/64 for the last 44 bytes).
TOO_LARGE = [
    {"message_id": 0x2000, "block_size": 1024},
    [
        (
            ["request", 0, coap.POST, "b", BODY_300.hex(), {"token": "aa"}],
            ["sent", post_b(0x2000, BODY_300)],
        ),
        (["recv", 1, "618d2000aad10e02"], [[post_b(0x2001, BODY_300[:64], "0a")], []]),
        (["recv", 2, "615f2001aad10e0a"], [[post_b(0x2002, BODY_300[64:128], "1a")], []]),
        (["recv", 3, "615f2002aad10e1a"], [[post_b(0x2003, BODY_300[128:192], "2a")], []]),
        (["recv", 4, "615f2003aad10e2a"], [[post_b(0x2004, BODY_300[192:256], "3a")], []]),
        (["recv", 5, "615f2004aad10e3a"], [[post_b(0x2005, BODY_300[256:], "42")], []]),
        (["recv", 6, "61442005aad10e42"], response("aa", "2.04", "", [[27, "42"]])),
    ],
]

BODY_40 = bytes(range(1, 41))

# Separate responses inside a Block1 transfer (16-byte blocks: 0x08 = 0/1/16, 0x18, 0x20):
# the separate 2.31 is acknowledged and moves on; its retransmission is acknowledged
# again; a stale separate response naming block 0 while block 1 is in flight is
# acknowledged and ignored.
SEPARATE_BLOCKS = [
    {"message_id": 0x3000, "block_size": 16},
    [
        (
            ["request", 0, coap.PUT, "p", BODY_40.hex(), {"token": "bb"}],
            ["sent", block_put(0x3000, "08", BODY_40[:16], "b170", "bb")],
        ),
        (["recv", 1, "60003000"], NOTHING),
        (
            ["recv", 2, "415f9000bbd10e08"],
            [["60009000", block_put(0x3001, "18", BODY_40[16:32], "b170", "bb")], []],
        ),
        (["recv", 3, "415f9000bbd10e08"], [["60009000"], []]),
        (["recv", 4, "415f9001bbd10e08"], [["60009001"], []]),
        (
            ["recv", 5, "615f3001bbd10e18"],
            [[block_put(0x3002, "20", BODY_40[32:], "b170", "bb")], []],
        ),
        (["recv", 6, "61443002bb"], response("bb", "2.04")),
        (
            ["counters"],
            {
                "datagrams_in": 6,
                "duplicates": 1,
                "give_ups": 0,
                "ignored": 1,
                "malformed": 0,
                "responses": 1,
                "resets_sent": 0,
                "retransmissions": 0,
            },
        ),
    ],
]

# --- Block2 (RFC 7959 2.4, 3.1, 3.3): responses fetched block by block.

STATUS = "b6" + b"status".hex()  # Uri-Path "status": delta 11, length 6
BODY_B2 = bytes(range(256)) + bytes(range(44))  # 300 bytes: blocks of 128, 128, 44


def get_status(mid: int, token: str, block2: str | None = None) -> str:
    """CON GET /status, with Block2 (option 23 after 11: delta 12, length 1 = c1) if asked."""
    head = "41%02x%04x%s%s" % (coap.GET, mid, token, STATUS)
    return head if block2 is None else head + "c1" + block2


def block2_ack(mid: int, token: str, code: int, block2: str, body: bytes, before="") -> str:
    """ACK with piggybacked response: ``before`` (options below 23, delta from 0), then
    Block2 (delta 23 from 0 -> d1 0a, or from 4 after an ETag -> d1 06), then the body."""
    delta = "d106" if before.startswith("4") else "d10a"
    return "61%02x%04x%s%s%s%sff%s" % (code, mid, token, before, delta, block2, body.hex())


# RFC 7959 Figure 2 (3.1), a simple blockwise GET: 2:0/1/128 (0x0b), the client asks
# 2:1/0/128 (0x13), gets 2:1/1/128 (0x1b), asks 2:2/0/128 (0x23), gets the last 44 bytes.
RFC7959_GET = [
    {"message_id": 1234},
    [
        (["request", 0, coap.GET, "status", "", {"token": "17"}], ["sent", get_status(1234, "17")]),
        (
            ["recv", 1, block2_ack(1234, "17", coap.CONTENT, "0b", BODY_B2[:128])],
            [[get_status(1235, "17", "13")], []],
        ),
        (
            ["recv", 2, block2_ack(1235, "17", coap.CONTENT, "1b", BODY_B2[128:256])],
            [[get_status(1236, "17", "23")], []],
        ),
        (
            ["recv", 3, block2_ack(1236, "17", coap.CONTENT, "23", BODY_B2[256:])],
            response("17", "2.05", BODY_B2.hex()),
        ),
    ],
]

# RFC 7959 Figure 4, late negotiation: block 0 comes in 128 bytes, the client (64-byte
# blocks) asks 2:2/0/64 (0x22: the byte offset 128 in 64-byte blocks), then 0x32, 0x42.
RFC7959_LATE = [
    {"message_id": 1234, "block_size": 64},
    [
        (["request", 0, coap.GET, "status", "", {"token": "17"}], ["sent", get_status(1234, "17")]),
        (
            ["recv", 1, block2_ack(1234, "17", coap.CONTENT, "0b", BODY_B2[:128])],
            [[get_status(1235, "17", "22")], []],
        ),
        (
            ["recv", 2, block2_ack(1235, "17", coap.CONTENT, "2a", BODY_B2[128:192])],
            [[get_status(1236, "17", "32")], []],
        ),
        (
            ["recv", 3, block2_ack(1236, "17", coap.CONTENT, "3a", BODY_B2[192:256])],
            [[get_status(1237, "17", "42")], []],
        ),
        (
            ["recv", 4, block2_ack(1237, "17", coap.CONTENT, "42", BODY_B2[256:])],
            response("17", "2.05", BODY_B2.hex()),
        ),
    ],
]


def post_options(mid: int, block1: str | None, body: bytes, block2: str | None = None) -> str:
    """CON POST /options with Block1 (delta 16 from 11: d1 03) or Block2 (c1), token 17."""
    head = "41%02x%04x17%s" % (coap.POST, mid, OPTIONS_PATH)
    if block2 is not None:
        return head + "c1" + block2
    assert block1 is not None
    return head + "d103" + block1 + "ff" + body.hex()


# RFC 7959 3.3 (Figure 8, atomic blockwise POST with blockwise response): 384 bytes up in
# Block1, the last block answered 2.04 with Block2 0/1/128 and Block1 2/0/128 (delta 4
# after 23: 41 23), then the response's blocks are asked for with Block2 alone, no payload.
RFC7959_POST_BOTH = [
    {"message_id": 1234, "block_size": 128},
    [
        (
            ["request", 0, coap.POST, "options", BODY_384.hex(), {"token": "17"}],
            ["sent", post_options(1234, "0b", BODY_384[:128])],
        ),
        (["recv", 1, "615f04d217d10e0b"], [[post_options(1235, "1b", BODY_384[128:256])], []]),
        (["recv", 2, "615f04d317d10e1b"], [[post_options(1236, "23", BODY_384[256:])], []]),
        (
            ["recv", 3, "614404d417d10a0b4123ff" + BODY_B2[:128].hex()],
            [[post_options(1237, None, b"", "13")], []],
        ),
        (
            ["recv", 4, block2_ack(1237, "17", coap.CHANGED, "1b", BODY_B2[128:256])],
            [[post_options(1238, None, b"", "23")], []],
        ),
        (
            ["recv", 5, block2_ack(1238, "17", coap.CHANGED, "23", BODY_B2[256:])],
            response("17", "2.04", BODY_B2.hex(), [[27, "23"]]),
        ),
    ],
]

# What ends a Block2 transfer early: the ETag changing between blocks (41 = option 4,
# length 1), a body over max_response_bytes (reached, or announced in Size2: option 28,
# delta 5 after 23, 2 bytes: 52 0400 = 1024), an error answer to a later block (4.08), a
# first block that is not block 0. A stale separate response naming block 0 while block 1
# is asked for is acknowledged and ignored.
BLOCK2_ENDS = [
    {"message_id": 0x4000, "max_response_bytes": 200},
    [
        (
            ["request", 0, coap.GET, "status", "", {"token": "a1"}],
            ["sent", get_status(0x4000, "a1")],
        ),
        (
            ["recv", 1, block2_ack(0x4000, "a1", coap.CONTENT, "0b", BODY_B2[:128], "41e1")],
            [[get_status(0x4001, "a1", "13")], []],
        ),
        (
            ["recv", 2, block2_ack(0x4001, "a1", coap.CONTENT, "1b", BODY_B2[128:256], "41e2")],
            [[], [["give_up", "a1", "block2"]]],
        ),
        (
            ["request", 3, coap.GET, "status", "", {"token": "a2"}],
            ["sent", get_status(0x4002, "a2")],
        ),
        (
            ["recv", 4, block2_ack(0x4002, "a2", coap.CONTENT, "0b", BODY_B2[:128])],
            [[get_status(0x4003, "a2", "13")], []],
        ),
        (
            ["recv", 5, "4145900aa2d10a0bff" + BODY_B2[:128].hex()],
            [["6000900a"], []],
        ),
        (
            ["recv", 6, block2_ack(0x4003, "a2", coap.CONTENT, "1b", BODY_B2[128:256])],
            [[], [["give_up", "a2", "too_large"]]],
        ),
        (
            ["request", 7, coap.GET, "status", "", {"token": "a3"}],
            ["sent", get_status(0x4004, "a3")],
        ),
        (
            ["recv", 8, "61454004a3d10a0b520400ff" + BODY_B2[:128].hex()],
            [[], [["give_up", "a3", "too_large"]]],
        ),
        (
            ["request", 9, coap.GET, "status", "", {"token": "a4"}],
            ["sent", get_status(0x4005, "a4")],
        ),
        (
            ["recv", 10, block2_ack(0x4005, "a4", coap.CONTENT, "0b", BODY_B2[:128])],
            [[get_status(0x4006, "a4", "13")], []],
        ),
        (["recv", 11, "61884006a4ff" + b"gone".hex()], response("a4", "4.08", b"gone".hex())),
        (
            ["request", 12, coap.GET, "status", "", {"token": "a5"}],
            ["sent", get_status(0x4007, "a5")],
        ),
        (
            ["recv", 13, block2_ack(0x4007, "a5", coap.CONTENT, "1b", BODY_B2[128:256])],
            [[], [["give_up", "a5", "block2"]]],
        ),
        (
            ["counters"],
            {
                "datagrams_in": 9,
                "duplicates": 0,
                "give_ups": 4,
                "ignored": 1,
                "malformed": 0,
                "responses": 1,
                "resets_sent": 0,
                "retransmissions": 0,
            },
        ),
    ],
]

SCRIPTS = {
    "rfc7252-appendix-a": RFC7252_FLOWS,
    "give-ups": GIVE_UPS,
    "rfc7959-put": RFC7959_PUT,
    "rfc7959-negotiation": RFC7959_NEGOTIATION,
    "4.13": TOO_LARGE,
    "separate-blocks": SEPARATE_BLOCKS,
    "rfc7959-get": RFC7959_GET,
    "rfc7959-late-negotiation": RFC7959_LATE,
    "rfc7959-post-block1-block2": RFC7959_POST_BOTH,
    "block2-ends": BLOCK2_ENDS,
}


def script_json(script: list) -> tuple[dict, list, list]:
    config, pairs = script
    steps = [step for step, _ in pairs]
    expected = json.loads(json.dumps([record for _, record in pairs]))
    return config, steps, expected


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_scripted_exchange(name: str) -> None:
    config, steps, expected = script_json(SCRIPTS[name])
    assert scenarios.run_script(config, steps) == expected


@pytest.mark.micropython
def test_known_answers_under_micropython(micropython: MicroPythonRunner) -> None:
    scripts = {name: script_json(script)[:2] for name, script in SCRIPTS.items()}
    code = (
        "import json, coap_scenarios as s\n"
        "GOLDEN = json.loads(%r)\n"
        "REJECTS = json.loads(%r)\n"
        "SCRIPTS = json.loads(%r)\n"
        "out = {'codec': s.codec(GOLDEN), 'rejects': s.rejects(REJECTS), 'scripts': {}}\n"
        "for name in SCRIPTS:\n"
        "    out['scripts'][name] = s.run_script(SCRIPTS[name][0], SCRIPTS[name][1])\n"
        "print(json.dumps(out))\n"
    ) % (json.dumps(GOLDEN), json.dumps(REJECTS), json.dumps(scripts))
    run = micropython.run(code, files={"/lib/coap_scenarios.py": SCENARIO_SOURCE}).check()
    out = json.loads(run.stdout)
    for name, datagram, expected in GOLDEN:
        assert out["codec"][name] == [datagram, expected], name
    assert None not in out["rejects"]
    for name, script in SCRIPTS.items():
        assert out["scripts"][name] == script_json(script)[2], name


# --- Retransmission schedule with any random draw


@given(st.integers(0, 0xFFFF))
def test_retransmission_schedule_follows_rfc7252(draw: int) -> None:
    # RFC 7252 4.2 and 4.8: initial timeout in [ACK_TIMEOUT, ACK_TIMEOUT * 1.5), doubled
    # for each of MAX_RETRANSMIT (4) retransmissions; give up when the last one expires.
    client = coap.CoapClient(lambda bits: draw & ((1 << bits) - 1), message_id=5)
    first = client.request(coap.POST, "x", b"payload", 1000)
    initial = client.next_timeout_ms(1000)
    assert initial is not None
    assert 2000 <= initial < 3000
    assert initial == 2000 + 1000 * draw // 65536
    at = 1000
    timeout = initial
    for _ in range(4):
        at += timeout
        assert client.tick(at - 1) == ([], [])
        assert client.tick(at) == ([first], [])
        timeout *= 2
    at += timeout
    assert client.tick(at - 1) == ([], [])
    assert client.tick(at).events == [coap.GiveUp(client.last_token, "no_ack")]
    assert at - 1000 == 31 * initial  # (2 ** (MAX_RETRANSMIT + 1) - 1) * initial
    assert client.counters()["retransmissions"] == 4


def test_client_counts_tokens_and_message_ids() -> None:
    client = coap.CoapClient(lambda bits: 0xFFFFFFFF & ((1 << bits) - 1), token_length=2)
    first = coap.decode_message(client.request(coap.POST, "x", b"", 0))
    # The counter starts at the random draw (0xffff) and the first token is the next one;
    # Message IDs start at the draw too.
    assert first.mid == 0xFFFF
    assert first.token == b"\x00\x00"
    client.cancel(first.token)
    second = coap.decode_message(client.request(coap.POST, "x", b"", 0))
    assert second.mid == 0x0000
    assert second.token == b"\x00\x01"
    with pytest.raises(LocalError):
        client.request(coap.POST, "x", b"", 0)  # NSTART 1: one request in flight
    with pytest.raises(LocalError):
        coap.CoapClient(random.getrandbits, block_size=100)


# --- Hypothesis: codec round trips, aiocoap differential, decoder fuzz

_REGISTERED = {int(n) for n in OptionNumber if isinstance(n, OptionNumber)}
_opaque_numbers = st.integers(0, 65535).filter(lambda n: n not in _REGISTERED)
_options = st.lists(
    st.one_of(
        st.tuples(_opaque_numbers, st.binary(max_size=300)),
        st.tuples(st.just(coap.URI_PATH), st.text(max_size=40).map(str.encode)),
        st.tuples(st.just(coap.URI_HOST), st.text(min_size=1, max_size=40).map(str.encode)),
        st.tuples(st.just(coap.CONTENT_FORMAT), st.integers(0, 65535).map(coap.uint_bytes)),
        st.tuples(
            st.just(coap.BLOCK1),
            st.builds(coap.block_value, st.integers(0, 0xFFFFF), st.booleans(), st.integers(0, 6)),
        ),
        st.tuples(st.sampled_from([coap.ETAG, coap.IF_MATCH]), st.binary(max_size=8)),
    ),
    max_size=8,
)
_messages = st.one_of(
    st.tuples(
        st.integers(0, 3),
        st.integers(1, 255),
        st.integers(0, 0xFFFF),
        st.binary(max_size=8),
        _options,
        st.binary(max_size=600),
    ),
    st.tuples(
        st.integers(0, 3),
        st.just(0),
        st.integers(0, 0xFFFF),
        st.just(b""),
        st.just([]),
        st.just(b""),
    ),
)


def stable_sorted(options: list) -> list:
    return sorted(options, key=lambda o: o[0])  # Python's sort is stable


@settings(max_examples=200, deadline=None)
@given(_messages)
def test_codec_round_trips_and_agrees_with_aiocoap(message: tuple) -> None:
    mtype, code, mid, token, options, payload = message
    datagram = coap.encode_message(mtype, code, mid, token, options, payload)
    ours = coap.decode_message(datagram)
    expected_options = stable_sorted(options)
    assert ours == (mtype, code, mid, token, tuple(expected_options), payload)
    assert coap.encode_message(*ours) == datagram
    # aiocoap reads our bytes the same way ...
    theirs = aiocoap.Message.decode(datagram)
    assert aiocoap_fields(theirs) == [
        mtype,
        code,
        mid,
        token.hex(),
        [[n, v.hex()] for n, v in expected_options],
        payload.hex(),
    ]
    # ... and writes the same message to the same bytes.
    fields_ = aiocoap_fields(theirs)
    assert aiocoap_message(fields_).encode() == datagram


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=80),
        st.binary(min_size=1, max_size=40).map(lambda b: b"\x40\x02\x00\x01" + b),
    )
)
def test_decoder_fuzz_decodes_canonically_or_raises_decode_error(data: bytes) -> None:
    try:
        msg = coap.decode_message(data)
    except DecodeError:
        return
    # The wire format has one encoding per message: what decodes re-encodes to itself.
    assert coap.encode_message(*msg) == data


def server_datagram(mtype: int, code: int, mid: int, token: bytes, block, payload: bytes) -> bytes:
    if code == coap.EMPTY:
        return coap.encode_message(mtype, code, mid)
    options = [] if block is None else [(coap.BLOCK1, block)]
    return coap.encode_message(mtype, code, mid, token, options, payload)


_server_datagrams = st.one_of(
    st.binary(max_size=40),
    st.builds(
        server_datagram,
        st.integers(0, 3),
        st.sampled_from([0, coap.CHANGED, coap.CONTINUE, coap.REQUEST_ENTITY_TOO_LARGE, 0x84]),
        st.integers(1, 12),
        st.sampled_from([b"", b"\x01", b"\x02"]),
        st.one_of(st.none(), st.binary(max_size=4)),
        st.binary(max_size=3),
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_server_datagrams, max_size=14))
def test_client_survives_any_datagrams(datagrams: list[bytes]) -> None:
    # A Block1 transfer in flight (100 bytes in 16-byte blocks, Message IDs from 1) meets
    # whatever a server, or an attacker, sends: only DecodeError escapes, whatever goes out
    # is valid CoAP, and the request ends at most once.
    client = coap.CoapClient(lambda bits: 0, message_id=1, block_size=16)
    client.request(coap.PUT, "p", bytes(100), 0, token=b"\x01")
    endings = 0
    for i, data in enumerate(datagrams):
        try:
            out = client.receive_datagram(data, i)
        except DecodeError:
            continue
        for d in out.datagrams:
            coap.decode_message(d)
        endings += len(out.events)
        assert all(e.token == b"\x01" for e in out.events)
    assert endings <= 1
    assert client.in_flight() == 1 - endings
    assert client.counters()["datagrams_in"] == len(datagrams)


def test_nstart_two_matches_answers_by_message_id_and_token() -> None:
    client = coap.CoapClient(lambda bits: 0, message_id=0x100, nstart=2)
    client.request(coap.POST, "a", b"1", 0, token=b"\xaa")
    client.request(coap.POST, "b", b"2", 0, token=b"\xbb")
    second = client.receive_datagram(bytes.fromhex("61440101") + b"\xbb", 5)
    assert second.events == [coap.Response(b"\xbb", coap.CHANGED, b"", ())]
    # Neither an ACK for the finished request nor one with the first request's Message
    # ID but the other token answers the first request.
    assert client.receive_datagram(bytes.fromhex("61440101") + b"\xaa", 6) == ([], [])
    assert client.receive_datagram(bytes.fromhex("61440100") + b"\xbb", 7) == ([], [])
    first = client.receive_datagram(bytes.fromhex("61440100") + b"\xaa", 8)
    assert first.events == [coap.Response(b"\xaa", coap.CHANGED, b"", ())]
    assert client.in_flight() == 0
    assert client.counters()["ignored"] == 2


# --- On the wire: a tiny blocking UDP driver


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def exchange(
    client: coap.CoapClient,
    sock: socket.socket,
    address: tuple[str, int],
    method: int,
    path: str,
    payload: bytes = b"",
    limit_s: float = 20.0,
    **kwargs: Any,
) -> coap.Response | coap.GiveUp:
    """Send one request and drive the client until it has an answer."""
    sock.sendto(client.request(method, path, payload, now_ms(), **kwargs), address)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        wait = client.next_timeout_ms(now_ms())
        assert wait is not None
        sock.settimeout(max(wait, 1) / 1000)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            out = client.tick(now_ms())
        else:
            out = client.receive_datagram(data, now_ms())
        for datagram in out.datagrams:
            sock.sendto(datagram, address)
        if out.events:
            assert len(out.events) == 1
            return out.events[0]
    raise AssertionError("no answer within %s s" % limit_s)


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


class Recorder(resource.Resource):
    """Records every request body (aiocoap reassembles Block1) and answers 2.04."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[tuple[bytes, int | None]] = []

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.bodies.append((request.payload, request.opt.content_format))
        return aiocoap.Message(code=aiocoap.CHANGED, payload=b"stored %d" % len(request.payload))


class SmallBlocks(resource.Resource):
    """Reassembles with aiocoap's own Block1Spool, but asks for 64-byte blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.spool = Block1Spool()
        self.bodies: list[bytes] = []
        self.block_sizes: list[int] = []

    async def needs_blockwise_assembly(  # pyright: ignore[reportIncompatibleMethodOverride]
        self, request: aiocoap.Message
    ) -> bool:
        return False

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        block1 = request.opt.block1
        if block1 is not None:
            self.block_sizes.append(block1.size)
        try:
            whole = self.spool.feed_and_take(request)
        except ContinueException:
            assert block1 is not None
            response = aiocoap.Message(code=aiocoap.CONTINUE)
            response.opt.block1 = BlockOption.BlockwiseTuple(block1.start // 64, True, 2)
            return response
        self.bodies.append(whole.payload)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=b"ok")


class BigAnswer(resource.Resource):
    """Answers a POST with ``answer`` (aiocoap sends it in Block2 blocks when it does not
    fit in one) and an ETag; counts how often it rendered, so a request for a later block
    that ran the resource again would show."""

    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self.answer = answer
        self.bodies: list[bytes] = []

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.bodies.append(request.payload)
        return aiocoap.Message(
            code=aiocoap.CHANGED, payload=self.answer, content_format=60, etag=b"\x01\x02"
        )


BIG_ANSWER = bytes((i * 31 + 7) & 0xFF for i in range(5000))


class AiocoapServer:
    def __init__(self) -> None:
        self.port = free_port(kind=socket.SOCK_DGRAM)
        self.recorder = Recorder()
        self.small = SmallBlocks()
        self.big = BigAnswer(BIG_ANSWER)
        site = resource.Site()
        site.add_resource(["batches"], self.recorder)
        site.add_resource(["small"], self.small)
        site.add_resource(["big"], self.big)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.context = asyncio.run_coroutine_threadsafe(
            aiocoap.Context.create_server_context(site, bind=("127.0.0.1", self.port)),
            self.loop,
        ).result(10)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.context.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def aiocoap_server() -> Iterator[AiocoapServer]:
    server = AiocoapServer()
    yield server
    server.close()


def test_post_small_body_to_aiocoap(aiocoap_server: AiocoapServer, udp: socket.socket) -> None:
    client = coap.CoapClient(random.getrandbits, host="127.0.0.1")
    answer = exchange(
        client,
        udp,
        aiocoap_server.address,
        coap.POST,
        "batches",
        b"\xa1\x01\x02",
        content_format=coap.CBOR,
    )
    assert isinstance(answer, coap.Response)
    assert answer.code == coap.CHANGED
    assert answer.payload == b"stored 3"
    assert aiocoap_server.recorder.bodies[-1] == (b"\xa1\x01\x02", coap.CBOR)
    assert client.counters()["retransmissions"] == 0


@pytest.mark.parametrize("block_size", [64, 256])
def test_post_3k_body_in_block1_to_aiocoap(
    aiocoap_server: AiocoapServer, udp: socket.socket, block_size: int
) -> None:
    body = random.randbytes(3000)
    client = coap.CoapClient(random.getrandbits, block_size=block_size)
    answer = exchange(client, udp, aiocoap_server.address, coap.POST, "batches", body)
    assert isinstance(answer, coap.Response)
    assert (answer.code, answer.payload) == (coap.CHANGED, b"stored 3000")
    assert aiocoap_server.recorder.bodies[-1] == (body, None)


def test_aiocoap_resource_asking_for_smaller_blocks(
    aiocoap_server: AiocoapServer, udp: socket.socket
) -> None:
    body = random.randbytes(1000)
    client = coap.CoapClient(random.getrandbits, block_size=256)
    answer = exchange(client, udp, aiocoap_server.address, coap.POST, "small", body)
    assert isinstance(answer, coap.Response)
    assert answer.code == coap.CHANGED
    assert aiocoap_server.small.bodies[-1] == body
    # One 256-byte block, then the 744 bytes left in 64-byte blocks (the last one short).
    assert aiocoap_server.small.block_sizes == [256] + [64] * 12


class LossyPath:
    """A UDP relay between one client and a server that drops the client's first datagram."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.dropped: list[bytes] = []
        self.client: tuple[str, int] | None = None
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def _run(self) -> None:
        while self.running:
            try:
                data, sender = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if sender == self.server:
                if self.client is not None:
                    self.sock.sendto(data, self.client)
                continue
            self.client = sender
            if not self.dropped:
                self.dropped.append(data)
                continue
            self.sock.sendto(data, self.server)

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        self.sock.close()


def test_lost_request_is_retransmitted_to_aiocoap(
    aiocoap_server: AiocoapServer, udp: socket.socket
) -> None:
    path = LossyPath(aiocoap_server.address)
    try:
        client = coap.CoapClient(random.getrandbits, ack_timeout_ms=100)
        before = len(aiocoap_server.recorder.bodies)
        answer = exchange(client, udp, path.address, coap.POST, "batches", b"once")
    finally:
        path.close()
    assert isinstance(answer, coap.Response)
    assert answer.code == coap.CHANGED
    assert client.counters()["retransmissions"] >= 1
    assert coap.decode_message(path.dropped[0]).payload == b"once"
    assert aiocoap_server.recorder.bodies[before:] == [(b"once", None)]


@pytest.mark.parametrize(("request_size", "block_size"), [(10, 1024), (3000, 256)])
def test_a_big_answer_from_aiocoap_comes_whole_in_block2(
    aiocoap_server: AiocoapServer, udp: socket.socket, request_size: int, block_size: int
) -> None:
    # 5000 bytes: aiocoap cuts them into 1024-byte blocks; a client that wants 256-byte
    # blocks asks for them from block 1 on (late negotiation). A 3000-byte request goes up in
    # Block1 first (RFC 7959 3.3).
    body = random.randbytes(request_size)
    client = coap.CoapClient(random.getrandbits, block_size=block_size)
    before = len(aiocoap_server.big.bodies)
    answer = exchange(
        client, udp, aiocoap_server.address, coap.POST, "big", body, content_format=coap.CBOR
    )
    assert isinstance(answer, coap.Response)
    assert (answer.code, answer.payload) == (coap.CHANGED, BIG_ANSWER)
    assert coap.option_value(answer.options, coap.ETAG) == b"\x01\x02"
    assert coap.option_value(answer.options, coap.BLOCK2) is None
    assert aiocoap_server.big.bodies[before:] == [body]  # rendered once, for all blocks


def test_an_answer_over_the_limit_is_given_up(
    aiocoap_server: AiocoapServer, udp: socket.socket
) -> None:
    client = coap.CoapClient(random.getrandbits, max_response_bytes=4096)
    answer = exchange(client, udp, aiocoap_server.address, coap.POST, "big", b"x")
    assert isinstance(answer, coap.GiveUp) and answer.reason == "too_large"
    assert client.in_flight() == 0


def recorded_exchange(
    address: tuple[str, int], config: dict, method: int, path: str, payload: bytes, extra: dict
) -> tuple[list, list]:
    """One request to a live server by a client with constant randomness, as a script: the
    steps (with the server's real datagrams and the times they came) and what the client
    recorded for each on CPython, for replay under MicroPython."""
    client = scenarios._client(config)
    start = now_ms()
    steps: list = [["request", 0, method, path, payload.hex(), extra]]
    options = [(number, bytes.fromhex(value)) for number, value in extra.get("options", [])]
    first = client.request(
        method,
        path,
        payload,
        0,
        token=bytes.fromhex(extra["token"]),
        options=options,
        content_format=extra.get("content_format"),
    )
    records: list = [["sent", first.hex()]]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(first, address)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            wait = client.next_timeout_ms(now_ms() - start)
            sock.settimeout(max(wait or 1, 1) / 1000)
            try:
                data = sock.recv(4096)
                t = now_ms() - start
                steps.append(["recv", t, data.hex()])
                out = client.receive_datagram(data, t)
            except TimeoutError:
                t = now_ms() - start
                steps.append(["tick", t])
                out = client.tick(t)
            records.append(scenarios.output_json(out))
            for datagram in out.datagrams:
                sock.sendto(datagram, address)
            if out.events:
                return steps, json.loads(json.dumps(records))
    raise AssertionError("no answer within 20 s")


@pytest.mark.micropython
def test_micropython_client_takes_aiocoaps_block2_answer_as_cpython_does(
    aiocoap_server: AiocoapServer, micropython: MicroPythonRunner
) -> None:
    # A live exchange with aiocoap (Block1 up, Block2 down, Accept: 60), replayed datagram
    # for datagram into the client under real MicroPython: the same requests, the same answer.
    config = {"rand": 0x1234, "message_id": 0x5000, "block_size": 512}
    extra = {"token": "c0ffee", "content_format": 16, "options": [[17, "3c"]]}
    steps, records = recorded_exchange(
        aiocoap_server.address, config, coap.POST, "big", bytes(range(256)) * 3, extra
    )
    *_, (datagrams, events) = records
    assert datagrams == [] and events[0][:3] == ["response", "c0ffee", "2.04"]
    assert bytes.fromhex(events[0][3]) == BIG_ANSWER
    code = (
        "import json, coap_scenarios as s\n"
        "print(json.dumps(s.run_script(json.loads(%r), json.loads(%r))))\n"
    ) % (json.dumps(config), json.dumps(steps))
    run = micropython.run(code, files={"/lib/coap_scenarios.py": SCENARIO_SOURCE}).check()
    assert json.loads(run.stdout) == records


# --- libcoap's coap-server


class LibcoapServer:
    def __init__(self, *extra: str, ping: bool = True) -> None:
        binary = shutil.which("coap-server-notls")
        if binary is None:
            unavailable("coap-server-notls not found: install libcoap3-bin")
            raise AssertionError("unreachable")
        self.port = free_port(kind=socket.SOCK_DGRAM)
        self.process = subprocess.Popen(
            [binary, "-A", "127.0.0.1", "-p", str(self.port), "-v", "3", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready(ping)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _wait_ready(self, ping: bool) -> None:
        deadline = time.monotonic() + 60  # a process start on a loaded machine: generous
        while time.monotonic() < deadline:
            if ping:
                # A CoAP ping (an empty CON) is answered with RST once the server listens.
                if self._ping():
                    return
                continue
            # Silently: the port is taken once the server has bound it.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(self.address)
                except OSError:
                    return
            time.sleep(0.02)
        self.close()
        raise AssertionError("coap-server-notls did not start")

    def _ping(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.05)
            sock.sendto(coap.encode_message(coap.CON, coap.EMPTY, 0x1234), self.address)
            try:
                reply = coap.decode_message(sock.recv(64))
            except (TimeoutError, ConnectionRefusedError):
                time.sleep(0.02)
                return False
        return (reply.mtype, reply.mid) == (coap.RST, 0x1234)

    def get(self, path: str) -> bytes:
        """GET with libcoap's own client (which reads Block2 responses whole)."""
        out = subprocess.run(
            ["coap-client-notls", "-m", "get", "coap://127.0.0.1:%d/%s" % (self.port, path)],
            capture_output=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def libcoap_server() -> Iterator[LibcoapServer]:
    server = LibcoapServer()
    yield server
    server.close()


def test_confirmable_put_to_libcoap(libcoap_server: LibcoapServer, udp: socket.socket) -> None:
    client = coap.CoapClient(random.getrandbits)
    body = b"small batch"
    answer = exchange(client, udp, libcoap_server.address, coap.PUT, "example_data", body)
    assert isinstance(answer, coap.Response)
    assert answer.code in (coap.CREATED, coap.CHANGED)
    assert libcoap_server.get("example_data").rstrip(b"\n") == body
    # libcoap answers a method the resource lacks with 4.05, and the client reports it.
    refused = exchange(client, udp, libcoap_server.address, coap.POST, "example_data", b"x")
    assert isinstance(refused, coap.Response)
    assert refused.code == coap.METHOD_NOT_ALLOWED


def test_block1_upload_to_libcoap(libcoap_server: LibcoapServer, udp: socket.socket) -> None:
    body = bytes(random.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(3000))
    client = coap.CoapClient(random.getrandbits, block_size=256)
    answer = exchange(client, udp, libcoap_server.address, coap.PUT, "example_data", body)
    assert isinstance(answer, coap.Response)
    assert answer.code in (coap.CREATED, coap.CHANGED)
    assert libcoap_server.get("example_data").rstrip(b"\n") == body


def test_block2_download_from_libcoap(libcoap_server: LibcoapServer, udp: socket.socket) -> None:
    # libcoap's server keeps what was PUT and serves it back in Block2 blocks of its choosing.
    body = bytes(random.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(3000))
    client = coap.CoapClient(random.getrandbits, block_size=256)
    put = exchange(client, udp, libcoap_server.address, coap.PUT, "example_data", body)
    assert isinstance(put, coap.Response) and put.code in (coap.CREATED, coap.CHANGED)
    for block_size in (1024, 64):
        client = coap.CoapClient(random.getrandbits, block_size=block_size)
        got = exchange(client, udp, libcoap_server.address, coap.GET, "example_data")
        assert isinstance(got, coap.Response)
        assert (got.code, got.payload) == (coap.CONTENT, body)


def test_libcoap_losing_its_first_answer_makes_the_client_retransmit(udp: socket.socket) -> None:
    # libcoap's own fault injection drops the first datagram the server sends: the
    # piggybacked answer to the PUT (readiness is checked without a ping for this reason).
    server = LibcoapServer("-l", "1", ping=False)
    try:
        client = coap.CoapClient(random.getrandbits, ack_timeout_ms=100)
        answer = exchange(client, udp, server.address, coap.PUT, "example_data", b"again")
        assert isinstance(answer, coap.Response)
        assert answer.code in (coap.CREATED, coap.CHANGED)
        assert client.counters()["retransmissions"] >= 1
        assert server.get("example_data").rstrip(b"\n") == b"again"
    finally:
        server.close()
