"""The wearables bound to this gateway, at rest: encrypted, bound to the gateway, atomic.

The engine keeps the wearable bindings the cloud sends (KEYS, ``bankiot_core.downlink``:
each wearable's identity address, IRK and BTHome bind key) out of ``state()``; the runtime
stores ``engine.bindings_state()`` here whenever the revision changes, and gives it back
at start. No key or IRK is ever on disk in plaintext.

File ``<data_dir>/bindings.sealed``, mode 0600, written like every private file of the
gateway (``edge.identity.write_private``: a 0600 temporary file, fsync, rename, fsync of
the folder), so a power cut leaves the old set or the new one::

    "BKB1" | envelope key version (2 bytes, big-endian) | nonce (12) | AES-256-GCM ciphertext

The plaintext is the deterministic CBOR of ``bindings_state()``. The key is derived with
HKDF-SHA256 from the gateway's envelope secret (``identity/envelope.json``, already kept
0600 and refused when others can read it) with the purpose as ``info``: no second secret
to create, protect or lose, and a replaced identity (``enroll --force``, a re-claim) cannot
read the set of the one before; the cloud sends the set again, since the gateway then
reports no ``keys_revision``. The associated data binds the file to the gateway's uid and
to its header, so a file copied from another gateway, or edited, does not open.

Refusals are ``BindingsUnreadable``, one line naming the file and the reason, never a key.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bankiot_core import cbor
from bankiot_core.errors import DecodeError
from edge.errors import GatewayError
from edge.identity import write_private

BINDINGS_FILE = "bindings.sealed"
MAGIC = b"BKB1"
_HEADER = struct.Struct(">4sH")
_NONCE_BYTES = 12
_INFO = b"bankiot wearable bindings at rest v1"


class BindingsUnreadable(GatewayError):
    """The stored bindings cannot be opened: another gateway's or identity's file, a file
    changed on disk, or not a bindings file at all."""


def _derive(secret: bytes, uid: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=uid.encode(), info=_INFO).derive(secret)


def _aad(uid: str, header: bytes) -> bytes:
    return b"bankiot wearable bindings\x00" + uid.encode() + b"\x00" + header


class BindingsStore:
    """``data_dir/bindings.sealed`` of gateway ``uid``, under a key derived from its
    envelope secret at ``key_version`` (module docstring)."""

    def __init__(self, path: Path, uid: str, key_version: int, secret: bytes) -> None:
        if not 0 <= key_version <= 0xFFFF:
            raise ValueError("envelope key version %d does not fit in 2 bytes" % key_version)
        self.path = path
        self.uid = uid
        self.key_version = key_version
        self._aead = AESGCM(_derive(secret, uid))

    def __repr__(self) -> str:
        return "BindingsStore(%r, %r, <key hidden>)" % (str(self.path), self.uid)

    @classmethod
    def for_identity(cls, data_dir: Path, identity: Any) -> BindingsStore:
        """The store in ``data_dir`` of the enrolled ``identity`` (``edge.identity``)."""
        return cls(
            Path(data_dir) / BINDINGS_FILE,
            identity.uid,
            identity.envelope_version,
            identity.envelope_secret,
        )

    def save(self, bindings: Any) -> None:
        """Store ``bindings`` (``engine.bindings_state()``) encrypted, atomically; None
        removes the file (nothing bound)."""
        if bindings is None:
            self.path.unlink(missing_ok=True)
            return
        header = _HEADER.pack(MAGIC, self.key_version)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, cbor.dumps(bindings, True), _aad(self.uid, header))
        write_private(self.path, header + nonce + sealed)

    def load(self) -> Any:
        """What ``save`` stored (``[revision, bindings]``), or None if nothing is stored.
        Raises ``BindingsUnreadable`` for a file that does not open."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        where = str(self.path)
        if len(data) < _HEADER.size + _NONCE_BYTES + 16 or data[:4] != MAGIC:
            raise BindingsUnreadable("%s is not a wearable bindings file" % where)
        header = data[: _HEADER.size]
        version = _HEADER.unpack(header)[1]
        if version != self.key_version:
            raise BindingsUnreadable(
                "%s was sealed under envelope key version %d, this gateway holds %d: the "
                "cloud sends the bindings again" % (where, version, self.key_version)
            )
        nonce = data[_HEADER.size : _HEADER.size + _NONCE_BYTES]
        try:
            plain = self._aead.decrypt(
                nonce, data[_HEADER.size + _NONCE_BYTES :], _aad(self.uid, header)
            )
        except InvalidTag:
            raise BindingsUnreadable(
                "%s does not open for gateway %s: another gateway's or identity's file, or "
                "changed on disk" % (where, self.uid)
            ) from None
        try:
            return cbor.loads(plain)
        except DecodeError:
            raise BindingsUnreadable("%s holds no bindings" % where) from None
