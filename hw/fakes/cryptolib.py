"""A pure-Python stand-in for MicroPython's ``cryptolib`` module: for tests only.

The MicroPython WebAssembly port the tests run has no ``cryptolib``; ESP32 and rp2 boards
have it (mbedTLS or axTLS underneath). The test runner installs this file as
``/lib/cryptolib.py`` (``micropython.run(code, fakes=("cryptolib",))``), so core code written
for the board module runs unchanged under real MicroPython. It also imports on CPython, where
the tests check it against ``cryptography`` and the FIPS-197 answers.

Never ship it to a device: it is slow, and its table lookups are indexed by secret bytes, so
it is not constant-time.

The interface is the board's (micropython ``extmod/modcryptolib.c``), errors included:

- ``aes(key, mode[, iv])``: ``key`` 16 or 32 bytes (AES-128 or AES-256) else
  ``ValueError("key")``; ``mode`` 1 (ECB) or 2 (CBC) else ``ValueError("mode")`` (CTR, mode
  6, is compiled out on the boards); CBC needs a 16-byte ``iv``, else ``ValueError("IV")``.
- ``encrypt(data[, out])`` / ``decrypt(data[, out])``: ``data`` a multiple of 16 bytes, else
  ``ValueError("blksize % 16")``; returns new bytes, or fills ``out`` (which may be ``data``
  itself) and returns it. CBC chains across calls. One object either encrypts or decrypts:
  the first call fixes which, and the other raises ``ValueError("can't encrypt & decrypt")``.

Written from FIPS-197: the S-box from the multiplicative inverse in GF(2^8) and the affine
map (5.1.1), the key expansion (5.2) and the equivalent inverse cipher (5.3.5). Every round
is table-driven: SubBytes, ShiftRows and MixColumns together become four lookups per state
column half. The state is eight 16-bit column halves, so every intermediate is a small int
on MicroPython too (32-bit words would be heap-allocated big ints there).
"""

MODE_ECB = 1
MODE_CBC = 2


def _xtime(a):
    """Multiply ``a`` by x (0x02) in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (FIPS-197 4.2.1)."""
    a <<= 1
    if a & 0x100:
        a ^= 0x11B
    return a


