"""hw/fakes/cryptolib.py: the pure-Python ``cryptolib`` stand-in, on CPython and MicroPython.

Known answers from FIPS-197 (Appendix B and C) and NIST SP 800-38A (F.1, F.2), agreement
with ``cryptography`` on random keys and data, and the board module's interface and errors
(micropython extmod/modcryptolib.c).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.fakes import cryptolib as fake

# (name, key, plaintext, ciphertext) for one AES block.
FIPS197_BLOCKS = [
    (
        "fips197-appendix-b",
        "2b7e151628aed2a6abf7158809cf4f3c",
        "3243f6a8885a308d313198a2e0370734",
        "3925841d02dc09fbdc118597196a0b32",
    ),
    (
        "fips197-c1-aes128",
        "000102030405060708090a0b0c0d0e0f",
        "00112233445566778899aabbccddeeff",
        "69c4e0d86a7b0430d8cdb78070b4c55a",
    ),
    (
        "fips197-c3-aes256",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "00112233445566778899aabbccddeeff",
        "8ea2b7ca516745bfeafc49904b496089",
    ),
]

SP800_38A_PLAINTEXT = (
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
SP800_38A_IV = "000102030405060708090a0b0c0d0e0f"
# (name, mode, key, ciphertext of SP800_38A_PLAINTEXT)
SP800_38A = [
    (
        "sp800-38a-f1.1-ecb-aes128",
        1,
        "2b7e151628aed2a6abf7158809cf4f3c",
        "3ad77bb40d7a3660a89ecaf32466ef97"
        "f5d3d58503b9699de785895a96fdbaaf"
        "43b1cd7f598ece23881b00e3ed030688"
        "7b0c785e27e8ad3f8223207104725dd4",
    ),
    (
        "sp800-38a-f2.1-cbc-aes128",
        2,
        "2b7e151628aed2a6abf7158809cf4f3c",
        "7649abac8119b246cee98e9b12e9197d"
        "5086cb9b507219ee95db113a917678b2"
        "73bed6b8e3c1743b7116e69e22229516"
        "3ff1caa1681fac09120eca307586e1a7",
    ),
    (
        "sp800-38a-f2.5-cbc-aes256",
        2,
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
        "f58c4c04d6e5f1ba779eabfb5f7bfbd6"
        "9cfc4e967edb808d679f777bc6702c7d"
        "39f23369a9d9bacfa530e26304231461"
        "b2eb05e2c39be9fcda6c19078c6a9d1b",
    ),
]

keys = st.sampled_from((16, 32)).flatmap(lambda n: st.binary(min_size=n, max_size=n))
blocks = st.integers(0, 4).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n))


def _make(key: bytes, mode: int, iv: bytes | None = None) -> fake.aes:
    return fake.aes(key, mode) if iv is None else fake.aes(key, mode, iv)


@pytest.mark.parametrize(("name", "key", "plain", "cipher"), FIPS197_BLOCKS)
def test_fips197_known_answers(name: str, key: str, plain: str, cipher: str) -> None:
    k = bytes.fromhex(key)
    assert fake.aes(k, 1).encrypt(bytes.fromhex(plain)).hex() == cipher
    assert fake.aes(k, 1).decrypt(bytes.fromhex(cipher)).hex() == plain


@pytest.mark.parametrize(("name", "mode", "key", "cipher"), SP800_38A)
def test_sp800_38a_known_answers(name: str, mode: int, key: str, cipher: str) -> None:
    k = bytes.fromhex(key)
    iv = bytes.fromhex(SP800_38A_IV) if mode == 2 else None
    plain = bytes.fromhex(SP800_38A_PLAINTEXT)
    assert _make(k, mode, iv).encrypt(plain).hex() == cipher
    assert _make(k, mode, iv).decrypt(bytes.fromhex(cipher)) == plain


@settings(max_examples=150, deadline=None)
@given(key=keys, data=blocks)
def test_ecb_matches_cryptography(key: bytes, data: bytes) -> None:
    reference = Cipher(algorithms.AES(key), modes.ECB())
    assert fake.aes(key, 1).encrypt(data) == reference.encryptor().update(data)
    assert fake.aes(key, 1).decrypt(data) == reference.decryptor().update(data)


@settings(max_examples=100, deadline=None)
@given(key=keys, iv=st.binary(min_size=16, max_size=16), data=blocks, split=st.integers(0, 4))
def test_cbc_matches_cryptography_and_chains_across_calls(
    key: bytes, iv: bytes, data: bytes, split: int
) -> None:
    reference = Cipher(algorithms.AES(key), modes.CBC(iv))
    cut = min(16 * split, len(data))
    encryptor = fake.aes(key, 2, iv)
    sealed = bytes(encryptor.encrypt(data[:cut])) + bytes(encryptor.encrypt(data[cut:]))
    assert sealed == reference.encryptor().update(data)
    decryptor = fake.aes(key, 2, iv)
    opened = bytes(decryptor.decrypt(sealed[:cut])) + bytes(decryptor.decrypt(sealed[cut:]))
    assert opened == data


def test_encrypt_into_an_output_buffer_and_in_place() -> None:
    key = bytes(range(16))
    plain = bytes.fromhex(SP800_38A_PLAINTEXT)
    expected = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor().update(plain)
    out = bytearray(len(plain) + 3)  # larger is allowed; the tail is left alone
    assert fake.aes(key, 2, bytes(16)).encrypt(plain, out) is out
    assert bytes(out[:64]) == expected
    assert out[64:] == bytearray(3)
    buf = bytearray(expected)
    assert fake.aes(key, 2, bytes(16)).decrypt(buf, buf) is buf  # CBC decrypt in place
    assert buf == plain
    view = memoryview(bytearray(plain))
    fake.aes(key, 1).encrypt(view, view)  # ECB in place through a memoryview
    assert bytes(view) == Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(plain)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fake.aes(bytes(15), 1), "key"),
        (lambda: fake.aes(bytes(24), 1), "key"),  # no AES-192 on the boards
        (lambda: fake.aes(bytes(33), 1), "key"),
        (lambda: fake.aes(bytes(16), 6, bytes(16)), "mode"),  # CTR is compiled out
        (lambda: fake.aes(bytes(16), 0), "mode"),
        (lambda: fake.aes(bytes(16), 2), "IV"),
        (lambda: fake.aes(bytes(16), 2, bytes(15)), "IV"),
        (lambda: fake.aes(bytes(16), 1).encrypt(bytes(15)), "blksize % 16"),
        (lambda: fake.aes(bytes(16), 1).decrypt(bytes(17)), "blksize % 16"),
        (lambda: fake.aes(bytes(16), 1).encrypt(bytes(32), bytearray(16)), "output too small"),
    ],
)
def test_errors_are_the_boards(make, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        make()
    assert str(excinfo.value) == message


def test_one_object_either_encrypts_or_decrypts() -> None:
    enc = fake.aes(bytes(16), 1)
    enc.encrypt(bytes(16))
    with pytest.raises(ValueError, match="can't encrypt & decrypt"):
        enc.decrypt(bytes(16))
    dec = fake.aes(bytes(16), 1)
    dec.decrypt(bytes(16))
    with pytest.raises(ValueError, match="can't encrypt & decrypt"):
        dec.encrypt(bytes(16))


def test_non_buffer_arguments_raise_type_error() -> None:
    with pytest.raises(TypeError):
        fake.aes(16, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fake.aes(bytes(16), 1).encrypt([0] * 16)  # type: ignore[arg-type]


_MICROPYTHON_SCRIPT = """
from binascii import hexlify, unhexlify
import cryptolib

