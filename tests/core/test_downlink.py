"""bankiot_core.downlink: authenticated, replay-protected acknowledgements to a gateway.

Checked against code that is not ours:

- an independent sealer, opener and ACK interpreter written here with cbor2 and
  ``cryptography``'s HKDF and AESCCM, following the construction and the message format
  documented in the ``cose`` and ``downlink`` docstrings: byte-equal envelopes and ACKs;
- the uplink and downlink derivations of the same gateway, version and sequence number never
  give the same key or nonce;
- a gateway's life with genuine, forged, altered, replayed, late and misdirected acks
  (``downlink_scenario``), on CPython and under real MicroPython, with the acks sealed by
  one interpreter and opened by the other; and a Hypothesis property over random mixes;
- every bit of a sealed ack is covered: no flipped bit opens, releases or moves the window.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core import ccm, cose, downlink
from bankiot_core.errors import (
    AuthenticationError,
    ConfigError,
    DecodeError,
    RemoteError,
    ReplayError,
)
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.replay import ReplayWindow
from hw.micropython_runner import MicroPythonRunner
from tests.core import downlink_scenario as scenario

SCENARIO_SOURCE = Path(scenario.__file__).read_text()

SECRET = bytes.fromhex("8c2f0d9e4a61b7735e1c9a0fd24b68e1")
GATEWAY = b"gw-0042"
TOPIC = "devices/gw-0042/down"
MAX_SEQ = 2**40 - 1


def single(x: float) -> float:
    """``x`` rounded to the nearest IEEE 754 binary32, by the struct module."""
    return struct.unpack(">f", struct.pack(">f", x))[0]


SINGLE_0_2 = single(0.2)


@pytest.fixture(autouse=True)
def _fresh_caches():
    ccm.clear_cache()
    cose._derived.clear()
    yield


# ---- an independent implementation: cbor2 + cryptography, nothing from bankiot_core ------

# The HKDF "type" of each direction, as the cose docstring documents it.
TYPES = {"up": ("Key", "IV"), "down": ("Key down", "IV down")}


def ref_derive(secret: bytes, gateway: bytes, version: int, direction: str) -> tuple[bytes, bytes]:
    key_type, iv_type = TYPES[direction]

    def hkdf(kind: str, length: int) -> bytes:
        info = cbor2.dumps([gateway, version, 10, kind, length])
        return HKDF(hashes.SHA256(), length, salt=None, info=info).derive(secret)

    return hkdf(key_type, 16), hkdf(iv_type, 13)


def ref_nonce(common_iv: bytes, seq: int) -> bytes:
    return (int.from_bytes(common_iv, "big") ^ seq).to_bytes(13, "big")


def ref_enc_structure(protected: bytes, aad: bytes) -> bytes:
    return cbor2.dumps(["Encrypt0", protected, aad])


def ref_seal_down(
    secret: bytes, gateway: bytes, version: int, seq: int, message: Any, aad: bytes
) -> bytes:
    key, common_iv = ref_derive(secret, gateway, version, "down")
    protected = cbor2.dumps({1: 10})
    plaintext = cbor2.dumps(message, canonical=True)
    ciphertext = AESCCM(key, 8).encrypt(
        ref_nonce(common_iv, seq), plaintext, ref_enc_structure(protected, aad)
    )
    piv = seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")
    kid = gateway + version.to_bytes(2, "big")
    return cbor2.dumps(cbor2.CBORTag(16, [protected, {4: kid, 6: piv}, ciphertext]))


def ref_open_down(envelope: bytes, secret: bytes, aad: bytes) -> tuple[bytes, int, int, Any]:
    tagged = cbor2.loads(envelope)
    assert tagged.tag == 16
    protected, unprotected, ciphertext = tagged.value
    assert cbor2.loads(protected) == {1: 10}
    kid, piv = unprotected[4], unprotected[6]
    gateway, version, seq = kid[:-2], int.from_bytes(kid[-2:], "big"), int.from_bytes(piv, "big")
    key, common_iv = ref_derive(secret, gateway, version, "down")
    plaintext = AESCCM(key, 8).decrypt(
        ref_nonce(common_iv, seq), ciphertext, ref_enc_structure(protected, aad)
    )
    return gateway, version, seq, cbor2.loads(plaintext)


def ref_covers(message: Any, seq: int) -> bool:
    """Does ACK ``message`` (as cbor2 decodes it) acknowledge batch ``seq``?"""
    kind, through, selective = message
    assert kind == 1
    if through is not None and seq <= through:
        return True
    for item in selective:
        first, last = (item, item) if isinstance(item, int) else item
        if first <= seq <= last:
            return True
    return False


def ref_ack(through: int | None, seqs: list[int]) -> list[Any]:
    """The one canonical ACK for "everything up to ``through``, and ``seqs``", as the
    downlink docstring defines it, built by another route than the module's."""
    wanted = set(seqs)
    top = -1 if through is None else through
    while top + 1 in wanted:  # numbers that follow the cumulative part join it
        top += 1
    rest = sorted(s for s in wanted if s > top)
    runs: list[list[int]] = []
    for s in rest:
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    selective = [run[0] if len(run) == 1 else [run[0], run[-1]] for run in runs]
    return [1, None if top < 0 else top, selective]


def make_queue(seqs: list[int]) -> Queue:
    queue = Queue(MemoryStorage(), 1 << 30)
    for seq in seqs:
        queue.enqueue(seq, b"batch %d" % seq)
    return queue


# ---- the derivation: one key and IV per direction -----------------------------------------


def test_downlink_keys_follow_the_documented_derivation() -> None:
    up = cose.derive_key_and_iv(SECRET, GATEWAY, 3)
    down = cose.derive_key_and_iv(SECRET, GATEWAY, 3, cose.DOWNLINK)
    assert up == ref_derive(SECRET, GATEWAY, 3, "up")  # the default is the uplink, as before
    assert cose.derive_key_and_iv(SECRET, GATEWAY, 3, cose.UPLINK) == up
    assert down == ref_derive(SECRET, GATEWAY, 3, "down")
    # info = [gateway, version, 10, "Key down", 16] in CBOR, as the cose docstring spells it
    info = bytes.fromhex(
        "85" + "47" + GATEWAY.hex() + "03" + "0a" + "68" + b"Key down".hex() + "10"
    )
    assert HKDF(hashes.SHA256(), 16, salt=None, info=info).derive(SECRET) == down[0]


secrets = st.integers(16, 64).flatmap(lambda n: st.binary(min_size=n, max_size=n))
gateways = st.binary(min_size=1, max_size=64)
versions = st.integers(0, 0xFFFF)
seqs_40 = st.integers(0, MAX_SEQ)


@settings(max_examples=100, deadline=None)
@given(secret=secrets, gateway=gateways, version=versions, seq=seqs_40)
def test_uplink_and_downlink_never_share_a_key_or_nonce(
    secret: bytes, gateway: bytes, version: int, seq: int
) -> None:
    up_key, up_iv = ref_derive(secret, gateway, version, "up")
    down_key, down_iv = ref_derive(secret, gateway, version, "down")
    assert up_key != down_key
    assert up_iv != down_iv
    assert ref_nonce(up_iv, seq) != ref_nonce(down_iv, seq)
    assert (up_key, up_iv) == cose.derive_key_and_iv(secret, gateway, version)
    assert (down_key, down_iv) == cose.derive_key_and_iv(secret, gateway, version, cose.DOWNLINK)
    # The same bytes sealed both ways under the same number are different envelopes.
    up = cose.seal(secret, gateway, version, seq, b"\x83\x01\x00\x80", TOPIC)
    down = cose.seal(secret, gateway, version, seq, b"\x83\x01\x00\x80", TOPIC, cose.DOWNLINK)
    assert up[:-12] == down[:-12]  # same header: the kid and Partial IV
    assert up[-12:] != down[-12:]  # ciphertext and tag differ


