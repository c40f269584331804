"""bankiot_core.cose: sealed batches as COSE_Encrypt0 with AES-CCM-16-64-128.

Checked against code that is not ours:

- RFC 9052 appendix C.4.1 and C.4.2 (Encrypt0, algorithm 10, full IV and Partial IV):
  Enc_structure, nonce, ciphertext and envelope bytes;
- RFC 5869's HKDF-SHA256 test cases, and ``cryptography``'s HKDF for random inputs;
- an independent sealer and opener written here with cbor2, ``cryptography``'s HKDF and
  AESCCM, following the construction documented in ``cose``'s docstring: byte-equal
  envelopes both ways;
- pycose (an independent COSE implementation) opening our envelopes and computing the
  ciphertext our opener opens;
- envelopes sealed under real MicroPython (pure-Python AES stand-in) opened on CPython,
  and the other way round.
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
from pycose.algorithms import AESCCM1664128
from pycose.headers import IV, KID, Algorithm, PartialIV
from pycose.keys.symmetric import SymmetricKey
from pycose.messages.enc0message import Enc0Message

from bankiot_core import ccm, cose
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError, RemoteError
from tests.core import sealing_scenario as scenario

SCENARIO_SOURCE = Path(scenario.__file__).read_text()

SECRET = bytes.fromhex("8c2f0d9e4a61b7735e1c9a0fd24b68e1")
GATEWAY = b"gw-0042"
TOPIC = "devices/gw-0042/batches"


# ---- an independent implementation: cbor2 + cryptography, nothing from bankiot_core ------


def ref_derive(secret: bytes, gateway: bytes, version: int) -> tuple[bytes, bytes]:
    def hkdf(kind: str, length: int) -> bytes:
        info = cbor2.dumps([gateway, version, 10, kind, length])
        return HKDF(hashes.SHA256(), length, salt=None, info=info).derive(secret)

    return hkdf("Key", 16), hkdf("IV", 13)


def ref_nonce(common_iv: bytes, seq: int) -> bytes:
    return (int.from_bytes(common_iv, "big") ^ seq).to_bytes(13, "big")


def ref_piv(seq: int) -> bytes:
    return seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")


def ref_enc_structure(protected: bytes, aad: bytes) -> bytes:
    return cbor2.dumps(["Encrypt0", protected, aad])


def ref_seal(
    secret: bytes, gateway: bytes, version: int, seq: int, plaintext: bytes, aad: bytes
) -> bytes:
    key, common_iv = ref_derive(secret, gateway, version)
    protected = cbor2.dumps({1: 10})
    ciphertext = AESCCM(key, 8).encrypt(
        ref_nonce(common_iv, seq), plaintext, ref_enc_structure(protected, aad)
    )
    kid = gateway + version.to_bytes(2, "big")
    return cbor2.dumps(cbor2.CBORTag(16, [protected, {4: kid, 6: ref_piv(seq)}, ciphertext]))


def ref_open(envelope: bytes, secret: bytes, aad: bytes) -> tuple[bytes, int, int, bytes]:
    tagged = cbor2.loads(envelope)
    assert tagged.tag == 16
    protected, unprotected, ciphertext = tagged.value
    assert cbor2.loads(protected) == {1: 10}
    assert set(unprotected) == {4, 6}
    kid, piv = unprotected[4], unprotected[6]
    gateway, version, seq = kid[:-2], int.from_bytes(kid[-2:], "big"), int.from_bytes(piv, "big")
    key, common_iv = ref_derive(secret, gateway, version)
    plaintext = AESCCM(key, 8).decrypt(
        ref_nonce(common_iv, seq), ciphertext, ref_enc_structure(protected, aad)
    )
    return gateway, version, seq, plaintext


def lookup_for(secret: bytes, gateway: bytes = GATEWAY, version: int = 1):
    def lookup(gateway_id: bytes, key_version: int) -> bytes | None:
        return secret if (gateway_id, key_version) == (gateway, version) else None

    return lookup


@pytest.fixture(autouse=True)
def _fresh_caches():
    ccm.clear_cache()
    cose._derived.clear()
    yield


# ---- known answers ------------------------------------------------------------------------

# RFC 9052 appendix C.4: COSE_Encrypt0 with AES-CCM-16-64-128 (alg 10), key
# "hJtXhkV8FJG-Onbc6mxCcY", "This is the content.", no external AAD. C.4.1 sends the full
# IV (label 5); C.4.2 sends a Partial IV (label 6) with Base IV 89f52f65a1c58093 in the
# key, the nonce rule our envelopes use (with a derived 13-byte Base IV and a kid added).
RFC9052_KEY = bytes.fromhex("849b5786457c1491be3a76dcea6c4271")
RFC9052_PLAINTEXT = b"This is the content."
RFC9052_AAD = "8368456e63727970743043a1010a40"  # ["Encrypt0", h'a1010a', h'']
RFC9052_C41 = (
    "d08343a1010aa1054d89f52f65a1c580933b5261a78c581c"
    "5974e1b99a3a4cc09a659aa2e9e7fff161d38ce71cb45ce460ffb569"
)
RFC9052_C42 = "d08343a1010aa1064261a7581c252a8911d465c125b6764739700f0141ed09192de139e053bd09abca"


def test_rfc9052_c4_1_encrypt0_with_full_iv() -> None:
    iv = bytes.fromhex("89f52f65a1c580933b5261a78c")
    aad = cose._enc_structure(cose.PROTECTED, b"")
    assert aad.hex() == RFC9052_AAD
    ciphertext = ccm.ccm_encrypt(RFC9052_KEY, iv, RFC9052_PLAINTEXT, aad, 8)
    envelope = cose.cbor.dumps(cose.cbor.Tag(16, [cose.PROTECTED, {5: iv}, ciphertext]), True)
    assert envelope.hex() == RFC9052_C41
    # Our envelopes carry a Partial IV, never a full IV: this one is refused as malformed.
    with pytest.raises(DecodeError, match="label 5 is not allowed"):
        cose.open_envelope(envelope, lambda g, v: RFC9052_KEY, b"")


def test_rfc9052_c4_2_encrypt0_with_partial_iv() -> None:
    base_iv = bytes.fromhex("89f52f65a1c58093") + bytes(5)  # the Base IV, padded to 13 bytes
    nonce = cose._nonce(base_iv, 0x61A7)
    assert nonce.hex() == "89f52f65a1c5809300000061a7"
    assert cose.partial_iv(0x61A7) == bytes.fromhex("61a7")
    aad = cose._enc_structure(cose.PROTECTED, b"")
    ciphertext = ccm.ccm_encrypt(RFC9052_KEY, nonce, RFC9052_PLAINTEXT, aad, 8)
    header = {6: cose.partial_iv(0x61A7)}
    envelope = cose.cbor.dumps(cose.cbor.Tag(16, [cose.PROTECTED, header, ciphertext]), True)
    assert envelope.hex() == RFC9052_C42
    with pytest.raises(DecodeError, match="needs kid"):  # ours always name their key
        cose.open_envelope(envelope, lambda g, v: RFC9052_KEY, b"")


# RFC 5869 appendix A, test cases 1 to 3 (SHA-256).
RFC5869 = [
    (
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41"
        "c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        "0b" * 22,
        "",
        "",
        42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869)
def test_hkdf_rfc5869_known_answers(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    h = bytes.fromhex
    assert cose.hkdf_sha256(h(ikm), h(salt), h(info), length).hex() == okm


@settings(max_examples=100, deadline=None)
@given(
    ikm=st.binary(max_size=100),
    salt=st.binary(max_size=100),
    info=st.binary(max_size=60),
    length=st.integers(1, 100),
)
def test_hkdf_matches_cryptography(ikm: bytes, salt: bytes, info: bytes, length: int) -> None:
    reference = HKDF(hashes.SHA256(), length, salt=salt or None, info=info).derive(ikm)
    assert cose.hkdf_sha256(ikm, salt, info, length) == reference


# ---- the envelope against the independent implementation ---------------------------------

secrets = st.integers(16, 64).flatmap(lambda n: st.binary(min_size=n, max_size=n))
gateways = st.binary(min_size=1, max_size=64)
versions = st.integers(0, 0xFFFF)
seqs = st.one_of(st.integers(0, cose.MAX_SEQ), st.sampled_from([0, 255, 256, cose.MAX_SEQ]))


@settings(max_examples=150, deadline=None)
@given(
    secret=secrets,
    gateway=gateways,
    version=versions,
    seq=seqs,
    plaintext=st.binary(max_size=300),
    aad=st.binary(max_size=40),
)
def test_seal_and_open_match_the_independent_implementation(
    secret: bytes, gateway: bytes, version: int, seq: int, plaintext: bytes, aad: bytes
) -> None:
    ours = cose.seal(secret, gateway, version, seq, plaintext, aad)
    assert ours == ref_seal(secret, gateway, version, seq, plaintext, aad)
    assert ref_open(ours, secret, aad) == (gateway, version, seq, plaintext)
    opened = cose.open_envelope(ours, lookup_for(secret, gateway, version), aad)
    assert opened == (gateway, version, seq, plaintext)
    assert cose.peek_envelope(ours) == (gateway, version, seq)
    assert cose.derive_key_and_iv(secret, gateway, version) == ref_derive(secret, gateway, version)


def test_pycose_opens_our_envelope_and_we_open_pycose_ciphertext() -> None:
    plaintext = b"\x82\x01\x02" * 40
    envelope = cose.seal(SECRET, GATEWAY, 3, 70000, plaintext, TOPIC)
    key, common_iv = ref_derive(SECRET, GATEWAY, 3)
    nonce = ref_nonce(common_iv, 70000)
    tagged = cbor2.loads(envelope)
    assert tagged.tag == 16
    # pycose 1.1 reads cbor2 5's mutable containers; cbor2 6 hands back a frozendict.
    protected, unprotected, ciphertext = tagged.value
    message: Any = Enc0Message.from_cose_obj([protected, dict(unprotected), ciphertext], True)
    assert message.get_attr(KID) == GATEWAY + b"\x00\x03"
    assert message.get_attr(PartialIV) == b"\x01\x11\x70"
    message.key = SymmetricKey(k=key)
    message.external_aad = TOPIC.encode()
    message.uhdr_update({IV: nonce})  # pycose's own Partial IV handling drops leading zeros
    assert message.decrypt() == plaintext

    theirs: Any = Enc0Message(
        phdr={Algorithm: AESCCM1664128},
        uhdr={KID: GATEWAY + b"\x00\x03", IV: nonce},
        payload=b"sealed by pycose",
        external_aad=TOPIC.encode(),
        key=SymmetricKey(k=key),
    )
    pycose_ciphertext = theirs.encrypt()
    wire = cbor2.dumps(
        cbor2.CBORTag(16, [theirs.phdr_encoded, {4: GATEWAY + b"\x00\x03", 6: ref_piv(70000)},
                           pycose_ciphertext])
    )  # fmt: skip
    opened = cose.open_envelope(wire, lookup_for(SECRET, version=3), TOPIC)
    assert opened.plaintext == b"sealed by pycose"


def test_envelope_layout() -> None:
    envelope = cose.seal(SECRET, GATEWAY, 1, 300, b"batch", TOPIC)
    kid = GATEWAY + b"\x00\x01"
    head = "d0" + "83" + "43a1010a" + "a2" + "04" + "49" + kid.hex() + "06" + "42012c" + "4d"
    assert envelope.hex().startswith(head)
    assert len(envelope) == len(head) // 2 + len(b"batch") + 8
    assert cose.make_kid("gw-0042", 1) == kid
    assert cose.split_kid(kid) == (GATEWAY, 1)


@pytest.mark.parametrize(
    ("seq", "piv"),
    [(0, "00"), (1, "01"), (255, "ff"), (256, "0100"), (65535, "ffff"), (cose.MAX_SEQ, "ff" * 5)],
)
def test_partial_iv_is_minimal_big_endian(seq: int, piv: str) -> None:
    assert cose.partial_iv(seq).hex() == piv
    assert cbor2.loads(cose.seal(SECRET, GATEWAY, 1, seq, b"", TOPIC)).value[1][6].hex() == piv


def test_nonces_and_keys_differ_per_sequence_version_and_gateway() -> None:
    _, common_iv = cose.derive_key_and_iv(SECRET, GATEWAY, 1)
    nonces = {cose._nonce(common_iv, seq) for seq in range(2000)}
    assert len(nonces) == 2000
    assert cose._nonce(common_iv, 0) == common_iv
    derived = {
        cose.derive_key_and_iv(SECRET, gateway, version)
        for gateway in (GATEWAY, b"gw-0043")
        for version in (1, 2)
    }
    assert len({k for k, _ in derived}) == 4 and len({iv for _, iv in derived}) == 4
    assert SECRET not in {k for k, _ in derived}  # the secret itself never keys AES


# ---- opening: everything malformed or forged is refused, with the right class ------------


def _good() -> list[Any]:
    envelope = cbor2.loads(cose.seal(SECRET, GATEWAY, 1, 5, b"batch", TOPIC))
    protected, unprotected, ciphertext = envelope.value
    return [protected, dict(unprotected), ciphertext]


def _with(index: int, value: Any) -> bytes:
    parts = _good()
    parts[index] = value
    return cbor2.dumps(cbor2.CBORTag(16, parts))


def _header(**changes: Any) -> bytes:
    parts = _good()
    header = parts[1]
    for label, value in changes.items():
        number = int(label[1:])
        if value is None:
            del header[number]
        else:
            header[number] = value
    return cbor2.dumps(cbor2.CBORTag(16, parts))


MALFORMED = {
    "untagged": lambda: cbor2.dumps(_good()),
    "tag 17 (COSE_Mac0)": lambda: cbor2.dumps(cbor2.CBORTag(17, _good())),
    "two items": lambda: cbor2.dumps(cbor2.CBORTag(16, _good()[:2])),
    "four items": lambda: cbor2.dumps(cbor2.CBORTag(16, [*_good(), b""])),
    "not an array": lambda: cbor2.dumps(cbor2.CBORTag(16, b"x")),
    "protected not bytes": lambda: _with(0, {1: 10}),
    "protected not CBOR": lambda: _with(0, b"\xa1\x01"),
    "protected alg 11": lambda: _with(0, cbor2.dumps({1: 11})),
    "protected alg as text": lambda: _with(0, cbor2.dumps({1: "10"})),
    "protected extra label": lambda: _with(0, cbor2.dumps({1: 10, 4: b"kid"})),
    "protected label true": lambda: _with(0, bytes.fromhex("a1f50a")),
    "protected empty": lambda: _with(0, b""),
    "unprotected not a map": lambda: _with(1, [4, 6]),
    "unprotected full IV": lambda: _header(h5=bytes(13)),
    "unprotected alg": lambda: _header(h1=10),
    "no kid": lambda: _header(h4=None),
    "no Partial IV": lambda: _header(h6=None),
    "kid too short": lambda: _header(h4=b"g\x01"),
    "kid not bytes": lambda: _header(h4="gw-0042\x00\x01"),
    "Partial IV empty": lambda: _header(h6=b""),
    "Partial IV not minimal": lambda: _header(h6=b"\x00\x05"),
    "Partial IV of 6 bytes": lambda: _header(h6=b"\x01" * 6),
    "Partial IV as int": lambda: _header(h6=5),
    "ciphertext nil": lambda: _with(2, None),
    "ciphertext shorter than the tag": lambda: _with(2, b"1234567"),
    "trailing byte": lambda: cose.seal(SECRET, GATEWAY, 1, 5, b"batch", TOPIC) + b"\x00",
    "truncated": lambda: cose.seal(SECRET, GATEWAY, 1, 5, b"batch", TOPIC)[:-1],
    "not CBOR": lambda: b"\xff",
    "nested too deep": lambda: cbor2.dumps(cbor2.CBORTag(16, [[[[[[b""]]]]]])),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_envelopes_raise_decode_error(name: str) -> None:
    data = MALFORMED[name]()
    with pytest.raises(DecodeError):
        cose.open_envelope(data, lookup_for(SECRET), TOPIC)
    with pytest.raises(DecodeError):
        cose.peek_envelope(data)


def test_forged_envelopes_raise_authentication_error() -> None:
    good = cose.seal(SECRET, GATEWAY, 1, 5, b"batch", TOPIC)
    lookup = lookup_for(SECRET)
    assert cose.open_envelope(good, lookup, TOPIC).plaintext == b"batch"
    forged = {
        "wrong topic": (good, "devices/gw-0043/batches"),
        "other sequence number": (_header(h6=b"\x06"), TOPIC),
        "protected re-encoded (a1 01 18 0a)": (_with(0, bytes.fromhex("a101180a")), TOPIC),
        "sealed with another secret": (cose.seal(bytes(16), GATEWAY, 1, 5, b"batch", TOPIC), TOPIC),
    }
    for name, (data, topic) in forged.items():
        with pytest.raises(AuthenticationError, match="tag does not match"):
            cose.open_envelope(data, lookup, topic)
        assert name
    with pytest.raises(AuthenticationError, match="no key for gateway gw-0042 version 2"):
        cose.open_envelope(_header(h4=GATEWAY + b"\x00\x02"), lookup, TOPIC)
    with pytest.raises(AuthenticationError, match="no key for gateway 0x00ff version 1"):
        cose.open_envelope(_header(h4=b"\x00\xff\x00\x01"), lookup, TOPIC)


def test_every_bit_of_an_envelope_is_covered() -> None:
    good = cose.seal(SECRET, GATEWAY, 1, 5, b"a batch of readings", TOPIC)
    lookup = lookup_for(SECRET)
    for bit in range(8 * len(good)):
        forged = bytearray(good)
        forged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(RemoteError):  # DecodeError or AuthenticationError, never success
            cose.open_envelope(bytes(forged), lookup, TOPIC)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_only_raise_remote_errors(data: bytes) -> None:
    with pytest.raises(RemoteError):
        cose.open_envelope(data, lookup_for(SECRET), TOPIC)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cose.seal(bytes(15), GATEWAY, 1, 0, b"", ""), "16 to 64 bytes, not 15"),
        (lambda: cose.seal(bytes(65), GATEWAY, 1, 0, b"", ""), "16 to 64 bytes, not 65"),
        (lambda: cose.seal("k" * 16, GATEWAY, 1, 0, b"", ""), "key must be bytes"),
        (lambda: cose.seal(SECRET, b"", 1, 0, b"", ""), "gateway id must be 1 to 64"),
        (lambda: cose.seal(SECRET, b"g" * 65, 1, 0, b"", ""), "gateway id must be 1 to 64"),
        (lambda: cose.seal(SECRET, 7, 1, 0, b"", ""), "gateway id must be bytes or str"),
        (lambda: cose.seal(SECRET, GATEWAY, 65536, 0, b"", ""), "key version 65536"),
        (lambda: cose.seal(SECRET, GATEWAY, -1, 0, b"", ""), "key version -1"),
        (lambda: cose.seal(SECRET, GATEWAY, True, 0, b"", ""), "key version must be an int"),
        (lambda: cose.seal(SECRET, GATEWAY, 1, -1, b"", ""), "sequence number -1"),
        (lambda: cose.seal(SECRET, GATEWAY, 1, 1 << 40, b"", ""), "out of range"),
        (lambda: cose.seal(SECRET, GATEWAY, 1, 1.0, b"", ""), "sequence number must be an int"),
        (lambda: cose.seal(SECRET, GATEWAY, 1, 0, "text", ""), "plaintext must be bytes"),
        (lambda: cose.seal(SECRET, GATEWAY, 1, 0, b"", 5), "external_aad must be bytes"),
        (lambda: cose.hkdf_sha256(b"", b"", b"", 0), "1 to 8160"),
    ],
)
def test_bad_arguments_raise_config_error(call: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


def test_a_lookup_returning_a_bad_key_is_a_local_error() -> None:
    envelope = cose.seal(SECRET, GATEWAY, 1, 0, b"", TOPIC)
    with pytest.raises(ConfigError, match="16 to 64 bytes, not 8"):
        cose.open_envelope(envelope, lambda g, v: bytes(8), TOPIC)


def test_lookup_is_asked_for_gateway_and_version() -> None:
    asked = []

    def lookup(gateway_id: bytes, version: int) -> bytes:
        asked.append((gateway_id, version))
        return SECRET

    envelope = cose.seal(SECRET, "gw-ü", 513, 9, b"x", "t/ü")
    assert cose.open_envelope(envelope, lookup, "t/ü".encode()) == ("gw-ü".encode(), 513, 9, b"x")
    assert asked == [("gw-ü".encode(), 513)]


def test_forget_key_drops_cached_derivations() -> None:
    cose.derive_key_and_iv(SECRET, GATEWAY, 1)
    cose.derive_key_and_iv(bytes(16), GATEWAY, 1)
    cose.forget_key(bytearray(SECRET))
    assert [k[0] for k in cose._derived] == [bytes(16)]


# ---- both interpreters: sealed under one, opened under the other --------------------------

SECRET_32 = bytes(range(100, 132))
CROSS_CASES = [
    [SECRET.hex(), "gw-0042", 1, 0, "", TOPIC],
    [SECRET.hex(), "gw-0042", 1, 255, "a0", TOPIC],
    [SECRET_32.hex(), "g", 0, 256, bytes(range(256)).hex() * 4, "coap://cloud/b/g"],
    [bytes(range(64)).hex(), "x" * 64, 65535, cose.MAX_SEQ, "00" * 17, ""],
    [SECRET.hex(), "gw-ü", 7, 123456789, "deadbeef", "devices/gw-ü/batches"],
]


def _cross_expected(case: list[Any]) -> list[Any]:
    _, gateway, version, seq, plaintext, _ = case
    return [gateway, version, seq, plaintext]


_MP_SEAL = """
import json, sealing_scenario as s
from bankiot_core import ccm, cose
print(ccm.BACKEND)
print(json.dumps(s.seal_all(CASES)))
print(json.dumps(s.open_all(TO_OPEN)))
h = s.unhex
for ikm, salt, info, length, okm in RFC5869:
    print(s.hexa(cose.hkdf_sha256(h(ikm), h(salt), h(info), length)) == okm)
