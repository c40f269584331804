"""Ed25519 signature verification (RFC 8032, section 5.1.7) in plain MicroPython.

Only verification: a board checks that a release manifest was signed by a trusted release
key (``provisioning.release_signing`` signs with ``cryptography``). It is the check
OpenSSL makes, which is what signed the releases and what the Raspberry Pi gateway uses:

- the public key ``A`` and the signature ``R || S`` are 32 and 64 bytes; ``A`` must decode
  to a curve point (its y below p, x recoverable, no "negative zero");
- ``S`` must be below the group order L (no malleable signatures);
- ``k = SHA-512(R || A || M) mod L``, and ``[S]B - [k]A`` must *encode* to exactly the 32
  bytes ``R`` (so a non-canonical ``R`` never matches); no cofactor multiplication.

Points are in extended twisted-Edwards coordinates (X, Y, Z, T) with the unified addition
of Hisil et al. (complete for edwards25519, so the identity needs no special case);
``[S]B - [k]A`` is one double-and-add pass over both scalars (Straus): 253 doublings and
about 190 additions of 255-bit numbers. Nothing here is secret (public key, signature,
message), so nothing needs to run in constant time.

``verify(public_key, message, signature)`` returns True or False. ``verify_steps`` is the
same check cut into pieces: a generator that yields None after each piece (a few SHA-512
blocks, or 16 bits of the scalars) and finally yields the result, so the board's loop can
feed its watchdog and keep its radio and uplink turning meanwhile (``app.updates``).
Checked against ``cryptography`` with the RFC 8032 test vectors and random keys in
``tests/firmware/test_release_crypto.py``; timed by ``bench/firmware_signature.py``.
"""

from app.sha512 import Sha512

P = (1 << 255) - 19
L = (1 << 252) + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, P - 2, P) % P
_D2 = 2 * _D % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_B = (_BX, _BY, 1, _BX * _BY % P)
_IDENTITY = (0, 1, 1, 0)
_HASH_PIECE = 512  # message bytes hashed per step (4 SHA-512 blocks)
_BITS_PER_STEP = 16


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * _D2 * t2 % P
    d = 2 * z1 * z2 % P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _double(p):
    x1, y1, z1, _ = p
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    s = x1 + y1
    e = h - s * s
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _encode(p):
    x, y, z, _ = p
    zi = pow(z, P - 2, P)
    x = x * zi % P
    y = y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def decode_point(data):
    """The point encoded in 32 bytes ``data`` (extended coordinates), or None if it is not
    a valid encoding (RFC 8032, section 5.1.3)."""
    if len(data) != 32:
        return None
    value = int.from_bytes(bytes(data), "little")
    sign = value >> 255
    y = value & ((1 << 255) - 1)
    if y >= P:
        return None
    yy = y * y % P
    x2 = (yy - 1) * pow(_D * yy + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * _SQRT_M1 % P
        if (x * x - x2) % P:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def verify_steps(public_key, message, signature):
    """``verify`` cut into pieces: yields None after each piece, then the result (True or
    False) as its last value (module docstring)."""
    public_key = bytes(public_key)
    signature = bytes(signature)
    if len(public_key) != 32 or len(signature) != 64:
        yield False
        return
    a = decode_point(public_key)
    s = int.from_bytes(signature[32:], "little")
    if a is None or s >= L:
        yield False
        return
    digest = Sha512(signature[:32] + public_key)
    message = memoryview(message)
    for start in range(0, len(message), _HASH_PIECE):
        digest.update(message[start : start + _HASH_PIECE])
        yield None
    k = int.from_bytes(digest.digest(), "little") % L
    minus_a = ((P - a[0]) % P, a[1], a[2], (P - a[3]) % P)
    table = (None, _B, minus_a, _add(_B, minus_a))
    q = _IDENTITY
    for i in range(252, -1, -1):  # S and k are below L < 2**253
        q = _double(q)
        pick = ((s >> i) & 1) | (((k >> i) & 1) << 1)
        if pick:
            q = _add(q, table[pick])
        if i % _BITS_PER_STEP == 0:
            yield None
    yield _encode(q) == signature[:32]


def verify(public_key, message, signature):
    """True if ``signature`` (64 bytes) is a valid Ed25519 signature of ``message`` by
    ``public_key`` (32 bytes), as RFC 8032 and OpenSSL define it (module docstring)."""
    result = False
    for step in verify_steps(public_key, message, signature):
        result = step
    return result is True
