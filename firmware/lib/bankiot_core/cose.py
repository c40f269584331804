"""Sealed batches: COSE_Encrypt0 (RFC 9052 5.2, 5.3) with AES-CCM-16-64-128 (RFC 9053 4.2).

One envelope per batch, tagged (CBOR tag 16)::

    16([ h'a1010a',                      / protected: {1: 10}, alg AES-CCM-16-64-128 /
         {4: kid, 6: partial_iv},        / unprotected: key id, Partial IV /
         ciphertext ])                   / batch encrypted, followed by the 8-byte tag /

- **kid** (label 4) = the gateway id's bytes followed by the key version as two bytes,
  big-endian (``make_kid``, ``split_kid``): the key version rides in the kid, so the
  envelope needs no private header label and the kid alone says which key opens it.
  Gateway ids are 1 to 64 bytes (a ``str`` is taken as UTF-8); versions 0 to 65535.
- **Partial IV** (label 6) = the gateway's batch sequence number, big-endian in the fewest
  bytes (0 is ``h'00'``), at most 5 bytes: ``0 <= seq <= MAX_SEQ`` (2**40 - 1), as in
  OSCORE (RFC 8613 6.1). A non-minimal Partial IV is rejected.
- **external_aad** = the MQTT topic or CoAP resource the envelope travels on (UTF-8), so
  an envelope replayed onto another gateway's topic does not open. The AAD is the
  Enc_structure ``["Encrypt0", protected, external_aad]`` (RFC 9052 5.3), encoded with the
  protected bytes exactly as received.

Keys, nonce (OSCORE's construction, RFC 8613 3.2 and 5.2, with one key per gateway, key
version and direction). The gateway's provisioned secret (16 to 64 bytes, from its
``keyring.KeyRing``) is a master secret, never used as an AES key itself. HKDF-SHA256
(RFC 5869, empty salt) derives from it::

    info  = CBOR [gateway_id bstr, key_version uint, 10, type tstr, L uint]
    key   = HKDF(secret, info with type "Key", L = 16)        / uplink /
    iv    = HKDF(secret, info with type "IV",  L = 13)        / uplink: the Common IV /
    nonce = iv XOR (Partial IV left-padded to 13 bytes)      / RFC 9052 3.1, iv as Base IV /

Binding the gateway id and version into the derivation means a secret provisioned twice by
mistake still gives every gateway its own key and nonces. Nonces never repeat as long as
the sequence number never repeats for a gateway and direction (``MAX_SEQ`` sequence numbers
per key version), which the sender's sequence store guarantees across restarts.

Directions. A derived key seals in one direction only: unlike OSCORE's, the nonce here
carries no sender id, so two senders sharing a key and IV would reuse nonces. So, as OSCORE
gives each side its own Sender Key, each direction has its own key and IV, and every
function here takes ``direction``:

- ``UPLINK`` (0, the default: what every caller before directions existed gets, byte for
  byte): the gateway seals batches, the cloud opens them; types "Key" and "IV" as above.
  Sequence numbers are the gateway's (``sequence``).
- ``DOWNLINK`` (1): the cloud seals acknowledgements, configuration and commands to one
  gateway, the gateway opens them (``downlink``). The same info with types "Key down" and
  "IV down": the same secret, gateway and version give another AES key and Common IV, as
  OSCORE derives its Sender and Recipient Keys with different ids from one Master Secret
  (RFC 8613 3.2.1). Sequence numbers are the cloud's own counter for that gateway (its own
  ``sequence.SequenceNumbers`` over the cloud's durable store); the gateway keeps a
  ``replay.ReplayWindow`` for them.

Uplink and downlink never share a (key, nonce) pair: the keys are independent HKDF outputs
(distinct info), so the two directions' sequence spaces may overlap freely. An envelope
sealed one way never opens the other way (``AuthenticationError``), which stops an
attacker reflecting a gateway's own batch back to it. The envelope's layout is the same
in both directions: the kid names the gateway (the sender uplink, the addressee downlink).

Opening (``open_envelope``) raises ``DecodeError`` for anything malformed (not tag 16,
wrong shape, another algorithm, unknown or missing header labels, a bad kid or Partial
IV) and ``AuthenticationError`` for an unknown gateway or key version (``key_lookup``
returned None) or a tag that does not check out. Replay is the caller's next step
(``replay.ReplayWindow``, per gateway); ``peek_envelope`` reads the kid and sequence number
without decrypting, so a replayed envelope can be dropped before any AES work.

HKDF and HMAC are written here over ``hashlib.sha256`` (MicroPython has no ``hmac`` built
in). Derived keys are cached per (secret, gateway, version, direction), at most
``CACHE_SIZE``; ``forget_key(secret)`` drops one secret's (``KeyRing.retire`` calls it).
"""