# RFC 9052 C.4.2 from the module's parts, with the portable CCM
from bankiot_core import cbor
nonce = cose._nonce(h("89f52f65a1c58093") + bytes(5), 0x61A7)
aad = cose._enc_structure(cose.PROTECTED, b"")
sealed = ccm.ccm_encrypt(h(RFC9052_KEY), nonce, b"This is the content.", aad, 8)
header = {6: cose.partial_iv(0x61A7)}
print(s.hexa(cbor.dumps(cbor.Tag(16, [cose.PROTECTED, header, sealed]), True)))
"""


@pytest.mark.micropython
def test_envelopes_cross_between_micropython_and_cpython(micropython) -> None:
    # CPython seals with our module (cryptography backend) and with the independent
    # implementation; MicroPython must open both, and refuse the altered ones.
    to_open = []
    for case in CROSS_CASES:
        secret, gateway, version, seq, plaintext, aad = case
        args = (bytes.fromhex(secret), gateway.encode(), version, seq, bytes.fromhex(plaintext))
        ours = cose.seal(*args, aad)
        independent = ref_seal(*args, aad.encode())
        assert ours == independent
        to_open.append([ours.hex(), secret, gateway, version, aad])
    wrong_topic = [to_open[0][0], SECRET.hex(), "gw-0042", 1, "devices/gw-0043/batches"]
    truncated = [to_open[1][0][:-2], SECRET.hex(), "gw-0042", 1, TOPIC]
    wrong_version = [to_open[1][0], SECRET.hex(), "gw-0042", 2, TOPIC]
    code = "CASES = %s\nTO_OPEN = %s\nRFC5869 = %s\nRFC9052_KEY = %r\n" % (
        json.dumps(CROSS_CASES),
        json.dumps([*to_open, wrong_topic, truncated, wrong_version]),
        json.dumps(RFC5869),
        RFC9052_KEY.hex(),
    )
    run = micropython.run(
        code + _MP_SEAL, fakes=("cryptolib",), files={"/lib/sealing_scenario.py": SCENARIO_SOURCE}
    ).check()
    lines = run.stdout.splitlines()
    assert lines[0] == "cryptolib"  # the portable CCM over the AES stand-in, not OpenSSL
    sealed_there = json.loads(lines[1])
    opened_there = json.loads(lines[2])
    assert lines[3:-1] == ["True"] * len(RFC5869)
    assert lines[-1] == RFC9052_C42

    # What MicroPython sealed, CPython opens with our module and with the independent code,
    # and the bytes are the ones CPython seals for the same inputs.
    assert sealed_there == scenario.seal_all(CROSS_CASES)
    for case, envelope_hex in zip(CROSS_CASES, sealed_there, strict=True):
        secret, gateway, version, seq, plaintext, aad = case
        envelope = bytes.fromhex(envelope_hex)
        expected = (gateway.encode(), version, seq, bytes.fromhex(plaintext))
        ring = lookup_for(bytes.fromhex(secret), gateway.encode(), version)
        assert cose.open_envelope(envelope, ring, aad) == expected
        assert ref_open(envelope, bytes.fromhex(secret), aad.encode()) == expected

    expected_there = [_cross_expected(case) for case in CROSS_CASES]
    expected_there += [["AuthenticationError"], ["DecodeError"], ["AuthenticationError"]]
    assert opened_there == expected_there