def test_no_key_nonce_pair_is_shared_across_directions_for_a_whole_range() -> None:
    pairs = {"up": set(), "down": set()}
    for gateway in (GATEWAY, b"gw-0043"):
        for version in (1, 2):
            for direction in ("up", "down"):
                key, iv = ref_derive(SECRET, gateway, version, direction)
                pairs[direction] |= {(key, ref_nonce(iv, seq)) for seq in range(1000)}
    assert len(pairs["up"]) == len(pairs["down"]) == 4000
    assert not pairs["up"] & pairs["down"]
    assert not {k for k, _ in pairs["up"]} & {k for k, _ in pairs["down"]}


@pytest.mark.parametrize("direction", [2, -1, True, "down", None])
def test_a_bad_direction_is_a_config_error(direction: Any) -> None:
    with pytest.raises(ConfigError, match="direction must be UPLINK"):
        cose.seal(SECRET, GATEWAY, 1, 0, b"", TOPIC, direction)
    with pytest.raises(ConfigError, match="direction must be UPLINK"):
        cose.derive_key_and_iv(SECRET, GATEWAY, 1, direction)


def test_an_envelope_opens_only_in_the_direction_it_was_sealed() -> None:
    lookup = KeyRing(GATEWAY, 1, SECRET).lookup
    up = cose.seal(SECRET, GATEWAY, 1, 5, b"x", TOPIC)
    down = cose.seal(SECRET, GATEWAY, 1, 5, b"x", TOPIC, cose.DOWNLINK)
    assert cose.open_envelope(up, lookup, TOPIC).plaintext == b"x"
    assert cose.open_envelope(down, lookup, TOPIC, cose.DOWNLINK).plaintext == b"x"
    with pytest.raises(AuthenticationError, match="tag does not match"):
        cose.open_envelope(down, lookup, TOPIC)
    with pytest.raises(AuthenticationError, match="tag does not match"):
        cose.open_envelope(up, lookup, TOPIC, cose.DOWNLINK)


def test_forget_key_drops_both_directions() -> None:
    cose.derive_key_and_iv(SECRET, GATEWAY, 1)
    cose.derive_key_and_iv(SECRET, GATEWAY, 1, cose.DOWNLINK)
    cose.derive_key_and_iv(bytes(16), GATEWAY, 1, cose.DOWNLINK)
    cose.forget_key(SECRET)
    assert [k[0] for k in cose._derived] == [bytes(16)]


# ---- the ACK message ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("through", "seqs", "wire"),
    [
        # [1, 7, []]: cumulative only
        (7, [], "830107" + "80"),
        # [1, null, [3]]: one selective number, written bare
        (None, [3], "8301f6" + "8103"),
        # [1, 7, [9, 20]]: 4..7 join the cumulative part, 5 and 6 repeat it
        (3, [5, 6, 7, 9, 4, 20], "830107" + "820914"),
        # [1, null, [[5, 7], 9]]: a run is [first, last]
        (None, [9, 7, 6, 5, 7], "8301f6" + "82" + "820507" + "09"),
        # [1, 2, []]: numbers from 0 up are a cumulative part
        (None, [0, 1, 2], "830102" + "80"),
        # [1, 10, [12, [2**40-2, 2**40-1]]]: the widest numbers take nine bytes in CBOR
        (
            10,
            [12, MAX_SEQ - 1, MAX_SEQ],
            "83010a" + "82" + "0c" + "82" + "1b000000fffffffffe" + "1b000000ffffffffff",
        ),
    ],
)
def test_ack_encoding_known_answers(through: int | None, seqs: list[int], wire: str) -> None:
    data = downlink.encode_ack(through, seqs)
    assert data.hex() == wire
    assert data == cbor2.dumps(ref_ack(through, seqs), canonical=True)
    ack = downlink.decode_message(data)
    for seq in [*range(30), MAX_SEQ - 2, MAX_SEQ - 1, MAX_SEQ]:
        wanted = (through is not None and seq <= through) or seq in seqs
        assert downlink.covers(ack, seq) == wanted == ref_covers(cbor2.loads(data), seq)


small_seqs = st.one_of(st.integers(0, 300), st.integers(MAX_SEQ - 5, MAX_SEQ))


@settings(max_examples=300, deadline=None)
@given(
    through=st.one_of(st.none(), small_seqs),
    seqs=st.lists(small_seqs, max_size=150),
)
def test_encode_ack_matches_the_independent_canonical_form(
    through: int | None, seqs: list[int]
) -> None:
    expected = ref_ack(through, seqs)
    if expected[1] is None and not expected[2]:
        with pytest.raises(ConfigError, match="must acknowledge something"):
            downlink.encode_ack(through, seqs)
        return
    if len(expected[2]) > downlink.MAX_RANGES:
        with pytest.raises(ConfigError, match="at most 64 ranges"):
            downlink.encode_ack(through, seqs)
        return
    data = downlink.encode_ack(through, seqs)
    assert data == cbor2.dumps(expected, canonical=True)
    ack = downlink.decode_message(data)
    assert isinstance(ack, downlink.Ack) and ack.through == expected[1]
    for seq in {0, 1, MAX_SEQ, *seqs, *(s + 1 for s in seqs), through or 0}:
        if seq <= MAX_SEQ:
            assert downlink.covers(ack, seq) == ref_covers(expected, seq)


