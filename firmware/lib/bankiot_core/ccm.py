"""AES-CCM (RFC 3610, NIST SP 800-38C): sealed batches, encrypted BTHome, COSE envelopes.

One interface, two engines:

- CPython with ``cryptography`` importable (gateway on a Raspberry Pi, the cloud): its
  ``AESCCM`` (OpenSSL), the fast path.
- Otherwise (the ESP32 and Pico W firmware): ``CcmCipher``, CCM written here on top of
  ``cryptolib.aes(key, 1)``, the AES-ECB block the boards offer (they have no CCM, GCM or,
  by default, CTR). Tests run it under real MicroPython with a stand-in ``cryptolib`` and on
  CPython over ``cryptography``'s AES-ECB, and compare it with ``AESCCM``.

``BACKEND`` says which engine ``ccm_encrypt`` and ``ccm_decrypt`` use: ``"cryptography"``,
``"cryptolib"`` or ``None`` (neither is present; every call raises ``ConfigError``).

Both engines check their arguments here first, so the errors are the same under either
interpreter:

- ``ConfigError``: key not 16 or 32 bytes (the sizes ``cryptolib`` takes), nonce not 7..13
  bytes, ``tag_len`` not one of 4, 6, ..., 16, an argument that is not bytes-like, or a
  plaintext too long for the nonce (CCM's length field has 15 - len(nonce) bytes).
- ``DecodeError``: received data shorter than its tag, or too long for the nonce.
- ``AuthenticationError``: the tag does not match (wrong key or nonce, or altered data). No
  plaintext is released: the buffer it was decrypted into is zeroed before raising, and the
  tag is compared in constant time.

Per-key cipher objects are cached (``cipher_for_key``): a BTHome bind key or a gateway key
opens many frames, and on a board this keeps the AES key schedule and the three 16-byte
working buffers instead of rebuilding them per frame. The cache holds at most
``CACHE_SIZE`` keys and is emptied when full; ``clear_cache()`` forgets every key (call it
after a key rotation).
"""

from bankiot_core._compat import const
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError

try:
    from cryptography.exceptions import InvalidTag as _InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM as _AESCCM

    _cryptolib = None
    BACKEND = "cryptography"
except ImportError:  # MicroPython, or CPython without cryptography
    _AESCCM = None
    _InvalidTag = None
    try:
        import cryptolib as _cryptolib  # type: ignore[import-not-found]  # MicroPython boards

        BACKEND = "cryptolib"
    except ImportError:
        _cryptolib = None
        BACKEND = None

CACHE_SIZE = const(8)
_ECB = const(1)  # cryptolib's mode number for AES-ECB
_TAG_LENGTHS = (4, 6, 8, 10, 12, 14, 16)
_BYTES_LIKE = (bytes, bytearray, memoryview)  # built once: a tuple display allocates per call

_ciphers = {}


def _check_bytes(name, value):
    if not isinstance(value, _BYTES_LIKE):
        raise ConfigError(
            "%s must be bytes, bytearray or memoryview, not %s" % (name, type(value).__name__)
        )


def _check_key(key):
    """Return ``key`` as bytes (a cache key), or raise ConfigError."""
    _check_bytes("key", key)
    if len(key) != 16 and len(key) != 32:
        raise ConfigError("AES-CCM key must be 16 or 32 bytes, not %d" % len(key))
    return bytes(key)


def _check_params(nonce, data, aad, tag_len):
    """Check the per-message arguments; return L, the size of CCM's length field."""
    _check_bytes("nonce", nonce)
    _check_bytes("data", data)
    _check_bytes("aad", aad)
    if not 7 <= len(nonce) <= 13:
        raise ConfigError("AES-CCM nonce must be 7 to 13 bytes, not %d" % len(nonce))
    if not isinstance(tag_len, int) or tag_len not in _TAG_LENGTHS:
        raise ConfigError("AES-CCM tag_len must be 4, 6, 8, 10, 12, 14 or 16, not %r" % (tag_len,))
    return 15 - len(nonce)


def _check_encrypt(nonce, plaintext, aad, tag_len):
    size = _check_params(nonce, plaintext, aad, tag_len)
    if len(plaintext) >> (8 * size):
        raise ConfigError(
            "plaintext of %d bytes is too long for a %d-byte nonce" % (len(plaintext), len(nonce))
        )
    return size


