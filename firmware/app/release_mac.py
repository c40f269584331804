"""A per-device MAC over a release manifest: the board's check when the signature is too slow.

The cloud holds every board's envelope secret (it opens their batches), so it can vouch for
a manifest to one board with a MAC only that board can check: HMAC-SHA256 over the
manifest's exact bytes, keyed by

    key = HKDF-SHA256(ikm = envelope secret, salt = "",
                      info = "bankiot release mac v1 " + uid + " " + key version)

(RFC 5869; 32 bytes). The key is bound to the board and its key version, and to this use
alone (the sealing keys are derived with other ``info``). The cloud side is
``cloud/fleet/release_mac.py`` (``cryptography``'s HKDF and the standard library's hmac:
an independent implementation; the tests check both give the same bytes). What a MAC
proves is weaker than a signature: the cloud, not the offline release key, vouches for the
release (docs/firmware.md says when a board takes which).
"""

import hashlib

from bankiot_core.cose import hkdf_sha256

MAC_LEN = 32
_BLOCK = 64


def mac_key(secret, uid, key_version):
    """The 32-byte MAC key of board ``uid`` from its envelope ``secret`` (module docstring)."""
    info = ("bankiot release mac v1 %s %d" % (uid, key_version)).encode()
    return hkdf_sha256(secret, b"", info, MAC_LEN)


def hmac_sha256(key, message):
    """HMAC-SHA256 (RFC 2104) of ``message`` under ``key``."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(message)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def manifest_mac(key, manifest):
    """The MAC of ``manifest`` (its exact bytes) under ``key`` (``mac_key``)."""
    return hmac_sha256(key, manifest)


def same(a, b):
    """Compare two MACs without stopping at the first difference (MicroPython's ``hmac``
    has no ``compare_digest``)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