@pytest.mark.parametrize(
    ("through", "seqs", "message"),
    [
        (None, [], "must acknowledge something"),
        (-1, [], "through -1 is out of range"),
        (MAX_SEQ + 1, [], "out of range"),
        (True, [], "through must be an int"),
        (None, [1.0], "sequence number must be an int"),
        (None, [-3], "sequence number -3 is out of range"),
        (None, range(0, 200, 2), "at most 64 ranges, not 99"),  # 0 becomes through
    ],
)
def test_encode_ack_bad_arguments(through: Any, seqs: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        downlink.encode_ack(through, seqs)


MALFORMED = {
    "not CBOR": b"\xff",
    "trailing bytes": cbor2.dumps([1, 7, []]) + b"\x00",
    "not an array": cbor2.dumps({0: 1}),
    "empty array": cbor2.dumps([]),
    "kind as text": cbor2.dumps(["ack", 7, []]),
    "kind 0": cbor2.dumps([0, 7, []]),
    "unknown kind 9": cbor2.dumps([9, 7, []]),
    "unknown kind 6": cbor2.dumps([6, 1, {"deadband": 5}]),
    "kind -1": cbor2.dumps([-1, 7, []]),
    "two items": cbor2.dumps([1, 7]),
    "four items": cbor2.dumps([1, 7, [], 0]),
    "nothing acknowledged": cbor2.dumps([1, None, []]),
    "through negative": cbor2.dumps([1, -1, []]),
    "through true": cbor2.dumps([1, True, []]),
    "through beyond 2**40-1": cbor2.dumps([1, MAX_SEQ + 1, []]),
    "through as bytes": cbor2.dumps([1, b"\x07", []]),
    "selective not an array": cbor2.dumps([1, None, 5]),
    "range of three": cbor2.dumps([1, None, [[1, 2, 3]]]),
    "range descending": cbor2.dumps([1, None, [[5, 3]]]),
    "range of one as a pair": cbor2.dumps([1, None, [[5, 5]]]),
    "ranges unsorted": cbor2.dumps([1, None, [9, 5]]),
    "ranges overlapping": cbor2.dumps([1, None, [[3, 6], [5, 9]]]),
    "ranges touching": cbor2.dumps([1, None, [[3, 4], 5]]),
    "number repeated": cbor2.dumps([1, None, [5, 5]]),
    "selective below through": cbor2.dumps([1, 9, [4]]),
    "selective right after through": cbor2.dumps([1, 9, [10]]),
    "selective from 0": cbor2.dumps([1, None, [[0, 4]]]),
    "a float": cbor2.dumps([1, None, [5.0]]),
    "65 ranges": cbor2.dumps([1, None, list(range(2, 132, 2))]),
    "through in two bytes (not shortest)": bytes.fromhex("8301" + "1807" + "80"),
    "through as a bignum": bytes.fromhex("8301" + "c24107" + "80"),
    "range nested in a range": cbor2.dumps([1, None, [[[1, 2]]]]),
    "nested too deep": cbor2.dumps([1, None, [[[[1, 2]]]]]),
    "over 4 KiB": cbor2.dumps([1, None, list(range(2, 4000, 2))]),
    # CONFIG: [2, revision, {+ tstr => setting}]
    "config of two items": cbor2.dumps([2, 1]),
    "config of four items": cbor2.dumps([2, 1, {"a": 1}, 0]),
    "config revision negative": cbor2.dumps([2, -1, {"a": 1}]),
    "config revision true": cbor2.dumps([2, True, {"a": 1}]),
    "config revision beyond 2**40-1": cbor2.dumps([2, MAX_SEQ + 1, {"a": 1}]),
    "config revision float": cbor2.dumps([2, 1.0, {"a": 1}]),
    "config settings empty": cbor2.dumps([2, 1, {}]),
    "config settings an array": cbor2.dumps([2, 1, [["a", 1]]]),
    "config settings null": cbor2.dumps([2, 1, None]),
    "config key an int": cbor2.dumps([2, 1, {1: 2}]),
    "config key bytes": cbor2.dumps([2, 1, {b"a": 1}]),
    "config inner key an int": cbor2.dumps([2, 1, {"a": {1: 2}}]),
    "config map in a map in a map": cbor2.dumps([2, 1, {"a": {"b": {"c": 1}}}]),
    "config list in a list": cbor2.dumps([2, 1, {"a": [[1]]}]),
    "config map in a list": cbor2.dumps([2, 1, {"a": [{"b": 1}]}]),
    "config list in a list in a map": cbor2.dumps([2, 1, {"a": {"b": [[1]]}}]),
    "config tagged value": cbor2.dumps([2, 1, {"a": cbor2.CBORTag(1, 5)}]),
    "config bignum value": cbor2.dumps([2, 1, {"a": 2**64}]),
    "config undefined": cbor2.dumps([2, 1, {"a": cbor2.undefined}]),
    "config double-precision float": cbor2.dumps([2, 1, {"a": 0.2}], canonical=True),
    "config float beyond single range": cbor2.dumps([2, 1, {"a": 1e39}], canonical=True),
    # [2, 1, {"deadband": 5, "paired": []}]: keys not in bytewise order of their encodings
    "config keys out of order": bytes.fromhex("830201a2" + "68" + b"deadband".hex() + "05")
    + bytes.fromhex("66" + b"paired".hex() + "80"),
    "config key twice": bytes.fromhex("830201a2" + "6161" + "01" + "6161" + "02"),
    "config int not shortest": bytes.fromhex("830201a1" + "6161" + "1805"),
    "config 0.5 in double precision": bytes.fromhex("830201a1" + "6161" + "fb3fe0000000000000"),
    "config NaN with a payload": bytes.fromhex("830201a1" + "6161" + "f97e01"),
    "config over 4 KiB": cbor2.dumps([2, 1, {"a": "x" * 4088}]),
    # COMMAND: [3, id, name, {* tstr => setting}]
    "command of three items": cbor2.dumps([3, 1, "reboot"]),
    "command of five items": cbor2.dumps([3, 1, "reboot", {}, {}]),
    "command id negative": cbor2.dumps([3, -1, "reboot", {}]),
    "command id beyond 2**40-1": cbor2.dumps([3, MAX_SEQ + 1, "reboot", {}]),
    "command id text": cbor2.dumps([3, "1", "reboot", {}]),
    "command name empty": cbor2.dumps([3, 1, "", {}]),
    "command name upper case": cbor2.dumps([3, 1, "Reboot", {}]),
    "command name with a dash": cbor2.dumps([3, 1, "re-boot", {}]),
    "command name of 33": cbor2.dumps([3, 1, "a" * 33, {}]),
    "command name non-ASCII": cbor2.dumps([3, 1, "r\u00e9boot", {}]),
    "command name bytes": cbor2.dumps([3, 1, b"reboot", {}]),
    "command args null": cbor2.dumps([3, 1, "reboot", None]),
    "command args an array": cbor2.dumps([3, 1, "reboot", []]),
    "command args key an int": cbor2.dumps([3, 1, "reboot", {1: 1}]),
    "command args map in a map in a map": cbor2.dumps([3, 1, "x", {"a": {"b": {"c": 1}}}]),
    "command args nested too deep": cbor2.dumps([3, 1, "x", {"a": {"b": [[[1]]]}}]),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_are_refused_even_when_authentic(name: str) -> None:
    data = MALFORMED[name]
    with pytest.raises(DecodeError):
        downlink.decode_message(data)
    # Sealed by the cloud's key: authentic, yet refused; its number is used up all the same.
    ring = KeyRing(GATEWAY, 1, SECRET)
    window = ReplayWindow()
    queue = make_queue([1, 2, 3, 5, 9, 10])
    envelope = downlink.seal_downlink(ring, 40, data, TOPIC)
    with pytest.raises(DecodeError):
        downlink.open_downlink(envelope, ring, window, TOPIC)
    assert window.seen(40)
    assert queue.seqs() == [1, 2, 3, 5, 9, 10]
    with pytest.raises(ReplayError):
        downlink.open_downlink(envelope, ring, window, TOPIC)


def test_neighbours_of_the_malformed_messages_decode() -> None:
    # Each differs from a malformed case above in the one thing that case breaks.
    for good in (
        [2, MAX_SEQ, {"a": 1}],
        [2, 0, {"a": {"b": [1, "x", None, True, b"\x00", SINGLE_0_2]}, "c": {}}],
        [2, 1, {"a": 2**64 - 1, "b": -(2**64)}],
        [2, 1, {"a": float("nan"), "b": float("-inf"), "c": -0.0, "d": 3.4028234663852886e38}],
        [2, 1, {"a": "x" * 4087}],  # 4096 bytes exactly
        [3, MAX_SEQ, "a" * 32, {}],
        [3, 0, "set_led_2", {"a": {"b": [1]}}],
    ):
        data = cbor2.dumps(good, canonical=True)
        decoded = downlink.decode_message(data)
        assert cbor2.dumps([good[0], *decoded], canonical=True) == data
    assert len(cbor2.dumps([2, 1, {"a": "x" * 4087}])) == downlink.MAX_MESSAGE_BYTES


def test_unknown_kinds_say_so() -> None:
    with pytest.raises(DecodeError, match="unknown downlink kind 9"):
        downlink.decode_message(MALFORMED["unknown kind 9"])
    with pytest.raises(DecodeError, match="unknown downlink kind 6"):
        downlink.decode_message(MALFORMED["unknown kind 6"])


# ---- CONFIG and COMMAND ------------------------------------------------------------------


def ref_wire(value: Any) -> Any:
    """What the wire carries for a setting or argument value, by the docstring's rule:
    floats rounded to single precision (NaN stays NaN), everything else as it is."""
    if isinstance(value, float):
        return value if math.isnan(value) else single(value)
    if isinstance(value, list):
        return [ref_wire(item) for item in value]
    if isinstance(value, dict):
        return {key: ref_wire(item) for key, item in value.items()}
    return value


def ref_single_ok(x: float) -> bool:
    try:
        return math.isnan(x) or single(x) == x
    except OverflowError:
        return False


def ref_scalar_ok(x: Any) -> bool:
    if type(x) is int:
        return -(2**64) <= x < 2**64
    if type(x) is float:
        return ref_single_ok(x)
    return x is None or type(x) in (str, bytes, bool)


def ref_value_ok(x: Any) -> bool:
    return all(map(ref_scalar_ok, x)) if type(x) is list else ref_scalar_ok(x)


def ref_map_ok(m: Any, nested: bool) -> bool:
    return type(m) is dict and all(
        type(k) is str
        and (ref_value_ok(v) or (not nested and type(v) is dict and ref_map_ok(v, True)))
        for k, v in m.items()
    )


def ref_message_ok(obj: Any) -> bool:
    """Is ``obj`` (as cbor2 reads it) a config or command by the docstring's CDDL?"""
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        return False
    if obj[0] == 2 and len(obj) == 3:
        revision, settings = obj[1:]
        return (
            type(revision) is int
            and 0 <= revision <= MAX_SEQ
            and bool(settings)
            and (ref_map_ok(settings, False))
        )
    if obj[0] == 3 and len(obj) == 4:
        command_id, name, args = obj[1:]
        return (
            type(command_id) is int
            and 0 <= command_id <= MAX_SEQ
            and type(name) is str
            and re.fullmatch("[a-z0-9_]{1,32}", name, re.ASCII) is not None
            and ref_map_ok(args, False)
        )
    return False


def hx(data: bytes) -> str:
    """The vectors spell text strings' UTF-8 in hex through this, to stay readable."""
    return data.hex()


@pytest.mark.parametrize(
    ("encode", "wire"),
    [
        # [2, 1, {"presence": false}]
        (
            lambda: downlink.encode_config(1, {"presence": False}),
            "830201a1" + "68" + hx(b"presence") + "f4",
        ),
        # [2, 7, {"paired": ["AA:BB:CC:DD:EE:FF"], "deadband": {"temperature": 0.2}}]:
        # "paired" sorts first (its encoding is shorter); 0.2 as the nearest binary32
        (
            lambda: downlink.encode_config(
                7, {"deadband": {"temperature": 0.2}, "paired": ["AA:BB:CC:DD:EE:FF"]}
            ),
            "830207a2"
            + "66"
            + hx(b"paired")
            + "81"
            + "71"
            + hx(b"AA:BB:CC:DD:EE:FF")
            + "68"
            + hx(b"deadband")
            + "a1"
            + "6b"
            + hx(b"temperature")
            + "fa3e4ccccd",
        ),
        # [3, 5, "reboot", {}]
        (lambda: downlink.encode_command(5, "reboot", {}), "840305" + "66" + hx(b"reboot") + "a0"),
        # [3, 0, "x", {}]: no args is an empty map
        (lambda: downlink.encode_command(0, "x"), "8403006178a0"),
        # [3, 2**40-1, "set_led", {"on": true, "key": h'0102', "blink_ms": 250,
        #  "levels": [0.5, -1]}]: keys by their encodings, 0.5 as a half float
        (
            lambda: downlink.encode_command(
                MAX_SEQ,
                "set_led",
                {"on": True, "blink_ms": 250, "key": b"\x01\x02", "levels": (0.5, -1)},
            ),
            "84031b000000ffffffffff"
            + "67"
            + hx(b"set_led")
            + "a4"
            + "62"
            + hx(b"on")
            + "f5"
            + "63"
            + hx(b"key")
            + "420102"
            + "66"
            + hx(b"levels")
            + "82f9380020"
            + "68"
            + hx(b"blink_ms")
            + "18fa",
        ),
    ],
)
def test_config_and_command_known_answers(encode: Any, wire: str) -> None:
    message = encode()
    assert message.hex() == wire
    decoded = downlink.decode_message(message)
    as_cbor2 = cbor2.loads(message)
    assert ref_message_ok(as_cbor2)
    if as_cbor2[0] == 2:
        assert decoded == downlink.Config(as_cbor2[1], as_cbor2[2])
    else:
        assert decoded == downlink.Command(*as_cbor2[1:])


KEYS = st.text(max_size=8)
SCALAR_VALUES = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.floats(width=32),
    st.floats(min_value=-3e38, max_value=3e38),  # rounded to single on the way
    st.text(max_size=8),
    st.binary(max_size=8),
    st.booleans(),
    st.none(),
)
SETTING_VALUES = st.one_of(SCALAR_VALUES, st.lists(SCALAR_VALUES, max_size=4))
SETTINGS = st.dictionaries(
    KEYS, st.one_of(SETTING_VALUES, st.dictionaries(KEYS, SETTING_VALUES, max_size=3)), max_size=5
)
NAMES = st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    revision=st.integers(0, MAX_SEQ),
    config=SETTINGS,
    command_id=st.integers(0, MAX_SEQ),
    name=NAMES,
    args=SETTINGS,
)
def test_config_and_command_round_trip_as_cbor2_encodes_them(
    revision: int, config: dict[str, Any], command_id: int, name: str, args: dict[str, Any]
) -> None:
    if config:
        data = downlink.encode_config(revision, config)
        assert data == cbor2.dumps([2, revision, ref_wire(config)], canonical=True)
        decoded = downlink.decode_message(data)
        assert isinstance(decoded, downlink.Config) and decoded.revision == revision
        assert cbor2.dumps([2, revision, decoded.settings], canonical=True) == data
    data = downlink.encode_command(command_id, name, args)
    assert data == cbor2.dumps([3, command_id, name, ref_wire(args)], canonical=True)
    decoded = downlink.decode_message(data)
    assert isinstance(decoded, downlink.Command)
    assert (decoded.id, decoded.name) == (command_id, name)
    assert cbor2.dumps([3, command_id, name, decoded.args], canonical=True) == data


