"""The board's release checks under real MicroPython: SHA-512, Ed25519, the per-device MAC.

Known answers come from elsewhere: the RFC 8032 test vectors (section 7.1), signatures made
by ``cryptography`` (OpenSSL) over random keys and messages, CPython's ``hashlib.sha512``,
and the cloud's MAC helper (``cloud.fleet.release_mac``, on ``cryptography``'s HKDF and the
standard library's hmac). The board's code computes its side in the VM; the verdicts must
agree, including on every tampered input.
"""

from __future__ import annotations

import hashlib
import json
import random

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.fleet import release_mac
from hw.micropython_runner import MicroPythonRunner
from tests.firmware.board import FIRMWARE

# RFC 8032, section 7.1: TEST 1, 2, 3 (secret key, public key, message, signature).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
        "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
        "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]
L = 2**252 + 27742317777372353535851937790883648493

VERIFY = """
import binascii, json
from app import ed25519
out = []
for pub, msg, sig in json.loads(%r):
    u = binascii.unhexlify
    out.append(ed25519.verify(u(pub), u(msg), u(sig)))
print(json.dumps(out))
"""


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def board_verdicts(micropython: MicroPythonRunner, cases: list[tuple[bytes, bytes, bytes]]):
    data = json.dumps([[p.hex(), m.hex(), s.hex()] for p, m, s in cases])
    run = micropython.run(VERIFY % data, mounts={"/": FIRMWARE}).check()
    return json.loads(run.stdout.splitlines()[-1])


def openssl_verdict(public: bytes, message: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def test_rfc8032_vectors_verify_on_the_board(micropython: MicroPythonRunner) -> None:
    cases = []
    for secret, public, message, signature in RFC8032:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
        assert raw_public(key).hex() == public  # the vector is what cryptography makes
        assert key.sign(bytes.fromhex(message)).hex() == signature
        cases.append((bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)))
    wrong = [(p, m + b"!", s) for p, m, s in cases]
    assert board_verdicts(micropython, cases + wrong) == [True] * 3 + [False] * 3


def tampered(public: bytes, message: bytes, signature: bytes, rng: random.Random):
    """Each way a signature check must fail: a bit of R, a bit of S, the message, the key,
    S + L (the same S modulo L: malleability), and lengths."""
    r_bit = bytearray(signature)
    r_bit[rng.randrange(32)] ^= 1 << rng.randrange(8)
    s_bit = bytearray(signature)
    s_bit[32 + rng.randrange(31)] ^= 1 << rng.randrange(8)
    s_plus_l = signature[:32] + (int.from_bytes(signature[32:], "little") + L).to_bytes(
        32, "little"
    )
    other = raw_public(Ed25519PrivateKey.generate())
    message_bit = bytearray(message or b"\x00")
    message_bit[rng.randrange(len(message_bit))] ^= 1
    return [
        (public, message, bytes(r_bit)),
        (public, message, bytes(s_bit)),
        (public, message, s_plus_l),
        (public, bytes(message_bit), signature),
        (other, message, signature),
        (public, message, signature[:63]),
        (public[:31], message, signature),
    ]


def test_the_board_agrees_with_openssl_on_random_signatures(
    micropython: MicroPythonRunner,
) -> None:
    rng = random.Random(8032)
    cases = []
    for size in (0, 1, 63, 64, 127, 128, 129, 700, 3000):
        key = Ed25519PrivateKey.generate()
        message = rng.randbytes(size)
        signature = key.sign(message)
        cases.append((raw_public(key), message, signature))
        cases.extend(tampered(raw_public(key), message, signature, rng))
    # A public key that is not a point (y >= p), and one whose x cannot be recovered.
    cases.append(((2**255 - 1).to_bytes(32, "little"), b"m", cases[0][2]))
    cases.append(((2).to_bytes(32, "little"), b"m", cases[0][2]))
    expected = [openssl_verdict(p, m, s) for p, m, s in cases]
    assert expected.count(True) == 9  # the untouched ones, and only those
    assert board_verdicts(micropython, cases) == expected


def test_sha512_on_the_board_matches_hashlib(micropython: MicroPythonRunner) -> None:
    rng = random.Random(512)
    messages = [rng.randbytes(n) for n in (0, 1, 111, 112, 113, 127, 128, 129, 255, 256, 1000)]
    code = (
        "import binascii, json\nfrom app.sha512 import Sha512, sha512\nout = []\n"
        "for m in json.loads(%r):\n"
        "    m = binascii.unhexlify(m)\n"
        "    h = Sha512()\n"
        "    for i in range(0, len(m), 50):\n"
        "        h.update(m[i:i + 50])\n"
        "    out.append([binascii.hexlify(sha512(m)).decode(), "
        "binascii.hexlify(h.digest()).decode()])\n"
        "print(json.dumps(out))\n" % json.dumps([m.hex() for m in messages])
    )
    run = micropython.run(code, mounts={"/": FIRMWARE}).check()
    got = json.loads(run.stdout.splitlines()[-1])
    assert got == [[hashlib.sha512(m).hexdigest()] * 2 for m in messages]


def test_the_board_and_the_cloud_compute_the_same_release_mac(
    micropython: MicroPythonRunner,
) -> None:
    secret = bytes(range(32, 64))
    manifest = b'{"board":"esp32","files":[],"format":1}'
    cases = [("gw-board-1", 1), ("gw-board-1", 2), ("gw-board-2", 1)]
    code = (
        "import binascii, json\nfrom app import release_mac\nout = []\n"
        "for uid, version in json.loads(%r):\n"
        "    key = release_mac.mac_key(%r, uid, version)\n"
        "    out.append(binascii.hexlify(release_mac.manifest_mac(key, %r)).decode())\n"
        "print(json.dumps(out))\n" % (json.dumps(cases), secret, manifest)
    )
    run = micropython.run(code, mounts={"/": FIRMWARE}).check()
    board = json.loads(run.stdout.splitlines()[-1])
    cloud = [release_mac.manifest_mac(secret, uid, v, manifest).hex() for uid, v in cases]
    assert board == cloud
    assert len(set(cloud)) == 3  # per device and per key version
