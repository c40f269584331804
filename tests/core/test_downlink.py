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
    assert ack.through == expected[1]
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
    "config (reserved)": cbor2.dumps([2, 1, {"deadband": 5}]),
    "command (reserved)": cbor2.dumps([3, 1, "reboot", {}]),
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


def test_reserved_kinds_say_so() -> None:
    with pytest.raises(DecodeError, match=r"kind 2 \(config\) is reserved"):
        downlink.decode_message(MALFORMED["config (reserved)"])
    with pytest.raises(DecodeError, match=r"kind 3 \(command\) is reserved"):
        downlink.decode_message(MALFORMED["command (reserved)"])
    with pytest.raises(DecodeError, match="unknown downlink kind 9"):
        downlink.decode_message(MALFORMED["unknown kind 9"])


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
    assert ack.ranges == ((1, 1), (MAX_SEQ - 1, MAX_SEQ))
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
        # authentic but not an ack this gateway understands: refused, its number used up
        ["dl 20: a config message (reserved)", "DecodeError", True],
        ["dl 20 again", "ReplayError", True],
        # window of 8 below top 20: 12 is too old although never seen; 13 is inside
        ["dl 12 late, older than the window: 32", "ReplayError", True],
        ["dl 13 late, inside the window: 32", "released", 1, 0, 2, []],
        ["dl 21: through 40 on an empty queue", "released", 0, 0, 2, []],
        ["retire", 1],
        ["dl 22 under retired v1: 40", "AuthenticationError", True],
    ],
    "acked": 13,
    # dl 0 and dl 21 released nothing, and each of the 7 genuine acks applied twice
    "acks_stale": 9,
    # accepted: dl 0, 1, 3, 2, 4, 20, 13, 21
    "window": {"accepted": 8, "replayed": 2, "too_old": 1},
    # top 21; of 14..21 only 20 and 21 accepted (bits 1 and 0)
    "window state": "0000000000000015" + "03",
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
"""


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
    inputs = {
        "DELIVERIES": deliveries,
        "CASES": CROSS_CASES,
        "TO_OPEN": to_open,
        "ENCODE_CASES": ENCODE_CASES,
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