ANY_SCALAR = st.one_of(
    st.integers(-(2**65), 2**65),
    st.floats(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.booleans(),
    st.none(),
)
ANY_VALUE = st.recursive(
    ANY_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from([2, 3]),
    number=st.one_of(st.integers(-2, MAX_SEQ + 2), st.booleans(), st.floats(0, 3)),
    name=st.one_of(NAMES, st.text(max_size=34), st.just("a" * 33)),
    body=st.one_of(st.dictionaries(st.text(max_size=4), ANY_VALUE, max_size=4), ANY_VALUE),
    extra=st.integers(0, 2),
)
def test_decode_accepts_exactly_what_the_cddl_allows(
    kind: int, number: Any, name: str, body: Any, extra: int
) -> None:
    obj = [kind, number, body] if kind == 2 else [kind, number, name, body]
    obj += [0] * (extra == 2)  # now and then one item too many
    data = cbor2.dumps(obj, canonical=True)
    if ref_message_ok(cbor2.loads(data)) and len(data) <= downlink.MAX_MESSAGE_BYTES:
        decoded = downlink.decode_message(data)
        assert cbor2.dumps([kind, *decoded], canonical=True) == data
    else:
        with pytest.raises(DecodeError) as info:
            downlink.decode_message(data)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: downlink.encode_config(-1, {"a": 1}), "config revision -1 is out of range"),
        (lambda: downlink.encode_config(MAX_SEQ + 1, {"a": 1}), "out of range"),
        (lambda: downlink.encode_config(True, {"a": 1}), "config revision must be an int"),
        (lambda: downlink.encode_config(1, {}), "must not be empty"),
        (lambda: downlink.encode_config(1, [("a", 1)]), "settings must be a map, not list"),
        (lambda: downlink.encode_config(1, {1: 2}), "key 1 is not text"),
        (lambda: downlink.encode_config(1, {"a": {2: 2}}), "settings a: key 2 is not text"),
        (lambda: downlink.encode_config(1, {"a": {"b": {"c": 1}}}), "one level of map"),
        (lambda: downlink.encode_config(1, {"a": [[1]]}), "a list is not a scalar"),
        (lambda: downlink.encode_config(1, {"a": [{}]}), "a dict is not a scalar"),
        (lambda: downlink.encode_config(1, {"a": 2**64}), "beyond 64 bits"),
        (lambda: downlink.encode_config(1, {"a": -(2**64) - 1}), "beyond 64 bits"),
        (lambda: downlink.encode_config(1, {"a": 1e39}), "beyond single precision"),
        (lambda: downlink.encode_config(1, {"a": {1, 2}}), "a set is not a scalar"),
        (lambda: downlink.encode_config(1, {"a": "\ud800"}), "config: text cannot be encoded"),
        (lambda: downlink.encode_config(1, {"a": "x" * 4088}), "4097 bytes is over 4096"),
        (lambda: downlink.encode_command(1, "Reboot", {}), "command name 'Reboot' is not"),
        (lambda: downlink.encode_command(1, "", {}), "command name '' is not"),
        (lambda: downlink.encode_command(1, "a" * 33, {}), "is not 1 to 32"),
        (lambda: downlink.encode_command(1, b"reboot", {}), "command name must be text"),
        (lambda: downlink.encode_command(-1, "x", {}), "command id -1 is out of range"),
        (lambda: downlink.encode_command(1.0, "x", {}), "command id must be an int"),
        (lambda: downlink.encode_command(1, "x", [1]), "args must be a map, not list"),
        (lambda: downlink.encode_command(1, "x", {"a": {"b": {}}}), "one level of map"),
    ],
)
def test_encode_config_and_command_bad_arguments(call: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        call()
    assert "\n" not in str(info.value)


def test_an_independently_sealed_config_and_command_open_with_their_kind() -> None:
    ring = KeyRing(GATEWAY, 1, SECRET)
    window = ReplayWindow()
    config = [2, 9, {"paired": ["AA:BB:CC:DD:EE:FF"], "rate_per_min": 60}]
    command = [3, 41, "rotate_key", {"version": 2}]
    opened = downlink.open_downlink(
        ref_seal_down(SECRET, GATEWAY, 1, 0, config, TOPIC.encode()), ring, window, TOPIC
    )
    assert opened == (downlink.KIND_CONFIG, 0, 1, downlink.Config(9, config[2]))
    opened = downlink.open_downlink(
        ref_seal_down(SECRET, GATEWAY, 1, 1, command, TOPIC.encode()), ring, window, TOPIC
    )
    assert opened == (
        downlink.KIND_COMMAND,
        1,
        1,
        downlink.Command(41, "rotate_key", {"version": 2}),
    )
    # Ours, opened by the independent opener.
    ours = downlink.seal_downlink(ring, 2, downlink.encode_command(42, "reboot"), TOPIC)
    assert ref_open_down(ours, SECRET, TOPIC.encode()) == (GATEWAY, 1, 2, [3, 42, "reboot", {}])
    assert downlink.open_downlink(ours, ring, window, TOPIC).kind == downlink.KIND_COMMAND


# ---- running each command at most once ------------------------------------------------------


def test_command_log_runs_each_id_once_and_forgets_the_lowest() -> None:
    log = downlink.CommandLog(3)
    assert log.state() == [-1] and not log.seen(0)
    for command_id in (10, 12, 11):
        log.record(command_id)
    assert log.state() == [-1, 10, 11, 12]
    log.record(11)  # again: nothing changes
    assert log.state() == [-1, 10, 11, 12]
    log.record(13)  # full: 10 is forgotten, and everything up to it counts as run
    assert log.state() == [10, 11, 12, 13]
    assert [log.seen(i) for i in (0, 9, 10, 11, 13, 14)] == [True] * 5 + [False]
    again = downlink.CommandLog(3, log.state())  # after a reboot
    assert again.state() == [10, 11, 12, 13] and again.seen(12) and not again.seen(14)
    assert downlink.CommandLog(3, (5,)).state() == [5]


@pytest.mark.parametrize(
    ("size", "state", "message"),
    [
        (0, None, "size must be an int in 1..1024, not 0"),
        (1025, None, "1..1024"),
        (True, None, "1..1024"),
        (3, [], "must be a list"),
        (3, "[-1]", "must be a list"),
        (3, [-2], "is not [floor, ascending ids]"),
        (3, [-1, 5, 5], "is not [floor, ascending ids]"),
        (3, [-1, 6, 5], "is not [floor, ascending ids]"),
        (3, [7, 5], "is not [floor, ascending ids]"),
        (3, [-1, True], "is not [floor, ascending ids]"),
        (3, [-1, MAX_SEQ + 1], "is not [floor, ascending ids]"),
        (2, [-1, 1, 2, 3], "more than 2 ids"),
    ],
)
def test_command_log_bad_size_or_state(size: Any, state: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        downlink.CommandLog(size, state)


def test_command_log_records_only_command_ids() -> None:
    log = downlink.CommandLog()
    for bad in (-1, MAX_SEQ + 1, "1", None):
        with pytest.raises(ConfigError):
            log.record(bad)
    assert log.state() == [-1]


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 6), ids=st.lists(st.integers(0, 40), max_size=30))
def test_command_log_never_runs_an_id_twice(size: int, ids: list[int]) -> None:
    log = downlink.CommandLog(size)
    recorded: set[int] = set()
    for command_id in ids:
        if not log.seen(command_id):
            assert command_id not in recorded  # never a second run
            log.record(command_id)
            recorded.add(command_id)
        log = downlink.CommandLog(size, log.state())  # a reboot between any two
        # The model: the ``size`` highest recorded are remembered; below the highest of the
        # rest (forgotten), everything counts as run.
        ranked = sorted(recorded)
        floor = ranked[-size - 1] if len(ranked) > size else -1
        for probe in range(42):
            assert log.seen(probe) == (probe in recorded or probe <= floor)