def _gmul(a, b):
    """Multiply two bytes in GF(2^8) (FIPS-197 4.2)."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = _xtime(a)
        b >>= 1
    return r


def _make_sboxes():
    """S-box and inverse S-box (FIPS-197 5.1.1 and 5.3.2), from first principles."""
    # Powers of the generator 0x03 enumerate the 255 non-zero field elements.
    exp = [0] * 255
    log = [0] * 256
    p = 1
    for i in range(255):
        exp[i] = p
        log[p] = i
        p ^= _xtime(p)
    sbox = [0] * 256
    inv = [0] * 256
    for x in range(256):
        b = exp[(255 - log[x]) % 255] if x else 0
        # Affine map: b_i ^ b_(i+4) ^ b_(i+5) ^ b_(i+6) ^ b_(i+7) ^ c_i, c = 0x63.
        s = b
        for _ in range(4):
            b = ((b << 1) | (b >> 7)) & 0xFF
            s ^= b
        s ^= 0x63
        sbox[x] = s
        inv[s] = x
    return sbox, inv


_SBOX, _INV_SBOX = _make_sboxes()

# MixColumns (FIPS-197 5.1.3) and InvMixColumns (5.3.3): column j of each matrix says how
# input row j feeds output rows 0..3.
_MIX = ((2, 1, 1, 3), (3, 2, 1, 1), (1, 3, 2, 1), (1, 1, 3, 2))
_INV_MIX = ((14, 9, 13, 11), (11, 14, 9, 13), (13, 11, 14, 9), (9, 13, 11, 14))


def _round_tables(box, mix):
    """Tables H0..H3, L0..L3: for input row j and byte x, the contribution of box[x] to
    output rows 0-1 (H, as a 16-bit half) and rows 2-3 (L)."""
    products = {}  # coefficient -> its products with every box value
    for column in mix:
        for m in column:
            if m not in products:
                products[m] = [_gmul(box[x], m) for x in range(256)]
    highs = []
    lows = []
    for m0, m1, m2, m3 in mix:
        p0, p1, p2, p3 = products[m0], products[m1], products[m2], products[m3]
        highs.append(tuple((p0[x] << 8) | p1[x] for x in range(256)))
        lows.append(tuple((p2[x] << 8) | p3[x] for x in range(256)))
    return tuple(highs) + tuple(lows)


# Encryption: H0 H1 H2 H3 L0 L1 L2 L3, then the S-box shifted into the high byte and as is
# (the last round has no MixColumns). Decryption likewise with the inverse S-box. Tuples are
# concatenated because MicroPython rejects starred items in displays (``(*a, b)``).
_ENC_TABLES = _round_tables(_SBOX, _MIX) + (  # noqa: RUF005
    tuple(s << 8 for s in _SBOX),
    tuple(_SBOX),
)
_DEC_TABLES = _round_tables(_INV_SBOX, _INV_MIX) + (  # noqa: RUF005
    tuple(s << 8 for s in _INV_SBOX),
    tuple(_INV_SBOX),
)


def _expand_key(key):
    """Round keys (FIPS-197 5.2) as a list of Nr + 1 lists of 16 bytes."""
    nk = len(key) // 4
    nr = nk + 6
    sbox = _SBOX
    words = [[key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]] for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (nr + 1)):
        t = words[i - 1]
        if i % nk == 0:
            t = [sbox[t[1]] ^ rcon, sbox[t[2]], sbox[t[3]], sbox[t[0]]]
            rcon = _xtime(rcon)
        elif nk > 6 and i % nk == 4:
            t = [sbox[t[0]], sbox[t[1]], sbox[t[2]], sbox[t[3]]]
        w = words[i - nk]
        words.append([w[0] ^ t[0], w[1] ^ t[1], w[2] ^ t[2], w[3] ^ t[3]])
    return [
        words[4 * r] + words[4 * r + 1] + words[4 * r + 2] + words[4 * r + 3] for r in range(nr + 1)
    ]


def _inv_mix_columns(rk):
    """InvMixColumns of one 16-byte round key (for the equivalent inverse cipher)."""
    out = []
    for c in range(4):
        col = rk[4 * c : 4 * c + 4]
        for row in range(4):
            v = 0
            for j in range(4):
                v ^= _gmul(col[j], _INV_MIX[j][row])
            out.append(v)
    return out


def _halves(rk):
    """A 16-byte round key as eight 16-bit column halves: (h0, l0, h1, l1, h2, l2, h3, l3)."""
    return tuple((rk[2 * i] << 8) | rk[2 * i + 1] for i in range(8))


def _schedule(key, decrypt):
    """(first, middle rounds, last) round keys as half-word tuples for one direction."""
    rks = _expand_key(key)
    nr = len(rks) - 1
    if decrypt:
        rks = [rks[nr]] + [_inv_mix_columns(rks[nr - r]) for r in range(1, nr)] + [rks[0]]
    halves = [_halves(rk) for rk in rks]
    return halves[0], tuple(halves[1:nr]), halves[nr]


def _encrypt_block(schedule, src, si, dst, di):
    """Encrypt the 16 bytes of ``src`` at ``si`` into ``dst`` at ``di`` (may overlap)."""
    h0t, h1t, h2t, h3t, l0t, l1t, l2t, l3t, shi, slo = _ENC_TABLES
    first, middle, last = schedule
    h0 = ((src[si] << 8) | src[si + 1]) ^ first[0]
    l0 = ((src[si + 2] << 8) | src[si + 3]) ^ first[1]
    h1 = ((src[si + 4] << 8) | src[si + 5]) ^ first[2]
    l1 = ((src[si + 6] << 8) | src[si + 7]) ^ first[3]
    h2 = ((src[si + 8] << 8) | src[si + 9]) ^ first[4]
    l2 = ((src[si + 10] << 8) | src[si + 11]) ^ first[5]
    h3 = ((src[si + 12] << 8) | src[si + 13]) ^ first[6]
    l3 = ((src[si + 14] << 8) | src[si + 15]) ^ first[7]
    for k0, k1, k2, k3, k4, k5, k6, k7 in middle:
        # Rows 0..3 of each column; ShiftRows takes row r from column c + r.
        a0 = h0 >> 8
        b0 = h0 & 0xFF
        c0 = l0 >> 8
        d0 = l0 & 0xFF
        a1 = h1 >> 8
        b1 = h1 & 0xFF
        c1 = l1 >> 8
        d1 = l1 & 0xFF
        a2 = h2 >> 8
        b2 = h2 & 0xFF
        c2 = l2 >> 8
        d2 = l2 & 0xFF
        a3 = h3 >> 8
        b3 = h3 & 0xFF
        c3 = l3 >> 8
        d3 = l3 & 0xFF
        h0 = h0t[a0] ^ h1t[b1] ^ h2t[c2] ^ h3t[d3] ^ k0
        l0 = l0t[a0] ^ l1t[b1] ^ l2t[c2] ^ l3t[d3] ^ k1
        h1 = h0t[a1] ^ h1t[b2] ^ h2t[c3] ^ h3t[d0] ^ k2
        l1 = l0t[a1] ^ l1t[b2] ^ l2t[c3] ^ l3t[d0] ^ k3
        h2 = h0t[a2] ^ h1t[b3] ^ h2t[c0] ^ h3t[d1] ^ k4
        l2 = l0t[a2] ^ l1t[b3] ^ l2t[c0] ^ l3t[d1] ^ k5
        h3 = h0t[a3] ^ h1t[b0] ^ h2t[c1] ^ h3t[d2] ^ k6
        l3 = l0t[a3] ^ l1t[b0] ^ l2t[c1] ^ l3t[d2] ^ k7
    _last_round(h0, l0, h1, l1, h2, l2, h3, l3, last, shi, slo, 1, dst, di)


def _decrypt_block(schedule, src, si, dst, di):
    """Decrypt the 16 bytes of ``src`` at ``si`` into ``dst`` at ``di`` (may overlap)."""
    h0t, h1t, h2t, h3t, l0t, l1t, l2t, l3t, shi, slo = _DEC_TABLES
    first, middle, last = schedule
    h0 = ((src[si] << 8) | src[si + 1]) ^ first[0]
    l0 = ((src[si + 2] << 8) | src[si + 3]) ^ first[1]
    h1 = ((src[si + 4] << 8) | src[si + 5]) ^ first[2]
    l1 = ((src[si + 6] << 8) | src[si + 7]) ^ first[3]
    h2 = ((src[si + 8] << 8) | src[si + 9]) ^ first[4]
    l2 = ((src[si + 10] << 8) | src[si + 11]) ^ first[5]
    h3 = ((src[si + 12] << 8) | src[si + 13]) ^ first[6]
    l3 = ((src[si + 14] << 8) | src[si + 15]) ^ first[7]
    for k0, k1, k2, k3, k4, k5, k6, k7 in middle:
        # InvShiftRows takes row r from column c - r.
        a0 = h0 >> 8
        b0 = h0 & 0xFF
        c0 = l0 >> 8
        d0 = l0 & 0xFF
        a1 = h1 >> 8
        b1 = h1 & 0xFF
        c1 = l1 >> 8
        d1 = l1 & 0xFF
        a2 = h2 >> 8
        b2 = h2 & 0xFF
        c2 = l2 >> 8
        d2 = l2 & 0xFF
        a3 = h3 >> 8
        b3 = h3 & 0xFF
        c3 = l3 >> 8
        d3 = l3 & 0xFF
        h0 = h0t[a0] ^ h1t[b3] ^ h2t[c2] ^ h3t[d1] ^ k0
        l0 = l0t[a0] ^ l1t[b3] ^ l2t[c2] ^ l3t[d1] ^ k1
        h1 = h0t[a1] ^ h1t[b0] ^ h2t[c3] ^ h3t[d2] ^ k2
        l1 = l0t[a1] ^ l1t[b0] ^ l2t[c3] ^ l3t[d2] ^ k3
        h2 = h0t[a2] ^ h1t[b1] ^ h2t[c0] ^ h3t[d3] ^ k4
        l2 = l0t[a2] ^ l1t[b1] ^ l2t[c0] ^ l3t[d3] ^ k5
        h3 = h0t[a3] ^ h1t[b2] ^ h2t[c1] ^ h3t[d0] ^ k6
        l3 = l0t[a3] ^ l1t[b2] ^ l2t[c1] ^ l3t[d0] ^ k7
    _last_round(h0, l0, h1, l1, h2, l2, h3, l3, last, shi, slo, 3, dst, di)


def _last_round(h0, l0, h1, l1, h2, l2, h3, l3, key, shi, slo, shift, dst, di):
    """(Inv)SubBytes, (Inv)ShiftRows and AddRoundKey, written out to ``dst`` at ``di``.

    ``shift`` is 1 for ShiftRows (row r from column c + r) and 3 for InvShiftRows (c - r).
    """
    hs = (h0, h1, h2, h3)
    ls = (l0, l1, l2, l3)
    for c in range(4):
        h = (shi[hs[c] >> 8] | slo[hs[(c + shift) & 3] & 0xFF]) ^ key[2 * c]
        low = (shi[ls[(c + 2) & 3] >> 8] | slo[ls[(c + 3 * shift) & 3] & 0xFF]) ^ key[2 * c + 1]
        o = di + 4 * c
        dst[o] = h >> 8
        dst[o + 1] = h & 0xFF
        dst[o + 2] = low >> 8
        dst[o + 3] = low & 0xFF


def _buffer(obj):
    """The bytes behind a buffer-protocol argument, as the C module reads them."""
    if isinstance(obj, str):
        return obj.encode()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return obj
    raise TypeError("object with buffer protocol required")


class aes:  # the board module's name, lower case
    """AES in ECB (mode 1) or CBC (mode 2) with a 16- or 32-byte key, like the board's."""

    def __init__(self, key, mode, iv=None):
        if mode != MODE_ECB and mode != MODE_CBC:
            raise ValueError("mode")
        key = _buffer(key)
        if len(key) != 16 and len(key) != 32:
            raise ValueError("key")
        if iv is not None:
            iv = _buffer(iv)
            if len(iv) != 16:
                raise ValueError("IV")
        elif mode == MODE_CBC:
            raise ValueError("IV")
        self._mode = mode
        self._key = bytes(key)
        self._iv = bytearray(iv) if iv is not None else None
        self._direction = 0  # 0 until first use, then 1 encrypt or 2 decrypt
        self._schedule = None

    def encrypt(self, data, out=None):
        """Encrypt ``data`` (a multiple of 16 bytes); return new bytes or fill ``out``."""
        return self._process(data, out, 1)

    def decrypt(self, data, out=None):
        """Decrypt ``data`` (a multiple of 16 bytes); return new bytes or fill ``out``."""
        return self._process(data, out, 2)

    def _process(self, data, out, direction):
        data = _buffer(data)
        n = len(data)
        if n % 16:
            raise ValueError("blksize % 16")
        if out is None:
            target = bytearray(n)
        else:
            if not isinstance(out, (bytearray, memoryview)):
                raise TypeError("object with buffer protocol required")
            if len(out) < n:
                raise ValueError("output too small")
            target = out
        if self._direction == 0:
            self._schedule = _schedule(self._key, direction == 2)
            self._direction = direction
        elif self._direction != direction:
            raise ValueError("can't encrypt & decrypt")
        schedule = self._schedule
        if self._mode == MODE_ECB:
            block = _encrypt_block if direction == 1 else _decrypt_block
            for i in range(0, n, 16):
                block(schedule, data, i, target, i)
        elif direction == 1:
            self._cbc_encrypt(schedule, data, target, n)
        else:
            self._cbc_decrypt(schedule, data, target, n)
        return target if out is not None else bytes(target)

    def _cbc_encrypt(self, schedule, data, target, n):
        iv = self._iv
        assert iv is not None
        for i in range(0, n, 16):
            for j in range(16):
                iv[j] ^= data[i + j]
            _encrypt_block(schedule, iv, 0, target, i)
            for j in range(16):
                iv[j] = target[i + j]

    def _cbc_decrypt(self, schedule, data, target, n):
        iv = self._iv
        assert iv is not None
        saved = bytearray(16)
        for i in range(0, n, 16):
            for j in range(16):
                saved[j] = data[i + j]  # ``data`` may be ``target``
            _decrypt_block(schedule, saved, 0, target, i)
            for j in range(16):
                target[i + j] ^= iv[j]
                iv[j] = saved[j]
