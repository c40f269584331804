"""bankiot_core.ccm: AES-CCM on both engines and both interpreters.

Known answers from RFC 3610 section 8, NIST SP 800-38C appendix C, the bthome.io encryption
example and IEEE P1619.1 (AES-256), each checked on CPython through the module API (the
``cryptography`` fast path), through the portable ``CcmCipher`` over ``cryptography``'s
AES-ECB and over the ``cryptolib`` stand-in, and again under real MicroPython. Hypothesis
compares the portable engine with ``cryptography``'s ``AESCCM`` and flips bits.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core import ccm
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError, RemoteError
from hw.fakes import cryptolib as fake_cryptolib

_RFC_KEY_1 = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
_RFC_KEY_2 = "d7828d13b2b0bdc325a76236df93cc6b"
_NIST_KEY = "404142434445464748494a4b4c4d4e4f"

# (name, key, nonce, aad, plaintext, ciphertext + tag, tag_len), all hex. The RFC's packets
# put the header (the AAD) in front of both plaintext and output; here it is split off.
VECTORS = [
    (
        "rfc3610-1",
        _RFC_KEY_1,
        "00000003020100a0a1a2a3a4a5",
        "0001020304050607",
        "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
        "588c979a61c663d2f066d0c2c0f989806d5f6b61dac38417e8d12cfdf926e0",
        8,
    ),
    (
        "rfc3610-2",
        _RFC_KEY_1,
        "00000004030201a0a1a2a3a4a5",
        "0001020304050607",
        "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3ba091d56e10400916",
        8,
    ),
    (
        "rfc3610-7",
        _RFC_KEY_1,
        "00000009080706a0a1a2a3a4a5",
        "0001020304050607",
        "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
        "0135d1b2c95f41d5d1d4fec185d166b8094e999dfed96c048c56602c97acbb7490",
        10,
    ),
    (
        "rfc3610-13",
        _RFC_KEY_2,
        "00412b4ea9cdbe3c9696766cfa",
        "0be1a88bace018b1",
        "08e8cf97d820ea258460e96ad9cf5289054d895ceac47c",
        "4cb97f86a2a4689a877947ab8091ef5386a6ffbdd080f8e78cf7cb0cddd7b3",
        8,
    ),
    (
        "rfc3610-19",
        _RFC_KEY_2,
        "0042fff8f1951c3c9696766cfa",
        "d85bc7e69f944fb8",
        "8a19b950bcf71a018e5e6701c91787659809d67dbedd18",
        "bc218daa947427b6db386a99ac1aef23ade0b52939cb6a637cf9bec2408897c6ba",
        10,
    ),
    # Derived: RFC 3610 vector #1's inputs with M = 4, sealed by cryptography 50 (AESCCM).
    # The ciphertext must equal vector #1's (CTR does not depend on M); only the tag differs.
    (
        "rfc3610-1-m4",
        _RFC_KEY_1,
        "00000003020100a0a1a2a3a4a5",
        "0001020304050607",
        "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
        "588c979a61c663d2f066d0c2c0f989806d5f6b61dac38450198bbc",
        4,
    ),
    # bthome.io encryption example: bind key, MAC 54:48:E6:8F:80:A5, 4-byte MIC, no AAD;
    # nonce = MAC + d2 fc + device info 0x41 + counter 0x00112233 as sent (little-endian).
    (
        "bthome-io",
        "231d39c1d7cc1ab1aee224cd096db932",
        "5448e68f80a5d2fc4133221100",
        "",
        "02ca0903bf13",
        "e445f3c9962b6c7c4519",
        4,
    ),
    # NIST SP 800-38C appendix C, examples 1 to 3 (example 4 is NIST_C4 below).
    (
        "sp800-38c-c1",
        _NIST_KEY,
        "10111213141516",
        "0001020304050607",
        "20212223",
        "7162015b4dac255d",
        4,
    ),
    (
        "sp800-38c-c2",
        _NIST_KEY,
        "1011121314151617",
        "000102030405060708090a0b0c0d0e0f",
        "202122232425262728292a2b2c2d2e2f",
        "d2a1f0e051ea5f62081a7792073d593d1fc64fbfaccd",
        6,
    ),
    (
        "sp800-38c-c3",
        _NIST_KEY,
        "101112131415161718191a1b",
        "000102030405060708090a0b0c0d0e0f10111213",
        "202122232425262728292a2b2c2d2e2f3031323334353637",
        "e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951",
        8,
    ),
    # IEEE P1619.1 draft D22, annex D.2.5: CCM-128-AES-256.
    (
        "p1619.1-d2.5-aes256",
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f",
        "101112131415161718191a1b",
        "000102030405060708090a0b0c0d0e0f10111213",
        "202122232425262728292a2b2c2d2e2f3031323334353637",
        "04f883aeb3bd0730eaf50bb6de4fa2212034e4e41b0e75e59bba3f3a107f3239bd63902923f80371",
        16,
    ),
]

# NIST SP 800-38C example 4: 2^16 bytes of AAD (0x00, 0x01, ... repeating), so l(a) takes
# the 0xFF 0xFE + 4-byte form.
NIST_C4 = (
    "sp800-38c-c4",
    _NIST_KEY,
    "101112131415161718191a1b1c",
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
    "69915dad1e84c6376a68c2967e4dab615ae0fd1faec44cc484828529463ccf72b4ac6bec93e8598e7f0dadbcea5b",
    14,
)
NIST_C4_AAD = bytes(i & 0xFF for i in range(1 << 16))

TAG_LENGTHS = (4, 6, 8, 10, 12, 14, 16)

Encryptor = Callable[..., bytes]


def cryptography_block(key: bytes) -> Callable[[Any, bytearray], None]:
    """An AES-ECB block-encrypt primitive from ``cryptography`` (the oracle's own AES)."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def block(src: Any, dst: bytearray) -> None:
        dst[:] = encryptor.update(bytes(src))

    return block


class ModuleApi:
    """``ccm_encrypt``/``ccm_decrypt``: on CPython, cryptography's AESCCM behind our checks."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def encrypt(self, *args: Any) -> bytes:
        return ccm.ccm_encrypt(self.key, *args)

    def decrypt(self, *args: Any) -> bytes:
        return ccm.ccm_decrypt(self.key, *args)


ENGINES: dict[str, Callable[[bytes], Any]] = {
    "module-api": ModuleApi,
    "portable-over-cryptography-ecb": lambda key: ccm.CcmCipher(cryptography_block(key)),
    "portable-over-fake-cryptolib": lambda key: ccm.CcmCipher(fake_cryptolib.aes(key, 1).encrypt),
}

keys = st.sampled_from((16, 32)).flatmap(lambda n: st.binary(min_size=n, max_size=n))
nonces = st.integers(7, 13).flatmap(lambda n: st.binary(min_size=n, max_size=n))
tag_lengths = st.sampled_from(TAG_LENGTHS)


def _unhex(vector: tuple) -> tuple[str, bytes, bytes, bytes, bytes, bytes, int]:
    name, key, nonce, aad, plain, sealed, tag_len = vector
    h = bytes.fromhex
    return name, h(key), h(nonce), h(aad), h(plain), h(sealed), tag_len


@pytest.fixture(autouse=True)
def _fresh_cache():
    ccm.clear_cache()
    yield
    ccm.clear_cache()


def test_cpython_uses_cryptography() -> None:
    assert ccm.BACKEND == "cryptography"


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("vector", VECTORS, ids=[v[0] for v in VECTORS])
def test_known_answers(engine: str, vector: tuple) -> None:
    _, key, nonce, aad, plain, sealed, tag_len = _unhex(vector)
    cipher = ENGINES[engine](key)
    assert cipher.encrypt(nonce, plain, aad, tag_len) == sealed
    assert cipher.decrypt(nonce, sealed, aad, tag_len) == plain


def test_derived_four_byte_tag_vector_shares_rfc_vector_1_ciphertext() -> None:
    by_name = {v[0]: _unhex(v) for v in VECTORS}
    full, short = by_name["rfc3610-1"], by_name["rfc3610-1-m4"]
    assert short[5][:-4] == full[5][:-8]
    assert short[5][-4:] != full[5][-8:-4]


@pytest.mark.parametrize("engine", ["module-api", "portable-over-cryptography-ecb"])
def test_nist_example_4_long_aad(engine: str) -> None:
    _, key, nonce, plain, sealed, tag_len = NIST_C4
    key, nonce, plain, sealed = (bytes.fromhex(x) for x in (key, nonce, plain, sealed))
    cipher = ENGINES[engine](key)
    assert cipher.encrypt(nonce, plain, NIST_C4_AAD, tag_len) == sealed
    assert cipher.decrypt(nonce, sealed, NIST_C4_AAD, tag_len) == plain


@pytest.mark.parametrize("aad_len", [0xFEFF, 0xFF00, 0x10000])
def test_aad_length_encoding_boundaries(aad_len: int) -> None:
    key, nonce, aad = bytes(range(16)), bytes(range(12)), bytes(aad_len)
    portable = ccm.CcmCipher(cryptography_block(key))
    assert portable.encrypt(nonce, b"x", aad, 8) == AESCCM(key, 8).encrypt(nonce, b"x", aad)


@settings(max_examples=200, deadline=None)
@given(
    key=keys,
    nonce=nonces,
    aad=st.binary(max_size=80),
    plain=st.binary(max_size=100),
    tag_len=tag_lengths,
)
def test_portable_matches_cryptography(
    key: bytes, nonce: bytes, aad: bytes, plain: bytes, tag_len: int
) -> None:
    reference = AESCCM(key, tag_len).encrypt(nonce, plain, aad)
    portable = ccm.CcmCipher(cryptography_block(key))
    assert portable.encrypt(nonce, plain, aad, tag_len) == reference
    assert portable.decrypt(nonce, reference, aad, tag_len) == plain
    assert ccm.ccm_encrypt(key, nonce, plain, aad, tag_len) == reference
    assert ccm.ccm_decrypt(key, nonce, reference, aad, tag_len) == plain


@settings(max_examples=150, deadline=None)
@given(
    key=keys,
    nonce=nonces,
    aad=st.binary(max_size=40),
    plain=st.binary(max_size=60),
    tag_len=tag_lengths,
    where=st.sampled_from(("data", "aad", "nonce", "key")),
    choice=st.data(),
)
def test_any_flipped_bit_is_rejected(
    key: bytes,
    nonce: bytes,
    aad: bytes,
    plain: bytes,
    tag_len: int,
    where: str,
    choice: st.DataObject,
) -> None:
    sealed = AESCCM(key, tag_len).encrypt(nonce, plain, aad)
    fields = {"data": sealed, "aad": aad, "nonce": nonce, "key": key}
    if not fields[where]:
        where = "data"  # empty AAD: nothing to flip there
    target = bytearray(fields[where])
    bit = choice.draw(st.integers(0, 8 * len(target) - 1), label="bit")
    target[bit // 8] ^= 1 << (bit % 8)
    fields[where] = bytes(target)
    for make in (ENGINES["module-api"], ENGINES["portable-over-cryptography-ecb"]):
        cipher = make(fields["key"])
        with pytest.raises(AuthenticationError):
            cipher.decrypt(fields["nonce"], fields["data"], fields["aad"], tag_len)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_bit_of_an_rfc_packet_is_authenticated(engine: str) -> None:
    _, key, nonce, aad, _, sealed, tag_len = _unhex(VECTORS[0])
    cipher = ENGINES[engine](key)
    for bit in range(8 * len(sealed)):
        forged = bytearray(sealed)
        forged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(AuthenticationError):
            cipher.decrypt(nonce, bytes(forged), aad, tag_len)


def test_rejected_plaintext_is_not_left_in_the_traceback() -> None:
    _, key, nonce, aad, plain, sealed, tag_len = _unhex(VECTORS[3])
    forged = sealed[:-1] + bytes([sealed[-1] ^ 0x80])
    with pytest.raises(AuthenticationError) as excinfo:
        ccm.CcmCipher(cryptography_block(key)).decrypt(nonce, forged, aad, tag_len)
    assert excinfo.value.__cause__ is None
    held = []
    tb = excinfo.tb
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith("bankiot_core/ccm.py"):
            held.extend(tb.tb_frame.f_locals.values())
        tb = tb.tb_next
    buffers = [bytes(v) for v in held if isinstance(v, bytes | bytearray | memoryview)]
    assert buffers, "expected the decrypt frame's buffers to be inspectable"
    assert not any(plain[:8] in b for b in buffers)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_malformed_sizes_raise_typed_errors(engine: str) -> None:
    cipher = ENGINES[engine](bytes(16))
    n13 = bytes(13)
    with pytest.raises(DecodeError, match="shorter than its 8-byte tag"):
        cipher.decrypt(n13, bytes(7), b"", 8)
    for nonce_len in (0, 6, 14, 16):
        with pytest.raises(ConfigError, match="nonce must be 7 to 13 bytes"):
            cipher.encrypt(bytes(nonce_len), b"data", b"", 8)
        with pytest.raises(ConfigError, match="nonce must be 7 to 13 bytes"):
            cipher.decrypt(bytes(nonce_len), bytes(12), b"", 8)
    for tag_len in (0, 2, 5, 7, 18, 8.0, None):
        with pytest.raises(ConfigError, match="tag_len"):
            cipher.encrypt(n13, b"data", b"", tag_len)
        with pytest.raises(ConfigError, match="tag_len"):
            cipher.decrypt(n13, bytes(12), b"", tag_len)
    with pytest.raises(ConfigError, match="data must be bytes"):
        cipher.encrypt(n13, "text", b"", 8)
    with pytest.raises(ConfigError, match="aad must be bytes"):
        cipher.encrypt(n13, b"data", "header", 8)
    # A 13-byte nonce leaves a 2-byte length field: at most 65535 bytes of message.
    with pytest.raises(ConfigError, match="too long for a 13-byte nonce"):
        cipher.encrypt(n13, bytes(1 << 16), b"", 4)
    with pytest.raises(DecodeError, match="too long for a 13-byte nonce"):
        cipher.decrypt(n13, bytes((1 << 16) + 4), b"", 4)
    assert issubclass(DecodeError, RemoteError)
    assert issubclass(AuthenticationError, RemoteError)


def test_longest_message_for_a_13_byte_nonce() -> None:
    key, nonce, plain = bytes(range(16)), bytes(13), bytes(range(256)) * 255 + bytes(255)
    assert len(plain) == 0xFFFF
    sealed = ccm.ccm_encrypt(key, nonce, plain, b"", 4)
    assert sealed == AESCCM(key, 4).encrypt(nonce, plain, None)
    assert ccm.CcmCipher(cryptography_block(key)).decrypt(nonce, sealed, b"", 4) == plain


@pytest.mark.parametrize("key_len", [0, 15, 24, 33])
def test_key_must_be_16_or_32_bytes(key_len: int) -> None:
    with pytest.raises(ConfigError, match="key must be 16 or 32 bytes"):
        ccm.ccm_encrypt(bytes(key_len), bytes(13), b"data")
    with pytest.raises(ConfigError, match="key must be 16 or 32 bytes"):
        ccm.ccm_decrypt(bytes(key_len), bytes(13), bytes(12))


def test_accepts_any_bytes_like_and_none_for_no_aad() -> None:
    _, key, nonce, aad, plain, sealed, tag_len = _unhex(VECTORS[6])  # bthome: no AAD
    for wrap in (bytes, bytearray, memoryview):
        for engine in ENGINES.values():
            cipher = engine(bytes(wrap(key)))
            assert cipher.decrypt(wrap(nonce), wrap(sealed), None, tag_len) == plain
            assert cipher.encrypt(wrap(nonce), wrap(plain), wrap(aad), tag_len) == sealed
        assert ccm.ccm_decrypt(wrap(key), nonce, sealed, b"", tag_len) == plain
    assert isinstance(ccm.ccm_encrypt(key, nonce, plain, b"", 4), bytes)
    assert isinstance(ccm.CcmCipher(cryptography_block(key)).encrypt(nonce, plain), bytes)


def test_per_key_ciphers_are_cached_and_bounded() -> None:
    key = bytes(range(16))
    first = ccm.cipher_for_key(key)
    assert ccm.cipher_for_key(bytearray(key)) is first
    assert ccm.cipher_for_key(bytes(range(1, 17))) is not first
    others = [bytes([i]) * 16 for i in range(2, ccm.CACHE_SIZE + 2)]
    for other in others:
        ccm.cipher_for_key(other)
    assert ccm.cipher_for_key(key) is not first  # the cache was full and emptied
    again = ccm.cipher_for_key(key)
    ccm.clear_cache()
    assert ccm.cipher_for_key(key) is not again


# ---- under real MicroPython, with the cryptolib stand-in -----------------------------------

_MP_KNOWN_ANSWERS = """
from binascii import unhexlify as h
from bankiot_core import ccm
from bankiot_core.errors import AuthenticationError

print("backend", ccm.BACKEND)

def rejected(key, nonce, data, aad, tag_len):
    try:
        ccm.ccm_decrypt(key, nonce, data, aad, tag_len)
    except AuthenticationError:
        return True
    return False

for name, key, nonce, aad, plain, sealed, tag_len in VECTORS:
    key, nonce, aad, plain, sealed = h(key), h(nonce), h(aad), h(plain), h(sealed)
    enc = ccm.ccm_encrypt(key, nonce, plain, aad, tag_len) == sealed
    dec = ccm.ccm_decrypt(key, nonce, sealed, aad, tag_len) == plain
    forged = bytearray(sealed)
    forged[len(forged) // 2] ^= 0x10
    print(name, enc, dec, rejected(key, nonce, forged, aad, tag_len))

# Every bit of the BTHome frame, and of its nonce, is authenticated.
name, key, nonce, aad, plain, sealed, tag_len = VECTORS[BTHOME]
key, nonce, sealed = h(key), h(nonce), h(sealed)
accepted = 0
for blob in ("data", "nonce"):
    for bit in range(8 * (len(sealed) if blob == "data" else len(nonce))):
        d = bytearray(sealed)
        n = bytearray(nonce)
        (d if blob == "data" else n)[bit // 8] ^= 1 << (bit % 8)
        if not rejected(key, n, d, b"", tag_len):
            accepted += 1
print("bthome forgeries accepted", accepted)

name, key, nonce, plain, sealed, tag_len = NIST_C4
aad = bytes(i & 0xFF for i in range(1 << 16))
key, nonce, plain, sealed = h(key), h(nonce), h(plain), h(sealed)
print(name, ccm.ccm_encrypt(key, nonce, plain, aad, tag_len) == sealed)
"""


@pytest.mark.micropython
def test_known_answers_under_micropython(micropython) -> None:
    bthome = next(i for i, v in enumerate(VECTORS) if v[0] == "bthome-io")
    prelude = f"VECTORS = {VECTORS!r}\nBTHOME = {bthome}\nNIST_C4 = {NIST_C4!r}\n"
    result = micropython.run(prelude + _MP_KNOWN_ANSWERS, fakes=("cryptolib",)).check()
    expected = ["backend cryptolib"]
    expected += [f"{v[0]} True True True" for v in VECTORS]
    expected += ["bthome forgeries accepted 0", "sp800-38c-c4 True"]
    assert result.stdout.splitlines() == expected


_MP_ERRORS = """
from bankiot_core import ccm

def kind(f):
    try:
        f()
    except Exception as e:
        return "%s %s" % (type(e).__name__, e)
    return "no error"

K = bytes(16)
N = bytes(13)
print(kind(lambda: ccm.ccm_decrypt(K, N, b"abc", b"", 4)))
print(kind(lambda: ccm.ccm_encrypt(K, bytes(6), b"abc")))
print(kind(lambda: ccm.ccm_encrypt(K, bytes(14), b"abc")))
print(kind(lambda: ccm.ccm_encrypt(K, N, b"abc", b"", 5)))
print(kind(lambda: ccm.ccm_encrypt(bytes(24), N, b"abc")))
print(kind(lambda: ccm.ccm_encrypt(K, N, "abc")))
print(kind(lambda: ccm.ccm_encrypt(K, N, bytes(65536))))
print(kind(lambda: ccm.ccm_decrypt(K, N, bytes(65536 + 8))))
"""


@pytest.mark.micropython
def test_errors_under_micropython_match_cpython(micropython) -> None:
    mp_lines = micropython.run(_MP_ERRORS, fakes=("cryptolib",)).check().stdout.splitlines()
    k, n = bytes(16), bytes(13)
    calls: list[Callable[[], object]] = [
        lambda: ccm.ccm_decrypt(k, n, b"abc", b"", 4),
        lambda: ccm.ccm_encrypt(k, bytes(6), b"abc"),
        lambda: ccm.ccm_encrypt(k, bytes(14), b"abc"),
        lambda: ccm.ccm_encrypt(k, n, b"abc", b"", 5),
        lambda: ccm.ccm_encrypt(bytes(24), n, b"abc"),
        lambda: ccm.ccm_encrypt(k, n, "abc"),
        lambda: ccm.ccm_encrypt(k, n, bytes(65536)),
        lambda: ccm.ccm_decrypt(k, n, bytes(65536 + 8)),
    ]
    cpython_lines = []
    for call in calls:
        with pytest.raises((ConfigError, DecodeError)) as excinfo:
            call()
        cpython_lines.append(f"{type(excinfo.value).__name__} {excinfo.value}")
    assert mp_lines == cpython_lines
    assert [line.split()[0] for line in mp_lines] == ["DecodeError"] + ["ConfigError"] * 6 + [
        "DecodeError"
    ]


_MP_SEAL = """
from binascii import hexlify, unhexlify as h
from bankiot_core import ccm

for key, nonce, aad, plain, tag_len in TO_SEAL:
    sealed = ccm.ccm_encrypt(h(key), h(nonce), h(plain), h(aad), tag_len)
    print("sealed", hexlify(sealed).decode())
for key, nonce, aad, sealed, tag_len in TO_OPEN:
    plain = ccm.ccm_decrypt(h(key), h(nonce), h(sealed), h(aad), tag_len)
    print("opened", hexlify(plain).decode())
"""


@pytest.mark.micropython
def test_sealed_under_micropython_opened_by_cryptography_and_back(micropython) -> None:
    rng = random.Random(3610)

    def blob(n: int) -> bytes:
        return bytes(rng.randrange(256) for _ in range(n))

    messages = []
    for i in range(10):
        key = blob(16 if i % 3 else 32)
        nonce = blob(7 + i % 7)
        aad = blob(rng.choice((0, 1, 13, 16, 40)))
        plain = blob(rng.choice((0, 1, 15, 16, 17, 64, 300)))
        messages.append((key, nonce, aad, plain, TAG_LENGTHS[i % len(TAG_LENGTHS)]))
    to_seal = [(k.hex(), n.hex(), a.hex(), p.hex(), t) for k, n, a, p, t in messages]
    to_open = [
        (k.hex(), n.hex(), a.hex(), AESCCM(k, t).encrypt(n, p, a).hex(), t)
        for k, n, a, p, t in messages
    ]
    prelude = f"TO_SEAL = {to_seal!r}\nTO_OPEN = {to_open!r}\n"
    lines = micropython.run(prelude + _MP_SEAL, fakes=("cryptolib",)).check().stdout.splitlines()
    sealed = [bytes.fromhex(line.split()[1]) for line in lines if line.startswith("sealed")]
    opened = [bytes.fromhex(line.split(" ")[1]) for line in lines if line.startswith("opened")]
    assert len(sealed) == len(opened) == len(messages)
    for (key, nonce, aad, plain, tag_len), box, back in zip(messages, sealed, opened, strict=True):
        assert AESCCM(key, tag_len).decrypt(nonce, box, aad) == plain
        assert back == plain


_MP_HEAP_SETUP = """
from bankiot_core import ccm

def block(src, dst):  # not AES: a primitive that allocates nothing, so only CCM is measured
    for i in range(16):
        dst[i] = src[i] ^ 0x5A

C = ccm.CcmCipher(block)
N = bytes(range(13))
SMALL = C.encrypt(N, b"abcdef", b"", 4)
LARGE = C.encrypt(N, bytes(100), b"hdr", 8)
P = C.decrypt(N, SMALL, b"", 4)
"""


@pytest.mark.micropython
def test_opening_frames_allocates_only_the_output_under_micropython(micropython) -> None:
    """Heap per opened frame: the plaintext buffer and its bytes copy, nothing per block.

    The WebAssembly port's ``gc.collect()`` frees nothing inside a run (measured: a dropped
    100 kB bytearray stays counted), so ``heap_delta`` here is what the code allocated.
    """
    frames = 50
    small = micropython.heap_delta(
        _MP_HEAP_SETUP, f"for i in range({frames}):\n    P = C.decrypt(N, SMALL, b'', 4)\n"
    )
    large = micropython.heap_delta(
        _MP_HEAP_SETUP, f"for i in range({frames}):\n    P = C.decrypt(N, LARGE, b'hdr', 8)\n"
    )
    assert small / frames <= 96, f"a 6-byte frame allocated {small / frames:.0f} bytes"
    assert large / frames <= 2 * 100 + 96, f"a 100-byte frame allocated {large / frames:.0f} bytes"