# ---- sealing and opening against the independent implementation ---------------------------


@settings(max_examples=100, deadline=None)
@given(
    secret=secrets,
    gateway=gateways,
    version=versions,
    seq=seqs_40,
    through=st.one_of(st.none(), small_seqs),
    seqs=st.lists(small_seqs, min_size=1, max_size=20),
    aad=st.binary(max_size=40),
)
def test_seal_and_open_match_the_independent_implementation(
    secret: bytes,
    gateway: bytes,
    version: int,
    seq: int,
    through: int | None,
    seqs: list[int],
    aad: bytes,
) -> None:
    ring = KeyRing(gateway, version, secret)
    message = downlink.encode_ack(through, seqs)
    ours = downlink.seal_downlink(ring, seq, message, aad)
    expected = ref_ack(through, seqs)
    assert ours == ref_seal_down(secret, gateway, version, seq, expected, aad)
    assert ref_open_down(ours, secret, aad) == (gateway, version, seq, expected)
    opened = downlink.open_downlink(ours, ring, ReplayWindow(), aad)
    assert (opened.kind, opened.seq, opened.key_version) == (downlink.KIND_ACK, seq, version)
    assert opened.message == downlink.decode_message(cbor2.dumps(expected, canonical=True))


def test_an_independently_sealed_ack_opens_and_releases_what_it_names() -> None:
    ring = KeyRing(GATEWAY, 1, SECRET)
    queue = make_queue([3, 4, 5, 6, 8, 9, 12, 40])
    envelope = ref_seal_down(SECRET, GATEWAY, 1, 7, [1, 5, [[8, 9], 40]], TOPIC.encode())
    opened = downlink.open_downlink(envelope, ring, ReplayWindow(), TOPIC)
    assert opened == (downlink.KIND_ACK, 7, 1, downlink.Ack(5, ((8, 9), (40, 40))))
    assert downlink.apply_ack(queue, opened.message) == 6
    assert queue.seqs() == [6, 12]


def test_open_refuses_misaddressed_forged_and_replayed_acks() -> None:
    ring = KeyRing(GATEWAY, 1, SECRET)
    window = ReplayWindow()
    ack = downlink.encode_ack(5)
    other = KeyRing(b"gw-0043", 1, SECRET)  # the same secret provisioned twice by mistake
    with pytest.raises(AuthenticationError, match="addressed to gateway gw-0043, not this one"):
        downlink.open_downlink(downlink.seal_downlink(other, 0, ack, TOPIC), ring, window, TOPIC)
    forged_kid = ref_seal_down(SECRET, b"gw-0043", 1, 0, [1, 5, []], TOPIC.encode())
    forged_kid = forged_kid.replace(b"gw-0043", GATEWAY)  # readdressed: the key no longer fits
    with pytest.raises(AuthenticationError, match="tag does not match"):
        downlink.open_downlink(forged_kid, ring, window, TOPIC)
    with pytest.raises(AuthenticationError, match="no key for gateway gw-0042 version 2"):
        downlink.open_downlink(
            ref_seal_down(SECRET, GATEWAY, 2, 0, [1, 5, []], TOPIC.encode()), ring, window, TOPIC
        )
    uplink = cose.seal(SECRET, GATEWAY, 1, 0, ack, TOPIC)
    with pytest.raises(AuthenticationError, match="tag does not match"):
        downlink.open_downlink(uplink, ring, window, TOPIC)
    assert window.top == -1  # nothing forged moved the window
    genuine = downlink.seal_downlink(ring, 0, ack, TOPIC)
    assert downlink.open_downlink(genuine, ring, window, TOPIC).seq == 0
    with pytest.raises(ReplayError, match="already accepted"):
        downlink.open_downlink(genuine, ring, window, TOPIC)
    # A used number is refused before any AES work: an altered copy is a replay, too.
    altered = genuine[:-1] + bytes([genuine[-1] ^ 1])
    with pytest.raises(ReplayError, match="already accepted"):
        downlink.open_downlink(altered, ring, window, TOPIC)
    with pytest.raises(DecodeError):
        downlink.open_downlink(b"\xd0\x83", ring, window, TOPIC)