import hashlib
from collections import namedtuple

from bankiot_core import cbor
from bankiot_core._compat import const
from bankiot_core.ccm import ccm_decrypt, ccm_encrypt, clear_cache
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError

ALG_AES_CCM_16_64_128 = const(10)
TAG_ENCRYPT0 = const(16)
HEADER_ALG = const(1)
HEADER_KID = const(4)
HEADER_IV = const(5)
HEADER_PARTIAL_IV = const(6)

KEY_LEN = const(16)
NONCE_LEN = const(13)
TAG_LEN = const(8)
PIV_MAX_LEN = const(5)
MAX_SEQ = 0xFFFFFFFFFF  # 2**40 - 1: five bytes of Partial IV (not const(): no small int on boards)
MAX_KEY_VERSION = const(0xFFFF)
MAX_GATEWAY_ID_LEN = const(64)
CACHE_SIZE = const(8)
UPLINK = const(0)  # gateway to cloud: batches
DOWNLINK = const(1)  # cloud to gateway: acknowledgements, configuration, commands

# {1: 10} in deterministic CBOR: the only protected header this module writes or accepts.
PROTECTED = b"\xa1\x01\x0a"

# What open_envelope returns: who sealed it, with which key version, the sequence number.
Opened = namedtuple("Opened", ("gateway_id", "key_version", "seq", "plaintext"))
# What peek_envelope returns: the same, unauthenticated, without the plaintext.
Peeked = namedtuple("Peeked", ("gateway_id", "key_version", "seq"))

_BYTES_LIKE = (bytes, bytearray, memoryview)
_HASH_BLOCK = const(64)
_derived = {}
# HKDF "type" of the key and of the Common IV, per direction (UPLINK, DOWNLINK).
_KEY_TYPES = ("Key", "Key down")
_IV_TYPES = ("IV", "IV down")


# ---- HKDF-SHA256 (RFC 5869) over hashlib -------------------------------------------------


def _hmac_sha256(key, message):
    if len(key) > _HASH_BLOCK:
        key = hashlib.sha256(key).digest()
    inner_pad = bytearray(_HASH_BLOCK)
    outer_pad = bytearray(_HASH_BLOCK)
    for i in range(_HASH_BLOCK):
        b = key[i] if i < len(key) else 0
        inner_pad[i] = b ^ 0x36
        outer_pad[i] = b ^ 0x5C
    inner = hashlib.sha256(inner_pad)
    inner.update(message)
    outer = hashlib.sha256(outer_pad)
    outer.update(inner.digest())
    return outer.digest()


def hkdf_sha256(ikm, salt, info, length):
    """HKDF-SHA256 (RFC 5869): extract with ``salt`` (empty means 32 zero bytes), expand."""
    if not 0 < length <= 255 * 32:
        raise ConfigError("HKDF-SHA256 output must be 1 to 8160 bytes, not %d" % length)
    prk = _hmac_sha256(bytes(salt) if salt else bytes(32), bytes(ikm))
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = _hmac_sha256(prk, block + bytes(info) + bytes((counter,)))
        out.extend(block)
        counter += 1
    return bytes(out[:length])


# ---- arguments -------------------------------------------------------------------------


