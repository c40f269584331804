"""The cloud's side of a board's per-device release MAC (``firmware/app/release_mac.py``).

A board that checks a release by MAC instead of by its Ed25519 signature (docs/firmware.md:
the signature check takes too long on a board) needs, with its ``update`` command, the
HMAC-SHA256 of the release's manifest under a key derived from its own envelope secret:

    key = HKDF-SHA256(ikm = envelope secret, salt = "",
                      info = "bankiot release mac v1 <uid> <key version>")

This computes it per device (``manifest_mac``); ``update_args`` calls it when an ``update``
command is sealed for a board, with the key version sealing it. The cloud must only
compute it over a manifest whose signature it has checked with a trusted release key
(``releases`` does so when a release is created), so the MAC passes the release key's word
on, per device.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAC_LEN = 32


def mac_key(secret: bytes, uid: str, key_version: int) -> bytes:
    """The 32-byte release MAC key of gateway ``uid`` from its envelope ``secret``."""
    info = ("bankiot release mac v1 %s %d" % (uid, key_version)).encode()
    return HKDF(algorithm=hashes.SHA256(), length=MAC_LEN, salt=None, info=info).derive(secret)


def manifest_mac(secret: bytes, uid: str, key_version: int, manifest: bytes) -> bytes:
    """HMAC-SHA256 of ``manifest`` (its exact bytes) for gateway ``uid``."""
    return hmac.new(mac_key(secret, uid, key_version), manifest, hashlib.sha256).digest()