def test_seal_downlink_key_versions_during_a_rollover() -> None:
    cloud = KeyRing(GATEWAY, 1, SECRET)
    gateway = KeyRing(GATEWAY, 1, SECRET)
    cloud.rotate(2, bytes(range(16)))
    ack = downlink.encode_ack(3)
    # The gateway has not rotated yet: an answer under v2 does not open there, under the
    # version of the batch it answers (v1) it does.
    with pytest.raises(AuthenticationError, match="no key for gateway gw-0042 version 2"):
        newest = downlink.seal_downlink(cloud, 0, ack, TOPIC)
        downlink.open_downlink(newest, gateway, ReplayWindow(), TOPIC)
    v1 = downlink.seal_downlink(cloud, 1, ack, TOPIC, key_version=1)
    assert downlink.open_downlink(v1, gateway, ReplayWindow(), TOPIC).key_version == 1
    gateway.rotate(2, bytes(range(16)))  # now both open on the gateway
    window = ReplayWindow()
    assert downlink.open_downlink(v1, gateway, window, TOPIC).key_version == 1
    v2 = downlink.seal_downlink(cloud, 2, ack, TOPIC)
    assert downlink.open_downlink(v2, gateway, window, TOPIC).key_version == 2
    with pytest.raises(
        ConfigError, match=r"version 3 is not valid for this gateway \(valid: 2, 1\)"
    ):
        downlink.seal_downlink(cloud, 3, ack, TOPIC, key_version=3)


def test_every_bit_of_a_sealed_ack_is_covered() -> None:
    ring = KeyRing(GATEWAY, 1, SECRET)
    good = downlink.seal_downlink(ring, 300, downlink.encode_ack(4, [7, 9]), TOPIC)
    window = ReplayWindow()
    window.accept(290)
    state = window.state()
    queue = make_queue([1, 2, 3, 4, 5, 7, 9, 11])
    for bit in range(8 * len(good)):
        forged = bytearray(good)
        forged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(RemoteError):  # DecodeError, AuthenticationError or ReplayError
            downlink.open_downlink(bytes(forged), ring, window, TOPIC)
        assert window.state() == state
    assert queue.seqs() == [1, 2, 3, 4, 5, 7, 9, 11]
    opened = downlink.open_downlink(good, ring, window, TOPIC)
    assert downlink.apply_ack(queue, opened.message) == 6
    assert queue.seqs() == [5, 11]


# ---- applying an ack to the queue ---------------------------------------------------------


class CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[list[int]] = []

    def delete(self, seqs, meta=None):
        self.deletes.append(list(seqs))
        super().delete(seqs, meta)


def test_apply_ack_removes_the_covered_head_at_once_and_is_idempotent() -> None:
    storage = CountingStorage()
    queue = Queue(storage, 1 << 20)
    for seq in (2, 3, 5, 8, 9, 10, 14, 15):
        queue.enqueue(seq, b"x")
    ack = downlink.decode_message(downlink.encode_ack(3, [5, 9, 10, 15, 99]))
    assert downlink.apply_ack(queue, ack) == 6
    assert storage.deletes == [[2, 3, 5], [9], [10], [15]]
    assert queue.seqs() == [8, 14]
    assert downlink.apply_ack(queue, ack) == 0
    assert queue.seqs() == [8, 14]
    counters = queue.counters()
    assert (counters["acked"], counters["acks_stale"]) == (6, 1)  # the repeat, counted once
    only_selective = downlink.decode_message(downlink.encode_ack(None, [20, 30]))
    assert downlink.apply_ack(queue, only_selective) == 0
    assert queue.counters()["acks_stale"] == 2


def test_ranges_as_wide_as_the_sequence_space_apply() -> None:
    queue = make_queue([5, MAX_SEQ - 1])
    ack = downlink.decode_message(downlink.encode_ack(None, [1, MAX_SEQ - 1, MAX_SEQ]))
    assert isinstance(ack, downlink.Ack) and ack.ranges == ((1, 1), (MAX_SEQ - 1, MAX_SEQ))
    assert downlink.apply_ack(queue, downlink.Ack(None, ((6, MAX_SEQ),))) == 1
    assert queue.seqs() == [5]


@pytest.mark.parametrize(
    ("through", "committed", "lost_last", "expected"),
    [
        (None, set(), None, None),
        (None, {0, 1, 2, 4}, None, 2),
        (2, {4, 5}, None, 2),  # 3 is missing: no leap without a loss report
        (2, {4, 5}, 3, 5),  # 3 was reported lost: leap over it, run on
        (2, {13, 14, 16}, 12, 14),  # the report covers 3..12; 15 is missing
        (20, {21}, 12, 21),  # an old report changes nothing
        (None, set(), 7, 7),
    ],
)
def test_advance_through(
    through: int | None, committed: set[int], lost_last: int | None, expected: int | None
) -> None:
    assert downlink.advance_through(through, committed, lost_last) == expected


def test_acknowledging_across_a_gap_the_gateway_reported_lost() -> None:
    # The gateway held 0..19 with room for 12: 0..7 were dropped and reported lost.
    queue = Queue(MemoryStorage(), 12 * 5)
    for seq in range(20):
        queue.enqueue(seq, b"12345")
    dropped, _, _, lost_last = queue.loss()
    assert (dropped, lost_last, queue.seqs()[0]) == (8, 7, 8)
    committed = {0, 1, 2} | set(range(8, 15)) | {17}  # 0..2 arrived before the drop
    through = downlink.advance_through(None, committed, lost_last)
    assert through == 14
    ack = downlink.decode_message(downlink.encode_ack(through, committed))
    assert ack == downlink.Ack(14, ((17, 17),))
    assert downlink.apply_ack(queue, ack) == 8
    assert queue.seqs() == [15, 16, 18, 19]


def test_downlink_topic() -> None:
    assert downlink.downlink_topic("gw-7") == "devices/gw-7/down"
    assert downlink.downlink_topic("gw-ü".encode()) == "devices/gw-ü/down"
    for bad in ("gw/7", "gw+", "#", "gw\x00", b"\xff\xfe"):
        with pytest.raises(ConfigError):
            downlink.downlink_topic(bad)


# ---- any mix of valid, forged and replayed acks -------------------------------------------