def _as_bytes(name, value):
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, _BYTES_LIKE):
        return bytes(value)
    raise ConfigError("%s must be bytes or str, not %s" % (name, type(value).__name__))


def _check_int(name, value, top):
    if not isinstance(value, int) or value is True or value is False:
        raise ConfigError("%s must be an int, not %s" % (name, type(value).__name__))
    if not 0 <= value <= top:
        raise ConfigError("%s %d is out of range 0..%d" % (name, value, top))


def gateway_bytes(gateway_id):
    """A gateway id as the bytes in its kid (str as UTF-8); ConfigError unless 1 to 64 bytes."""
    raw = _as_bytes("gateway id", gateway_id)
    if not 0 < len(raw) <= MAX_GATEWAY_ID_LEN:
        raise ConfigError(
            "gateway id must be 1 to %d bytes, not %d" % (MAX_GATEWAY_ID_LEN, len(raw))
        )
    return raw


def _secret(key):
    if not isinstance(key, _BYTES_LIKE):
        raise ConfigError("gateway key must be bytes, not %s" % type(key).__name__)
    if not 16 <= len(key) <= 64:
        raise ConfigError("gateway key must be 16 to 64 bytes, not %d" % len(key))
    return bytes(key)


def _show(gateway_id):
    """A gateway id for a one-line message: its text if printable ASCII, else hex."""
    shown = gateway_id[:32]
    for b in shown:
        if b < 0x20 or b > 0x7E:
            return "0x" + "".join("%02x" % c for c in shown)
    return shown.decode()


def make_kid(gateway_id, key_version):
    """The COSE kid: ``gateway_id`` bytes followed by ``key_version`` as 2 bytes big-endian."""
    _check_int("key version", key_version, MAX_KEY_VERSION)
    return gateway_bytes(gateway_id) + bytes((key_version >> 8, key_version & 0xFF))


def split_kid(kid):
    """``(gateway_id, key_version)`` from a kid; DecodeError if it cannot be one."""
    if not isinstance(kid, bytes) or not 3 <= len(kid) <= MAX_GATEWAY_ID_LEN + 2:
        raise DecodeError("COSE kid must be 3 to %d bytes" % (MAX_GATEWAY_ID_LEN + 2))
    return kid[:-2], (kid[-2] << 8) | kid[-1]


def partial_iv(seq):
    """The Partial IV of sequence number ``seq``: big-endian, fewest bytes, 0 is b'\\x00'."""
    _check_int("sequence number", seq, MAX_SEQ)
    size = 1
    while seq >> (8 * size):
        size += 1
    return seq.to_bytes(size, "big")


def _check_direction(direction):
    if type(direction) is not int or direction not in (UPLINK, DOWNLINK):  # not True/False
        raise ConfigError("direction must be UPLINK (0) or DOWNLINK (1), not %r" % (direction,))
    return direction


def _derive(secret, gateway_id, key_version, direction=UPLINK):
    """``(aes_key, common_iv)`` for one gateway key version and direction, cached."""
    cache_key = (secret, gateway_id, key_version, direction)
    found = _derived.get(cache_key)
    if found is not None:
        return found
    info = [gateway_id, key_version, ALG_AES_CCM_16_64_128, _KEY_TYPES[direction], KEY_LEN]
    aes_key = hkdf_sha256(secret, b"", cbor.dumps(info, True), KEY_LEN)
    info[3] = _IV_TYPES[direction]
    info[4] = NONCE_LEN
    common_iv = hkdf_sha256(secret, b"", cbor.dumps(info, True), NONCE_LEN)
    if len(_derived) >= CACHE_SIZE:
        _derived.clear()
    found = (aes_key, common_iv)
    _derived[cache_key] = found
    return found


def derive_key_and_iv(key, gateway_id, key_version, direction=UPLINK):
    """The AES-128 key and 13-byte Common IV that ``key`` gives this gateway, version and
    direction (``UPLINK`` or ``DOWNLINK``)."""
    _check_int("key version", key_version, MAX_KEY_VERSION)
    direction = _check_direction(direction)
    return _derive(_secret(key), gateway_bytes(gateway_id), key_version, direction)


