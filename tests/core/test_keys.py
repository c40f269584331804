"""KEYS, the downlink kind that carries a gateway's wearable bindings: the wire format against
cbor2 and the CDDL in ``bankiot_core.downlink``, its limits, what is refused, pages, and the
engine applying a set (``keys_scenario.story``) on CPython and under real MicroPython."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from bankiot_core import downlink
from bankiot_core.errors import ConfigError, DecodeError
from hw.micropython_runner import MicroPythonRunner
from tests.core import keys_scenario as scenario

SCENARIO_SOURCE = Path(scenario.__file__).read_text()
A1 = bytes.fromhex("000000000001")
A2 = bytes.fromhex("000000000002")
K = bytes(range(16))
I = bytes(range(16, 32))  # noqa: E741 (an IRK)
MAX_SEQ = downlink.MAX_SEQ


def sealed_frame(objects: bytes, counter: int) -> str:
    """bthome.io's recipe with cryptography's AESCCM, not the core's."""
    ctr = counter.to_bytes(4, "little")
    nonce = scenario.WEARABLE + b"\xd2\xfc" + b"\x41" + ctr
    out = AESCCM(scenario.KEY, tag_length=4).encrypt(nonce, objects, None)
    return (b"\x41" + out[:-4] + ctr + out[-4:]).hex()


FRAMES = [sealed_frame(bytes.fromhex("02ca09"), 0x00112234 + i) for i in range(3)]

# Derived from the contracts (gateway and downlink module docstrings), step by step:
EXPECTED: list[Any] = [
    # Before any binding the wearable (and the phone on its private address) are strangers.
    ["stranger", [], 2],
    # Revision 1 applies at once; a health record with keys_revision 1 leaves at once.
    ["bind", [], ["health keys=1 applied=1 refused=0"]],
    # bthome.io's published frame (25.06 °C, 50.55 %) now decodes; the phone's private
    # address resolves with its IRK to its identity address.
    [
        "decoded",
        [
            "reading 5448e68f80a5 humidity 50.55",
            "reading 5448e68f80a5 temperature 25.06",
            "reading c00000000042 temperature 25.06",
        ],
    ],
    # A resend of revision 1, and revision 0 arriving late: ignored, nothing sent.
    ["resend", [], [], []],
    # state() holds neither the key nor the IRK; bindings_state() holds the set, ascending.
    ["state", False, True],
    # After a reboot from state() and bindings_state(): revision 1 still runs.
    ["rebooted", 1, ["health keys=1 applied=0 refused=0", "running None"]],
    ["after reboot", ["reading 5448e68f80a5 temperature 25.06"]],
    # The empty set (revision 2) removes both at once; the configured sensor stays.
    ["unbind", [], ["health keys=2 applied=1 refused=0"]],
    ["gone", ["reading a4c138000001 temperature 25.06"], 2],
    # 101 wearables: two pages; the set applies only when both are in.
    ["page 2 of 2", 2, [], 2],
    ["page 1 of 2", [], 3, 101],
    ["101 bound", ["health keys=3 applied=2 refused=0", "reading 5448e68f80a5 temperature 25.06"]],
]


def test_keys_story_on_cpython() -> None:
    assert json.loads(json.dumps(scenario.story(FRAMES))) == EXPECTED


@pytest.mark.micropython
def test_keys_story_under_micropython(micropython: MicroPythonRunner) -> None:
    run = micropython.run(
        "import json, keys_scenario\nprint(json.dumps(keys_scenario.story(%r)))\n" % FRAMES,
        fakes=("cryptolib",),
        files={"/lib/keys_scenario.py": SCENARIO_SOURCE},
    ).check()
    assert json.loads(run.stdout.splitlines()[-1]) == EXPECTED


# ---- the wire format ------------------------------------------------------------------------


def test_encode_keys_is_the_cddl_as_cbor2_writes_it() -> None:
    (message,) = downlink.encode_keys(
        7, [(A2, I, K), (A1, None, None), (bytearray(A2[:5] + b"\x00"), None, K)]
    )
    expected = [4, 7, 0, 1, [[A2[:5] + b"\x00", None, K], [A1, None, None], [A2, I, K]]]
    expected[4].sort(key=lambda item: item[0])
    assert message == cbor2.dumps(expected, canonical=True)
    assert downlink.decode_message(message) == downlink.Keys(
        7,
        0,
        1,
        tuple(downlink.Binding(a, irk, key) for a, irk, key in expected[4]),
    )
    assert downlink.encode_keys(0, []) == [cbor2.dumps([4, 0, 0, 1, []], canonical=True)]


def test_a_full_page_of_the_largest_bindings_fits_in_a_message() -> None:
    bindings = [(i.to_bytes(6, "big"), I, K) for i in range(1, downlink.KEYS_PER_PAGE + 1)]
    (message,) = downlink.encode_keys(MAX_SEQ, bindings)
    assert len(message) <= downlink.MAX_MESSAGE_BYTES
    # One more wearable makes a second page.
    bindings.append(((downlink.KEYS_PER_PAGE + 1).to_bytes(6, "big"), I, K))
    pages = downlink.encode_keys(MAX_SEQ, bindings)
    assert [len(cbor2.loads(p)[4]) for p in pages] == [downlink.KEYS_PER_PAGE, 1]
    assert [cbor2.loads(p)[2:4] for p in pages] == [[0, 2], [1, 2]]