K_WRONG = bytes(range(100, 116))
FORGERIES = ("wrong key", "other gateway", "uplink key", "wrong topic", "bit flip", "truncated")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_only_valid_acks_release_batches(data: st.DataObject) -> None:
    queued = sorted(data.draw(st.sets(st.integers(0, 80), max_size=40), label="queued"))
    numbers = st.integers(0, 90)
    acks = data.draw(
        st.lists(
            st.tuples(st.one_of(st.none(), numbers), st.lists(numbers, max_size=8)).filter(
                lambda a: a[0] is not None or a[1]
            ),
            min_size=1,
            max_size=8,
        ),
        label="acks",
    )
    cloud = KeyRing(GATEWAY, 1, SECRET)
    gateway = KeyRing(GATEWAY, 1, SECRET)
    other = KeyRing(b"gw-0043", 1, K_WRONG)
    messages = [downlink.encode_ack(through, seqs) for through, seqs in acks]
    sealed = [downlink.seal_downlink(cloud, i, m, TOPIC) for i, m in enumerate(messages)]
    plan = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(("genuine", *FORGERIES)),
                st.integers(0, len(acks) - 1),
                st.integers(0, 10_000),
            ),
            max_size=25,
        ),
        label="deliveries",
    )
    queue = make_queue(queued)
    window = ReplayWindow()
    model = set(queued)
    delivered: set[int] = set()
    released_total: set[int] = set()
    for how, i, salt in plan:
        message = messages[i]
        if how == "genuine":
            envelope, aad = sealed[i], TOPIC
        elif how == "wrong key":
            envelope, aad = cose.seal(K_WRONG, GATEWAY, 1, i, message, TOPIC, cose.DOWNLINK), TOPIC
        elif how == "other gateway":
            envelope, aad = downlink.seal_downlink(other, i, message, TOPIC), TOPIC
        elif how == "uplink key":
            envelope, aad = cose.seal(SECRET, GATEWAY, 1, i, message, TOPIC), TOPIC
        elif how == "wrong topic":
            envelope, aad = sealed[i], "devices/gw-0043/down"
        elif how == "bit flip":
            flipped = bytearray(sealed[i])
            flipped[salt % len(flipped)] ^= 1 << (salt % 8)
            envelope, aad = bytes(flipped), TOPIC
        else:
            envelope, aad = sealed[i][: salt % len(sealed[i])], TOPIC
        before = queue.seqs()
        if how == "genuine" and i not in delivered:  # valid: authentic and fresh
            delivered.add(i)
            opened = downlink.open_downlink(envelope, gateway, window, aad)
            expected = {s for s in model if ref_covers(cbor2.loads(message), s)}
            assert downlink.apply_ack(queue, opened.message) == len(expected)
            model -= expected
            released_total |= expected
        else:  # forged, altered, misdirected or replayed
            with pytest.raises(RemoteError):
                opened = downlink.open_downlink(envelope, gateway, window, aad)
            assert queue.seqs() == before
        assert queue.seqs() == sorted(model)
    covered = {s for s in queued for i in delivered if ref_covers(cbor2.loads(messages[i]), s)}
    assert released_total == covered
    assert set(queued) - set(queue.seqs()) == covered


# ---- a gateway's story, on both interpreters ----------------------------------------------

TOPIC_7 = scenario.TOPIC.encode()
QUEUED_AT_START = [13, 14, 15, 16, 17, 18, 19, 30, 31, 32, 33, 34, 35]
STORY_EXPECTED: dict[str, Any] = {
    # 26 batches, room for 13: the oldest 13 (0..12) were dropped and reported lost
    "start": {"queued": QUEUED_AT_START, "loss": [13, 130, 0, 12]},
    "log": [
        # [name, "released", n, n when applied again, key version, queue after]
        ["dl 0 under v1: through 5, already dropped", "released", 0, 0, 1, QUEUED_AT_START],
        # through 16 leaps over the reported loss (0..12), 18 selectively
        [
            "dl 1: through 16 across the lost gap, and 18",
            "released",
            5,
            0,
            2,
            [17, 19, 30, 31, 32, 33, 34, 35],
        ],
        ["dl 1 again", "ReplayError", True],
        ["dl 3: 30, 31, 33", "released", 3, 0, 2, [17, 19, 32, 34, 35]],
        # below the top, inside the window, never seen: an authentic ack, true when late
        ["dl 2 late, inside the window: 17", "released", 1, 0, 2, [19, 32, 34, 35]],
        # [name, error, queue untouched]
        ["sealed with a wrong key", "AuthenticationError", True],
        ["sealed with gw-8's key for gw-7", "AuthenticationError", True],
        ["addressed to gw-8", "AuthenticationError", True],
        ["the uplink key", "AuthenticationError", True],
        ["own batch reflected", "AuthenticationError", True],
        ["a key version not in the ring", "AuthenticationError", True],
        ["one bit flipped in the tag", "AuthenticationError", True],
        ["truncated", "DecodeError", True],
        ["dl 4 on gw-8's topic", "AuthenticationError", True],
        # none of the failures burnt number 4
        ["dl 4: 19, 34, 35", "released", 3, 0, 2, [32]],
        # the gateway's first configuration (settings as deterministic CBOR hex)
        [
            "dl 20: config 7",
            "config",
            7,
            "applied",
            cbor2.dumps({"deadband": 5}, canonical=True).hex(),
        ],
        ["dl 20 again", "ReplayError", True],
        # window of 8 below top 20: 12 is too old although never seen; 13 is inside
        ["dl 12 late, older than the window: 32", "ReplayError", True],
        ["dl 13 late, inside the window: 32", "released", 1, 0, 2, []],
        ["dl 21: through 40 on an empty queue", "released", 0, 0, 2, []],
        ["retire", 1],
        ["dl 22 under retired v1: 40", "AuthenticationError", True],
        ["dl 23: command 5", "command", 5, "set_led", "run", {"on": True}],
        # the same command id under a new downlink number: fresh for the window, not run
        ["dl 24: command 5 resent", "command", 5, "set_led", "already run"],
        ["dl 23 again", "ReplayError", True],
        # a revision not above the one running (7) is ignored
        ["dl 25: config 6, older", "config", 6, "ignored", 7],
        [
            "dl 26: config 8",
            "config",
            8,
            "applied",
            # 0.2 travels as the nearest single-precision float
            cbor2.dumps(
                {"paired": ["gw-8"], "deadband": {"temperature": SINGLE_0_2}}, canonical=True
            ).hex(),
        ],
    ],
    "acked": 13,
    # dl 0 and dl 21 released nothing, and each of the 7 genuine acks applied twice
    "acks_stale": 9,
    # accepted: dl 0, 1, 3, 2, 4, 20, 13, 21, 23, 24, 25, 26
    "window": {"accepted": 12, "replayed": 3, "too_old": 1},
    # top 26; of 19..26: 26, 25, 24, 23, 21, 20 (bits 0, 1, 2, 3, 5, 6); 22 never opened
    "window state": "000000000000001a" + "6f",
    "commands": [-1, 5],
    "running": 8,
}

# Acks sealed by each interpreter and opened by the other.
CROSS_CASES: list[list[Any]] = [
    [SECRET.hex(), "gw-0042", 1, 0, 7, [], TOPIC],
    [SECRET.hex(), "gw-0042", 1, 255, None, [3, 4, 5, 9], TOPIC],
    [bytes(range(32)).hex(), "g", 0, 256, 100, [102, 200, MAX_SEQ], "batches"],
    [bytes(range(64)).hex(), "x" * 64, 65535, MAX_SEQ, 0, [], ""],
    [SECRET.hex(), "gw-ü", 7, 123456789, None, list(range(0, 128, 2)), "devices/gw-ü/down"],
]
ENCODE_CASES: list[list[Any]] = [
    [7, []],
    [None, [3]],
    [3, [5, 6, 7, 9, 4, 20]],
    [None, [9, 7, 6, 5, 7]],
    [10, [12, MAX_SEQ - 1, MAX_SEQ]],
    [None, []],
    [None, list(range(0, 200, 2))],
]


def _cross_expected(case: list[Any]) -> list[Any]:
    _, _, version, seq, through, seqs, _ = case
    canonical = ref_ack(through, seqs)
    ranges = [[r, r] if isinstance(r, int) else r for r in canonical[2]]
    return [seq, version, canonical[1], ranges]


def test_story_on_cpython() -> None:
    assert scenario.story(scenario.build_deliveries()) == STORY_EXPECTED


def test_story_acks_read_as_the_independent_opener_reads_them() -> None:
    deliveries = scenario.build_deliveries()
    genuine = {d[1]: bytes.fromhex(d[2]) for d in deliveries if d[0] == "deliver"}
    gateway, version, seq, message = ref_open_down(
        genuine["dl 1: through 16 across the lost gap, and 18"], scenario.K2, TOPIC_7
    )
    assert (gateway, version, seq, message) == (b"gw-7", 2, 1, [1, 16, [18]])
    assert ref_open_down(
        genuine["dl 0 under v1: through 5, already dropped"], scenario.K1, TOPIC_7
    )[1:] == (1, 0, [1, 5, []])
    assert ref_open_down(genuine["dl 3: 30, 31, 33"], scenario.K2, TOPIC_7)[3] == [
        1,
        None,
        [[30, 31], 33],
    ]