def forget_key(key):
    """Drop every cached derivation of ``key`` (and the AES cache) after a retirement."""
    secret = bytes(key)
    for cache_key in list(_derived):
        if cache_key[0] == secret:
            del _derived[cache_key]
    clear_cache()


def _nonce(common_iv, seq):
    nonce = bytearray(common_iv)
    i = NONCE_LEN - 1
    while seq:
        nonce[i] ^= seq & 0xFF
        seq >>= 8
        i -= 1
    return bytes(nonce)


# The fixed parts, laid out by hand: an envelope is sealed per batch and opened per message,
# and building CBOR objects for them cost more than the AES on CPython.
_ENC0_CONTEXT = b"\x83\x68Encrypt0"  # ["Encrypt0", ...
_ENVELOPE_HEAD = b"\xd0\x83\x43\xa1\x01\x0a\xa2\x04"  # 16([h'a1010a', {4: ...
_MAJOR_BYTES = const(2)


def _put_bytes(buf, data):
    cbor.write_head(buf, _MAJOR_BYTES, len(data))
    buf.extend(data)


def _enc_structure(protected, external_aad):
    """RFC 9052 5.3: ``["Encrypt0", protected, external_aad]`` in deterministic CBOR."""
    buf = bytearray(_ENC0_CONTEXT)
    _put_bytes(buf, protected)
    _put_bytes(buf, external_aad)
    return bytes(buf)


# ---- sealing and opening -----------------------------------------------------------------


def seal(key, gateway_id, key_version, seq, plaintext, external_aad=None, direction=UPLINK):
    """Seal ``plaintext`` as a tagged COSE_Encrypt0; return its CBOR bytes.

    ``key`` is the gateway's secret for ``key_version``; ``seq`` the sender's next unused
    sequence number in ``direction`` (``UPLINK``: the gateway's; ``DOWNLINK``: the cloud's
    for this gateway); ``external_aad`` the topic or resource name (str or bytes; None for
    none). Raises ``ConfigError`` for arguments out of range (and ``ccm``'s for a plaintext
    over 64 KiB).
    """
    direction = _check_direction(direction)
    secret = _secret(key)
    gateway = gateway_bytes(gateway_id)
    kid = make_kid(gateway, key_version)
    piv = partial_iv(seq)
    aad = _as_bytes("external_aad", external_aad)
    if not isinstance(plaintext, _BYTES_LIKE):
        raise ConfigError("plaintext must be bytes, not %s" % type(plaintext).__name__)
    aes_key, common_iv = _derive(secret, gateway, key_version, direction)
    ciphertext = ccm_encrypt(
        aes_key, _nonce(common_iv, seq), plaintext, _enc_structure(PROTECTED, aad), TAG_LEN
    )
    # 16([h'a1010a', {4: kid, 6: piv}, ciphertext]), as cbor.dumps(..., True) would write it.
    buf = bytearray(_ENVELOPE_HEAD)
    _put_bytes(buf, kid)
    buf.append(HEADER_PARTIAL_IV)
    _put_bytes(buf, piv)
    _put_bytes(buf, ciphertext)
    return bytes(buf)


def seal_with(ring, seq, plaintext, external_aad=None, direction=UPLINK):
    """``seal`` with the current key of ``ring`` (a ``keyring.KeyRing``)."""
    version, key = ring.sealing_key()
    return seal(key, ring.gateway_id, version, seq, plaintext, external_aad, direction)


def _check_protected(protected):
    """DecodeError unless ``protected`` is a CBOR map {1: 10} (in any valid encoding)."""
    try:
        header = cbor.loads(protected, 1)
    except DecodeError as exc:
        raise DecodeError("COSE protected header: %s" % exc.message) from None
    if not isinstance(header, dict) or len(header) != 1:
        raise DecodeError("COSE protected header must be {1: alg} and nothing else")
    for label in header:
        if type(label) is not int or label != HEADER_ALG:  # not True, not 1.0
            raise DecodeError("COSE protected header label %r is not allowed here" % (label,))
    alg = header[HEADER_ALG]
    if type(alg) is not int or alg != ALG_AES_CCM_16_64_128:
        raise DecodeError("COSE algorithm %r is not AES-CCM-16-64-128 (10)" % (alg,))