for name, key, plain, cipher in FIPS197:
    enc = hexlify(cryptolib.aes(unhexlify(key), 1).encrypt(unhexlify(plain))).decode()
    dec = hexlify(cryptolib.aes(unhexlify(key), 1).decrypt(unhexlify(cipher))).decode()
    print(name, enc == cipher, dec == plain)

for name, mode, key, cipher in SP800_38A:
    args = (unhexlify(key), mode, unhexlify(IV)) if mode == 2 else (unhexlify(key), mode)
    out = bytearray(64)
    cryptolib.aes(*args).encrypt(unhexlify(PLAIN), out)
    buf = bytearray(unhexlify(cipher))
    cryptolib.aes(*args).decrypt(buf, buf)
    print(name, hexlify(out).decode() == cipher, hexlify(buf).decode() == PLAIN)

def error(f):
    try:
        f()
    except ValueError as e:
        return "ValueError:" + str(e)
    return "no error"

print("key24", error(lambda: cryptolib.aes(bytes(24), 1)))
print("mode6", error(lambda: cryptolib.aes(bytes(16), 6, bytes(16))))
print("noiv", error(lambda: cryptolib.aes(bytes(16), 2)))
print("blksize", error(lambda: cryptolib.aes(bytes(16), 1).encrypt(bytes(20))))
a = cryptolib.aes(bytes(16), 1)
a.encrypt(bytes(16))
print("both", error(lambda: a.decrypt(bytes(16))))
"""


@pytest.mark.micropython
def test_known_answers_and_errors_under_micropython(micropython) -> None:
    prelude = f"FIPS197 = {FIPS197_BLOCKS!r}\nSP800_38A = {SP800_38A!r}\n"
    prelude += f"IV = {SP800_38A_IV!r}\nPLAIN = {SP800_38A_PLAINTEXT!r}\n"
    result = micropython.run(prelude + _MICROPYTHON_SCRIPT, fakes=("cryptolib",)).check()
    expected = [f"{name} True True" for name, *_ in FIPS197_BLOCKS + SP800_38A]
    expected += [
        "key24 ValueError:key",
        "mode6 ValueError:mode",
        "noiv ValueError:IV",
        "blksize ValueError:blksize % 16",
        "both ValueError:can't encrypt & decrypt",
    ]
    assert result.stdout.splitlines() == expected