_MP_STORY = """
import json, downlink_scenario as s
from bankiot_core import ccm
print(ccm.BACKEND)
print(json.dumps(s.build_deliveries()))
print(json.dumps(s.story(DELIVERIES)))
print(json.dumps(s.seal_acks(CASES)))
print(json.dumps(s.open_all(TO_OPEN)))
print(json.dumps(s.encode_acks(ENCODE_CASES)))
print(json.dumps(s.encode_messages(MESSAGE_CASES)))
print(json.dumps(s.decode_messages(TO_DECODE)))
print(json.dumps(s.command_log(LOG_STEPS, 3)))
"""

# Config and command messages each interpreter encodes: the bytes cbor2 gives for the value
# the docstring says goes on the wire, or ConfigError.
MESSAGE_CASES: list[list[Any]] = [
    [
        "config",
        7,
        {"deadband": {"temperature": 0.2}, "paired": ["AA:BB:CC:DD:EE:FF"], "presence": True},
    ],
    ["config", MAX_SEQ, {"rate_per_min": 120, "x": None, "neg": -5, "big": 2**64 - 1}],
    ["command", 5, "reboot", {}],
    ["command", 6, "set_led", {"on": True, "levels": [0.5, 1, "x", 21.37]}],
    ["config", 1, {}],
    ["command", 1, "Reboot", {}],
    ["config", -1, {"a": 1}],
    ["config", 1, {"a": {"b": {"c": 1}}}],
    ["config", 1, {"a": 1e39}],
    ["config", 1, {"a": "x" * 4088}],
]
LOG_STEPS: list[list[Any]] = [
    ["record", 10],
    ["record", 12],
    ["record", 11],
    ["seen", 11],
    ["record", 13],
    ["seen", 10],
    ["seen", 9],
    ["seen", 14],
    ["reboot"],
    ["seen", 12],
    ["record", 12],
    ["record", 5],
    ["record", 20],
    ["seen", 10],
]
LOG_EXPECTED: list[Any] = [
    [-1, 10],
    [-1, 10, 12],
    [-1, 10, 11, 12],
    True,
    [10, 11, 12, 13],  # room for 3: 10 forgotten, and all up to it count as run
    True,
    True,
    False,
    "rebooted",
    True,
    [10, 11, 12, 13],
    [10, 11, 12, 13],  # 5 is below the floor: taken as run, not recorded
    [11, 12, 13, 20],
    True,
]


def expected_message(case: list[Any]) -> str:
    """The bytes of a MESSAGE_CASES case by cbor2, or "ConfigError" where the docstring's
    rules refuse it."""
    try:
        if case[0] == "config":
            obj = [2, case[1], ref_wire(case[2])]
        else:
            obj = [3, case[1], case[2], ref_wire(case[3])]
    except OverflowError:  # a float beyond single precision's range
        return "ConfigError"
    data = cbor2.dumps(obj, canonical=True)
    if ref_message_ok(obj) and len(data) <= downlink.MAX_MESSAGE_BYTES:
        return data.hex()
    return "ConfigError"


def expected_decoded(data: bytes) -> list[Any]:
    """What ``decode_messages`` reports for ``data``, read by cbor2 and the reference checker."""
    if len(data) > downlink.MAX_MESSAGE_BYTES:
        return ["DecodeError"]
    obj = cbor2.loads(data)
    if not ref_message_ok(obj) or cbor2.dumps(obj, canonical=True) != data:
        return ["DecodeError"]
    if obj[0] == 2:
        return ["config", obj[1], cbor2.dumps(obj[2], canonical=True).hex()]
    return ["command", obj[1], obj[2], cbor2.dumps(obj[3], canonical=True).hex()]


@pytest.mark.micropython
def test_story_across_micropython_and_cpython(micropython: MicroPythonRunner) -> None:
    # What CPython sealed (our module, and the independent sealer), MicroPython opens.
    deliveries = scenario.build_deliveries()
    to_open = []
    for case in CROSS_CASES:
        secret, gateway, version, seq, through, seqs, aad = case
        args = (bytes.fromhex(secret), gateway.encode(), version, seq)
        independent = ref_seal_down(*args, ref_ack(through, seqs), aad.encode())
        to_open.append([independent.hex(), secret, gateway, version, aad])
    first = bytes.fromhex(to_open[0][0])
    to_open.append([first.hex(), SECRET.hex(), "gw-0042", 1, "devices/gw-0043/down"])
    to_open.append([first.hex(), SECRET.hex(), "gw-0043", 1, TOPIC])
    to_open.append([first[:-1].hex(), SECRET.hex(), "gw-0042", 1, TOPIC])
    config_and_commands = [name for name in MALFORMED if name.startswith(("config", "command"))]
    to_decode = [MALFORMED[name] for name in config_and_commands]
    to_decode += [bytes.fromhex(h) for h in map(expected_message, MESSAGE_CASES) if h[0] == "8"]
    inputs = {
        "DELIVERIES": deliveries,
        "CASES": CROSS_CASES,
        "TO_OPEN": to_open,
        "ENCODE_CASES": ENCODE_CASES,
        "MESSAGE_CASES": MESSAGE_CASES,
        "TO_DECODE": [data.hex() for data in to_decode],
        "LOG_STEPS": LOG_STEPS,
    }
    code = "import json\n" + "".join(
        "%s = json.loads(%r)\n" % (name, json.dumps(value)) for name, value in inputs.items()
    )
    run = micropython.run(
        code + _MP_STORY,
        fakes=("cryptolib",),
        files={"/lib/downlink_scenario.py": SCENARIO_SOURCE},
    ).check()
    lines = run.stdout.splitlines()
    assert lines[0] == "cryptolib"  # the portable CCM over the AES stand-in, not OpenSSL
    built_there = json.loads(lines[1])
    story_there = json.loads(lines[2])
    sealed_there = json.loads(lines[3])
    opened_there = json.loads(lines[4])
    encoded_there = json.loads(lines[5])
    messages_there = json.loads(lines[6])
    decoded_there = json.loads(lines[7])
    log_there = json.loads(lines[8])

    # MicroPython opened CPython's acks and lived the same story.
    assert story_there == STORY_EXPECTED
    expected_open = [_cross_expected(case) for case in CROSS_CASES]
    expected_open += [["AuthenticationError"], ["AuthenticationError"], ["DecodeError"]]
    assert opened_there == expected_open

    # What MicroPython sealed is byte for byte what CPython seals, CPython opens it with the
    # independent opener and with our module, and lives the same story with it.
    assert built_there == deliveries
    assert scenario.story(built_there) == STORY_EXPECTED
    assert sealed_there == scenario.seal_acks(CROSS_CASES)
    for case, envelope_hex in zip(CROSS_CASES, sealed_there, strict=True):
        secret, gateway, version, seq, through, seqs, aad = case
        envelope = bytes.fromhex(envelope_hex)
        canonical = ref_ack(through, seqs)
        opened = ref_open_down(envelope, bytes.fromhex(secret), aad.encode())
        assert opened == (gateway.encode(), version, seq, canonical)
        ring = KeyRing(gateway, version, bytes.fromhex(secret))
        assert downlink.open_downlink(envelope, ring, ReplayWindow(), aad).seq == seq
    expected_encoded = []
    for through, seqs in ENCODE_CASES:
        canonical = ref_ack(through, seqs)
        empty = canonical[1] is None and not canonical[2]
        if empty or len(canonical[2]) > downlink.MAX_RANGES:
            expected_encoded.append("ConfigError")
        else:
            expected_encoded.append(cbor2.dumps(canonical, canonical=True).hex())
    assert encoded_there == expected_encoded == scenario.encode_acks(ENCODE_CASES)

    # Config and command messages: the same bytes on both, as cbor2 predicts; the same
    # decoding (and refusals) on both, as cbor2 and the reference checker predict.
    expected_messages = [expected_message(case) for case in MESSAGE_CASES]
    assert expected_messages.count("ConfigError") == 6
    assert messages_there == expected_messages == scenario.encode_messages(MESSAGE_CASES)
    expected_decodes = [expected_decoded(data) for data in to_decode]
    assert expected_decodes[: len(config_and_commands)] == [["DecodeError"]] * len(
        config_and_commands
    )
    assert decoded_there == expected_decodes == scenario.decode_messages(inputs["TO_DECODE"])
    assert log_there == LOG_EXPECTED == scenario.command_log(LOG_STEPS, 3)