def _parse(data):
    """``(protected, kid, piv bytes, ciphertext)`` of a tagged COSE_Encrypt0, checked."""
    envelope = cbor.loads(data, 4)
    if not isinstance(envelope, cbor.Tag) or envelope.tag != TAG_ENCRYPT0:
        raise DecodeError("not a tagged COSE_Encrypt0 (CBOR tag 16)")
    parts = envelope.value
    if not isinstance(parts, list) or len(parts) != 3:
        raise DecodeError("COSE_Encrypt0 must be an array of 3 items")
    protected, unprotected, ciphertext = parts
    if not isinstance(protected, bytes):
        raise DecodeError("COSE protected header must be a byte string")
    if protected != PROTECTED:  # what we write needs no decoding; anything else is checked
        _check_protected(protected)
    if not isinstance(unprotected, dict):
        raise DecodeError("COSE unprotected header must be a map")
    for label in unprotected:
        if type(label) is not int or label not in (HEADER_KID, HEADER_PARTIAL_IV):
            raise DecodeError("COSE unprotected header label %r is not allowed here" % (label,))
    kid = unprotected.get(HEADER_KID)
    piv = unprotected.get(HEADER_PARTIAL_IV)
    if kid is None or piv is None:
        raise DecodeError("COSE unprotected header needs kid (4) and Partial IV (6)")
    if not isinstance(piv, bytes) or not 0 < len(piv) <= PIV_MAX_LEN:
        raise DecodeError("COSE Partial IV must be 1 to %d bytes" % PIV_MAX_LEN)
    if len(piv) > 1 and piv[0] == 0:
        raise DecodeError("COSE Partial IV has a leading zero byte (not minimal)")
    if not isinstance(ciphertext, bytes):
        raise DecodeError("COSE ciphertext must be a byte string (detached is not supported)")
    if len(ciphertext) < TAG_LEN:
        raise DecodeError("COSE ciphertext is shorter than its %d-byte tag" % TAG_LEN)
    return protected, kid, piv, ciphertext


def peek_envelope(data):
    """``Peeked(gateway_id, key_version, seq)`` of an envelope, unauthenticated: only to
    drop replays and route before ``open_envelope``; trust nothing else it says."""
    _, kid, piv, _ = _parse(data)
    gateway_id, version = split_kid(kid)
    return Peeked(gateway_id, version, int.from_bytes(piv, "big"))


def open_envelope(data, key_lookup, external_aad=None, direction=UPLINK):
    """Open a sealed envelope; return ``Opened(gateway_id, key_version, seq, plaintext)``.

    ``key_lookup(gateway_id, key_version)`` returns that gateway's secret for the version,
    or None if it has none (unknown gateway, retired or future version):
    ``keyring.KeyRing.lookup`` is one. ``external_aad`` must be what the sealer bound in
    (the topic or resource it arrived on); ``direction`` the one it was sealed in
    (``UPLINK``, the default: a batch). Raises DecodeError (malformed) or
    AuthenticationError (no such key, or the tag does not match).
    """
    direction = _check_direction(direction)
    protected, kid, piv, ciphertext = _parse(data)
    gateway_id, version = split_kid(kid)
    aad = _as_bytes("external_aad", external_aad)
    key = key_lookup(gateway_id, version)
    if key is None:
        raise AuthenticationError("no key for gateway %s version %d" % (_show(gateway_id), version))
    seq = int.from_bytes(piv, "big")
    aes_key, common_iv = _derive(_secret(key), gateway_id, version, direction)
    plaintext = ccm_decrypt(
        aes_key, _nonce(common_iv, seq), ciphertext, _enc_structure(protected, aad), TAG_LEN
    )
    return Opened(gateway_id, version, seq, plaintext)