def test_the_most_wearables_a_gateway_holds() -> None:
    assert downlink.MAX_BINDINGS == downlink.KEYS_PER_PAGE * downlink.MAX_KEYS_PAGES == 1536
    most = [(i.to_bytes(6, "big"), None, K) for i in range(downlink.MAX_BINDINGS)]
    pages = downlink.encode_keys(1, most)
    assert len(pages) == downlink.MAX_KEYS_PAGES
    collected = downlink.KeysPages()
    results = [collected.add(downlink.decode_message(p)) for p in reversed(pages)]
    assert results[:-1] == [None] * (len(pages) - 1)
    whole = results[-1]
    assert whole is not None and [b.address for b in whole] == [a for a, _, _ in most]
    with pytest.raises(ConfigError, match="at most 1536 wearables, not 1537"):
        downlink.encode_keys(1, [*most, ((1 << 40).to_bytes(6, "big"), None, K)])


@pytest.mark.parametrize(
    ("bindings", "message"),
    [
        ([(A1, None, K), (A1, I, None)], "ascend by address, each once"),
        ([(A1[:5], None, K)], "address is 6 bytes"),
        (["00:00:00:00:00:01"], r"binding is \(address, irk, key\)"),
        ([(A1, None, K[:15])], "bind key must be 16 bytes or null"),
        ([(A1, bytes(16), None)], "IRK is all zeros"),
        ([(A1, "ec0234a357c8ad05341010a60a397d9b", None)], "IRK must be 16 bytes"),
    ],
)
def test_encode_keys_refuses_what_the_format_cannot_hold(bindings: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        downlink.encode_keys(1, bindings)
    assert K.hex() not in caught.value.message and "ec0234" not in caught.value.message


def test_encode_keys_bad_revision() -> None:
    with pytest.raises(ConfigError, match="keys revision"):
        downlink.encode_keys(MAX_SEQ + 1, [])


MALFORMED = {
    "four items": [4, 1, 0, 1],
    "revision negative": [4, -1, 0, 1, []],
    "revision too big": [4, MAX_SEQ + 1, 0, 1, []],
    "no pages": [4, 1, 0, 0, []],
    "too many pages": [4, 1, 0, 17, [[A1, None, K]]],
    "page beyond pages": [4, 1, 1, 1, []],
    "bindings not a list": [4, 1, 0, 1, {}],
    "binding of two": [4, 1, 0, 1, [[A1, K]]],
    "address of 5": [4, 1, 0, 1, [[A1[:5], None, K]]],
    "address as text": [4, 1, 0, 1, [["00:00:00:00:00:01", None, K]]],
    "key of 17": [4, 1, 0, 1, [[A1, None, K + b"\x00"]]],
    "irk as text": [4, 1, 0, 1, [[A1, I.hex(), None]]],
    "zero irk": [4, 1, 0, 1, [[A1, bytes(16), None]]],
    "descending": [4, 1, 0, 1, [[A2, None, K], [A1, None, K]]],
    "repeated": [4, 1, 0, 1, [[A1, None, K], [A1, None, None]]],
    "short page first": [4, 1, 0, 2, [[A1, None, K]]],
    "empty page of two": [4, 1, 1, 2, []],
    "page of 97": [4, 1, 0, 1, [[i.to_bytes(6, "big"), None, None] for i in range(97)]],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_keys_are_refused(name: str) -> None:
    with pytest.raises(DecodeError):
        downlink.decode_message(cbor2.dumps(MALFORMED[name], canonical=True))


def test_keys_in_another_encoding_are_refused() -> None:
    data = cbor2.dumps([4, 1, 0, 1, [[A1, None, K]]], canonical=True)
    longer = data.replace(b"\x01\x00\x01", b"\x18\x01\x00\x01", 1)  # revision in two bytes
    assert cbor2.loads(longer) == cbor2.loads(data)
    with pytest.raises(DecodeError, match="deterministic"):
        downlink.decode_message(longer)


def test_pages_of_a_newer_revision_drop_an_older_partial_one() -> None:
    many = [(i.to_bytes(6, "big"), None, K) for i in range(200)]
    old = [downlink.decode_message(p) for p in downlink.encode_keys(5, many)]
    new = [downlink.decode_message(p) for p in downlink.encode_keys(6, many[:150])]
    pages = downlink.KeysPages()
    assert pages.add(old[0]) is None
    assert pages.add(new[1]) is None  # revision 6 starts: revision 5's page is dropped
    assert pages.add(old[1]) is None  # older than the one collecting: ignored
    assert pages.add(old[2]) is None
    whole = pages.add(new[0])
    assert whole is not None and len(whole) == 150


def test_pages_that_disagree_are_refused() -> None:
    many = [(i.to_bytes(6, "big"), None, K) for i in range(200)]
    three = [downlink.decode_message(p) for p in downlink.encode_keys(5, many)]
    two = [downlink.decode_message(p) for p in downlink.encode_keys(5, many[100:])]
    pages = downlink.KeysPages()
    pages.add(three[0])
    with pytest.raises(DecodeError, match="disagree on their count"):
        pages.add(two[0])
    # Two pages each ascending, the second starting below the end of the first: overlap.
    first = downlink.Keys(9, 0, 2, tuple(downlink.Binding(a, None, K) for a, _, _ in many[1:97]))
    second = downlink.Keys(9, 1, 2, (downlink.Binding(many[0][0], None, K),))
    pages.add(first)
    with pytest.raises(DecodeError, match="overlap"):
        pages.add(second)


def test_saved_bindings_that_do_not_fit_are_refused() -> None:
    for saved in ([1], [-1, []], [1, [[A1, None, K[:3]]]], "x"):
        with pytest.raises(ConfigError):
            scenario.make(bindings=saved)
