"""Downlink kind OFFERS (5): the wire format from the CDDL in ``bankiot_core.downlink``,
checked against cbor2 (an independent CBOR library, canonical = RFC 8949 4.2.1), the refusals,
the engine's hand-off to the kiosk's shell, and the same bytes under real MicroPython.
"""

from __future__ import annotations

import json
from typing import Any, cast

import cbor2
import pytest

from bankiot_core import batch, downlink
from bankiot_core.errors import ConfigError, DecodeError, ReplayError
from bankiot_core.gateway import Gateway
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers
from hw.micropython_runner import MicroPythonRunner

WEARABLE = bytes.fromhex("A4C138000001")
EXPIRES = 1_700_000_000  # 0x6553F100
SECRET = bytes(range(32))
GATEWAY = "kiosk-7"
TOPIC = "devices/kiosk-7/down"


def canonical(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def test_the_smallest_offers_message_byte_by_byte() -> None:
    # [5, h'A4C138000001', 1700000000, [[1, "A", ""]]], by hand from the CDDL:
    # 84 array(4), 05, 46 bytes(6) ..., 1a uint32, 81 array(1), 83 array(3), 01, 61 "A", 60 ""
    expected = bytes.fromhex("840546a4c1380000011a6553f10081830161416" + "0")
    assert downlink.encode_offers(WEARABLE, EXPIRES, [(1, "A", "")]) == expected
    assert canonical([5, WEARABLE, EXPIRES, [[1, "A", ""]]]) == expected


def test_offers_sort_by_id_and_decode_to_the_same_values() -> None:
    items = [(17, "Savings bonus", "2 % more for a year"), (3, "Travel card", "No fees abroad")]
    data = downlink.encode_offers(WEARABLE, EXPIRES, items)
    assert data == canonical([5, WEARABLE, EXPIRES, [list(items[1]), list(items[0])]])
    decoded = downlink.decode_message(data)
    assert decoded == downlink.Offers(
        WEARABLE,
        EXPIRES,
        (
            downlink.OfferItem(3, "Travel card", "No fees abroad"),
            downlink.OfferItem(17, "Savings bonus", "2 % more for a year"),
        ),
    )
    assert downlink.KIND_NAMES[downlink.KIND_OFFERS] == "offers" and downlink.KIND_OFFERS == 5


def test_an_empty_list_is_an_answer_and_the_largest_message_fits() -> None:
    empty = downlink.decode_message(downlink.encode_offers(WEARABLE, 0, []))
    assert isinstance(empty, downlink.Offers) and empty.items == ()
    full = [(i, "t" * 40, "\u00e9" * 80) for i in range(downlink.MAX_OFFERS)]  # 160 bytes each
    data = downlink.encode_offers(WEARABLE, downlink.MAX_SEQ, full)
    assert len(data) <= downlink.MAX_MESSAGE_BYTES
    decoded = downlink.decode_message(data)
    assert isinstance(decoded, downlink.Offers) and len(decoded.items) == downlink.MAX_OFFERS


MALFORMED = {
    "ids not ascending": canonical([5, WEARABLE, 1, [[2, "a", ""], [1, "b", ""]]]),
    "an id twice": canonical([5, WEARABLE, 1, [[2, "a", ""], [2, "b", ""]]]),
    "nine offers": canonical([5, WEARABLE, 1, [[i, "a", ""] for i in range(9)]]),
    "an empty title": canonical([5, WEARABLE, 1, [[1, "", ""]]]),
    "a title of 41 bytes": canonical([5, WEARABLE, 1, [[1, "t" * 41, ""]]]),
    "a text of 161 bytes": canonical([5, WEARABLE, 1, [[1, "t", "x" * 161]]]),
    "a control character": canonical([5, WEARABLE, 1, [[1, "t", "a\nb"]]]),
    "a wearable of 5 bytes": canonical([5, WEARABLE[:5], 1, []]),
    "a negative expiry": canonical([5, WEARABLE, -1, []]),
    "an expiry as text": canonical([5, WEARABLE, "1", []]),
    "an offer of two items": canonical([5, WEARABLE, 1, [[1, "t"]]]),
    "a fifth item": canonical([5, WEARABLE, 1, [], None]),
    "a title as bytes": canonical([5, WEARABLE, 1, [[1, b"t", ""]]]),
    # the same values, not in the one deterministic encoding: 1 as a 4-byte uint
    "not deterministic": bytes.fromhex("840546a4c1380000011a0000000180"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_the_decoder_refuses_anything_else(name: str) -> None:
    with pytest.raises(DecodeError):
        downlink.decode_message(MALFORMED[name])


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([(1, "a", ""), (1, "b", "")], "ascend, each once"),
        ([(i, "a", "") for i in range(9)], "at most 8 offers"),
        ([(1, "t" * 41, "")], "title must be 1 to 40 bytes"),
        ([(1, "t", "\u20ac" * 54)], "text must be 0 to 160 bytes"),
        ([(1, "t", "tab\there")], "control character"),
        ([(-1, "t", "")], "offer id must be"),
        ([(1, "t")], r"\(id, title, text\)"),
    ],
)
def test_the_encoder_refuses_what_the_format_cannot_carry(items: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        downlink.encode_offers(WEARABLE, EXPIRES, items)


def test_the_encoder_refuses_a_bad_wearable_or_expiry() -> None:
    with pytest.raises(ConfigError, match="6 bytes"):
        downlink.encode_offers(WEARABLE[:5], EXPIRES, [])
    with pytest.raises(ConfigError, match="Unix seconds"):
        downlink.encode_offers(WEARABLE, True, [])


def _engine() -> Gateway:
    ring = KeyRing(GATEWAY, 1, SECRET)
    queue = Queue(MemoryStorage(), 1 << 16)
    return Gateway(ring, SequenceNumbers(MemoryCounterStore()), queue, "devices/kiosk-7/up", "1")


def test_the_engine_hands_offers_to_its_sink_and_keeps_nothing_of_them() -> None:
    engine = _engine()
    cloud = KeyRing(GATEWAY, 1, SECRET)
    message = downlink.encode_offers(WEARABLE, EXPIRES, [(3, "Travel card", "No fees")])
    received: list[downlink.Offers] = []
    cast(Any, engine).offers_sink = received.append  # the core has no annotations
    state_before = engine.state()
    sealed = downlink.seal_downlink(cloud, 1, message, TOPIC)
    assert engine.downlink(sealed, TOPIC, 10) == []  # no Action: nothing for the shell to run
    assert received == [downlink.decode_message(message)]
    assert engine.offers_received == 1
    after = engine.state()
    assert "Travel" not in repr(after) and WEARABLE not in repr(after).encode()
    assert {k: v for k, v in after.items() if k != "window"} == {
        k: v for k, v in state_before.items() if k != "window"
    }  # only the replay window moved
    # a replay is refused like any downlink, and hands nothing over
    with pytest.raises(ReplayError, match="already accepted"):
        engine.downlink(sealed, TOPIC, 20)
    assert len(received) == 1
    # without a sink (a gateway with no screen) they are counted and dropped
    engine.offers_sink = None
    engine.downlink(downlink.seal_downlink(cloud, 2, message, TOPIC), TOPIC, 30)
    assert (engine.offers_received, engine.offers_ignored) == (1, 1)


def test_a_kiosk_records_what_became_of_an_offer_in_its_batches() -> None:
    fields = batch.kiosk_fields(batch.KIOSK_OFFER_ACCEPTED, 9, WEARABLE, "17", [0])
    assert fields == [0, -5, 5, 9, WEARABLE, "17"]
    assert batch.kiosk_fields(6, 10, WEARABLE, "3", [1]) == [1, -5, 6, 10, WEARABLE, "3"]
    # [dt 0, -5, accepted 5, id 9, h'A4C138000001', "17"] from the CDDL, by hand:
    expected = bytes.fromhex("86002405094" + "6a4c138000001623137")
    assert canonical(fields) == expected


_MP_CODE = """
import json
from bankiot_core import downlink
from bankiot_core.errors import CoreError
W = bytes.fromhex("A4C138000001")
out = []
for exp, items in CASES:
    out.append(downlink.encode_offers(W, exp, [tuple(i) for i in items]).hex())
print(json.dumps(out))
got = []
for h in MALFORMED_HEX:
    try:
        downlink.decode_message(bytes.fromhex(h))
        got.append("accepted")
    except CoreError as exc:
        got.append(type(exc).__name__)
print(json.dumps(got))
decoded = downlink.decode_message(bytes.fromhex(out[1]))
print(json.dumps([decoded.wearable.hex(), decoded.expires, [list(i) for i in decoded.items]]))
"""

CASES = [
    [EXPIRES, [[1, "A", ""]]],
    [EXPIRES, [[17, "Savings bonus", "2 % more"], [3, "Caf\u00e9 card", "\u20ac 5 back"]]],
    [0, []],
]


@pytest.mark.micropython
def test_micropython_encodes_the_same_bytes_and_refuses_the_same_messages(
    micropython: MicroPythonRunner,
) -> None:
    names = sorted(MALFORMED)
    inputs = {"CASES": CASES, "MALFORMED_HEX": [MALFORMED[name].hex() for name in names]}
    code = "import json\n" + "".join(
        "%s = json.loads(%r)\n" % (key, json.dumps(value)) for key, value in inputs.items()
    )
    run = micropython.run(code + _MP_CODE).check()
    lines = run.stdout.splitlines()
    expected = [
        downlink.encode_offers(WEARABLE, exp, [tuple(i) for i in items]).hex()
        for exp, items in CASES
    ]
    assert json.loads(lines[0]) == expected
    assert json.loads(lines[1]) == ["DecodeError"] * len(names)
    assert json.loads(lines[2]) == [
        WEARABLE.hex(),
        EXPIRES,
        [[3, "Caf\u00e9 card", "\u20ac 5 back"], [17, "Savings bonus", "2 % more"]],
    ]