def _check_decrypt(nonce, data, aad, tag_len):
    size = _check_params(nonce, data, aad, tag_len)
    if len(data) < tag_len:
        raise DecodeError(
            "AES-CCM data of %d bytes is shorter than its %d-byte tag" % (len(data), tag_len)
        )
    if (len(data) - tag_len) >> (8 * size):
        raise DecodeError(
            "AES-CCM data of %d bytes is too long for a %d-byte nonce" % (len(data), len(nonce))
        )
    return size


class CcmCipher:
    """AES-CCM over an AES block-encrypt primitive: the portable implementation.

    ``block_encrypt(src, dst)`` encrypts the 16 bytes of ``src`` with the key into the
    16-byte bytearray ``dst``; ``src`` may be ``dst`` itself. On a board that is
    ``cryptolib.aes(key, 1).encrypt``. The key lives in the primitive; this object holds
    three 16-byte working buffers allocated once, so each message costs only its output.

    Not re-entrant: tasks of one asyncio loop may share an instance (calls never yield),
    threads may not.
    """

    def __init__(self, block_encrypt):
        self._block = block_encrypt
        self._mac = bytearray(16)  # CBC-MAC state X_i
        self._ctr = bytearray(16)  # counter block A_i
        self._pad = bytearray(16)  # key stream block S_i

    def encrypt(self, nonce, plaintext, aad=b"", tag_len=8):
        """Return ciphertext followed by the ``tag_len``-byte tag."""
        if aad is None:
            aad = b""
        size = _check_encrypt(nonce, plaintext, aad, tag_len)
        n = len(plaintext)
        out = bytearray(n + tag_len)
        self._start(nonce, n, aad, tag_len, size)
        self._crypt(plaintext, out, n, True)
        self._finish(size)
        mac = self._mac
        pad = self._pad
        for k in range(tag_len):
            out[n + k] = mac[k] ^ pad[k]
        return bytes(out)

    def decrypt(self, nonce, data, aad=b"", tag_len=8):
        """Return the plaintext of ``data`` (ciphertext + tag) or raise AuthenticationError."""
        if aad is None:
            aad = b""
        size = _check_decrypt(nonce, data, aad, tag_len)
        n = len(data) - tag_len
        out = bytearray(n)
        self._start(nonce, n, aad, tag_len, size)
        self._crypt(data, out, n, False)
        self._finish(size)
        mac = self._mac
        pad = self._pad
        diff = 0
        for k in range(tag_len):  # constant time: no early exit
            diff |= mac[k] ^ pad[k] ^ data[n + k]
        if diff:
            for j in range(n):
                out[j] = 0
            for k in range(16):
                mac[k] = 0
                pad[k] = 0
            raise AuthenticationError(
                "AES-CCM tag does not match: wrong key or nonce, or altered data"
            )
        return bytes(out)

    def _start(self, nonce, n, aad, tag_len, size):
        """Set up A_0 and run the CBC-MAC over B_0 and the associated data (RFC 3610 2.2)."""
        block = self._block
        mac = self._mac
        ctr = self._ctr
        la = len(aad)
        mac[0] = (0x40 if la else 0) | (((tag_len - 2) >> 1) << 3) | (size - 1)
        ctr[0] = size - 1
        for i in range(len(nonce)):
            mac[1 + i] = nonce[i]
            ctr[1 + i] = nonce[i]
        for i in range(15, 15 - size, -1):
            mac[i] = n & 0xFF
            n >>= 8
            ctr[i] = 0
        block(mac, mac)
        if not la:
            return
        # l(a) as 2 bytes, or 0xFF 0xFE and 4 bytes, or 0xFF 0xFF and 8 bytes (RFC 3610 2.2).
        if la < 0xFF00:
            width = 2
            pos = 0
        elif not la >> 32:
            width = 4
            mac[0] ^= 0xFF
            mac[1] ^= 0xFE
            pos = 2
        else:
            width = 8
            mac[0] ^= 0xFF
            mac[1] ^= 0xFF
            pos = 2
        for shift in range(8 * (width - 1), -8, -8):
            mac[pos] ^= (la >> shift) & 0xFF
            pos += 1
        for b in aad:
            mac[pos] ^= b
            pos += 1
            if pos == 16:
                block(mac, mac)
                pos = 0
        if pos:
            block(mac, mac)  # the rest of the block is zero padding

    def _crypt(self, src, out, n, encrypting):
        """CTR-encrypt ``src[:n]`` into ``out`` and CBC-MAC the plaintext, block by block."""
        block = self._block
        mac = self._mac
        ctr = self._ctr
        pad = self._pad
        low = 15 - ctr[0]  # first byte of the counter field
        i = 0
        while i < n:
            j = 15
            ctr[j] = (ctr[j] + 1) & 0xFF
            while not ctr[j] and j > low:  # carry
                j -= 1
                ctr[j] = (ctr[j] + 1) & 0xFF
            block(ctr, pad)
            end = i + 16 if i + 16 < n else n
            if encrypting:
                for j in range(i, end):
                    b = src[j]
                    out[j] = b ^ pad[j - i]
                    mac[j - i] ^= b
            else:
                for j in range(i, end):
                    b = src[j] ^ pad[j - i]
                    out[j] = b
                    mac[j - i] ^= b
            block(mac, mac)  # a short last block is zero padded
            i = end

    def _finish(self, size):
        """Leave S_0 (the key stream for the tag) in the pad; the tag T is in the MAC."""
        ctr = self._ctr
        for i in range(16 - size, 16):
            ctr[i] = 0
        self._block(ctr, self._pad)


class _CryptographyCcm:
    """``cryptography``'s AESCCM behind the ``CcmCipher`` interface (CPython fast path)."""

    def __init__(self, key):
        self._key = key
        self._by_tag_len = {}

    def _aead(self, tag_len):
        aead = self._by_tag_len.get(tag_len)
        if aead is None:
            assert _AESCCM is not None
            aead = _AESCCM(self._key, tag_len)
            self._by_tag_len[tag_len] = aead
        return aead

    def encrypt(self, nonce, plaintext, aad=b"", tag_len=8):
        """Return ciphertext followed by the ``tag_len``-byte tag."""
        if aad is None:
            aad = b""
        _check_encrypt(nonce, plaintext, aad, tag_len)
        return self._aead(tag_len).encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce, data, aad=b"", tag_len=8):
        """Return the plaintext of ``data`` (ciphertext + tag) or raise AuthenticationError."""
        if aad is None:
            aad = b""
        _check_decrypt(nonce, data, aad, tag_len)
        try:
            return self._aead(tag_len).decrypt(nonce, data, aad)
        except _InvalidTag:  # type: ignore[misc]  # only reached when cryptography is present
            raise AuthenticationError(
                "AES-CCM tag does not match: wrong key or nonce, or altered data"
            ) from None


def cipher_for_key(key):
    """The cached AES-CCM object for ``key`` (16 or 32 bytes), built on first use.

    It has ``encrypt(nonce, plaintext, aad=b"", tag_len=8)`` and
    ``decrypt(nonce, data, aad=b"", tag_len=8)`` with the semantics of ``ccm_encrypt`` and
    ``ccm_decrypt``.
    """
    k = _check_key(key)
    cipher = _ciphers.get(k)
    if cipher is None:
        if _AESCCM is not None:
            cipher = _CryptographyCcm(k)
        elif _cryptolib is not None:
            cipher = CcmCipher(_cryptolib.aes(k, _ECB).encrypt)
        else:
            raise ConfigError(
                "no AES engine: install cryptography, or run on a board with cryptolib"
            )
        if len(_ciphers) >= CACHE_SIZE:
            _ciphers.clear()
        _ciphers[k] = cipher
    return cipher


def clear_cache():
    """Forget every cached per-key cipher (after a key rotation or revocation)."""
    _ciphers.clear()


def ccm_encrypt(key, nonce, plaintext, aad=b"", tag_len=8):
    """Seal ``plaintext`` with AES-CCM; return the ciphertext followed by the tag."""
    return cipher_for_key(key).encrypt(nonce, plaintext, aad, tag_len)


def ccm_decrypt(key, nonce, data, aad=b"", tag_len=8):
    """Open ``data`` (ciphertext followed by the tag); return the plaintext.

    Raises AuthenticationError if the tag does not match, DecodeError if ``data`` is shorter
    than the tag, ConfigError for a bad key, nonce or ``tag_len``.
    """
    return cipher_for_key(key).decrypt(nonce, data, aad, tag_len)
