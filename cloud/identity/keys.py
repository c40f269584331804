"""Gateways' envelope keys (``bankiot_core.cose`` secrets), wrapped at rest.

Each enrollment gives the gateway a fresh random 32-byte secret with a version (1 for a
new device, one more than any earlier version after a re-provisioning or a rotation:
versions only go up, as ``bankiot_core.keyring.KeyRing`` requires). The cloud needs the
secret to open what the gateway seals, so it keeps it, wrapped with AES-256-GCM under a
key-encryption key (KEK): the database alone never reveals a gateway key. The AAD binds
each wrapped secret to its device uid and version, so rows cannot be swapped.

The KEK is ``BANKIOT_ENVELOPE_KEK`` (base64 of 32 bytes: for several web replicas, from a
secret manager) or else ``DATA_DIR/keys/envelope.kek``, made on first use, mode 0600.
Secrets are never logged or audited; ``KeyWrapper``'s repr shows nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bankiot_core import cose
from bankiot_core.keyring import KeyRing
from cloud.fleet.models import Device
from cloud.identity import keyfiles
from cloud.identity.errors import KeyFileError
from cloud.identity.models import EnvelopeKey

KEK_VARIABLE = "BANKIOT_ENVELOPE_KEK"
SECRET_BYTES = 32
_NONCE_BYTES = 12


def _aad(uid: str, version: int) -> bytes:
    return b"bankiot envelope key\x00%s\x00%d" % (uid.encode(), version)


class KeyWrapper:
    """Wraps and unwraps envelope secrets under the KEK (AES-256-GCM)."""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != 32:
            raise KeyFileError("the envelope key-encryption key must be 32 bytes")
        self._aead = AESGCM(kek)
        self._kek = kek

    def __repr__(self) -> str:
        return "KeyWrapper(<hidden>)"

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for another secret the cloud keeps at rest (``purpose`` names it,
        e.g. ``"wearable bindings"``), derived from the KEK with HKDF-SHA256: one KEK to
        provide and rotate, a separate key per purpose."""
        info = b"bankiot kek purpose\x00" + purpose.encode()
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(self._kek)

    def wrap(self, uid: str, version: int, secret: bytes) -> bytes:
        """``nonce || ciphertext`` of ``secret``, bound to ``uid`` and ``version``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret, _aad(uid, version))

    def unwrap(self, uid: str, version: int, wrapped: bytes) -> bytes:
        """The secret ``wrap`` sealed; ``KeyFileError`` if the KEK or binding is wrong."""
        try:
            return self._aead.decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _aad(uid, version)
            )
        except InvalidTag:
            raise KeyFileError(
                "envelope key %d of %s does not unwrap: wrong key-encryption key" % (version, uid)
            ) from None


def load_wrapper(data_dir: Path, environ: Mapping[str, str] | None = None) -> KeyWrapper:
    """The KEK from ``BANKIOT_ENVELOPE_KEK`` or ``data_dir/keys/envelope.kek`` (made once)."""
    environ = os.environ if environ is None else environ
    text = environ.get(KEK_VARIABLE, "")
    origin = KEK_VARIABLE
    if not text:
        path = Path(data_dir) / "keys" / "envelope.kek"
        origin = str(path)
        if not path.exists():
            keyfiles.private_folder(path.parent)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first: read theirs
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        text = path.read_text()
    try:
        kek = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise KeyFileError("%s is not base64" % origin) from None
    if len(kek) != 32:
        raise KeyFileError("%s must hold 32 bytes (base64), not %d" % (origin, len(kek)))
    return KeyWrapper(kek)


def issue_envelope_key(
    session: Session, device: Device, wrapper: KeyWrapper, now: dt.datetime
) -> tuple[EnvelopeKey, bytes]:
    """A new random secret for ``device`` at the next version; returns the row and secret."""
    latest = session.scalar(
        select(func.max(EnvelopeKey.version)).where(EnvelopeKey.device_id == device.id)
    )
    version = (latest or 0) + 1
    if version > cose.MAX_KEY_VERSION:
        raise KeyFileError("device %s has used every key version" % device.uid)
    secret = secrets.token_bytes(SECRET_BYTES)
    row = EnvelopeKey(
        device_id=device.id,
        version=version,
        wrapped=wrapper.wrap(device.uid, version, secret),
        created_at=now,
    )
    session.add(row)
    return row, secret


def revoke_envelope_keys(session: Session, device_id: int, now: dt.datetime) -> list[int]:
    """Revoke every still-valid key version of a device; return the versions revoked."""
    versions = list(
        session.scalars(
            select(EnvelopeKey.version).where(
                EnvelopeKey.device_id == device_id, EnvelopeKey.revoked_at.is_(None)
            )
        )
    )
    session.execute(
        update(EnvelopeKey)
        .where(EnvelopeKey.device_id == device_id, EnvelopeKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return sorted(versions)


def envelope_key_lookup(
    session: Session, wrapper: KeyWrapper
) -> Callable[[bytes, int], bytes | None]:
    """A ``key_lookup`` for ``cose.open_envelope``: the secret of a gateway's key version if
    that version is not revoked, else None."""

    def lookup(gateway_id: bytes, version: int) -> bytes | None:
        try:
            uid = bytes(gateway_id).decode()
        except UnicodeDecodeError:
            return None
        wrapped = session.scalar(
            select(EnvelopeKey.wrapped)
            .join(Device, Device.id == EnvelopeKey.device_id)
            .where(
                Device.uid == uid,
                EnvelopeKey.version == version,
                EnvelopeKey.revoked_at.is_(None),
            )
        )
        return None if wrapped is None else wrapper.unwrap(uid, version, wrapped)

    return lookup


def keyring(session: Session, device: Device, wrapper: KeyWrapper) -> KeyRing | None:
    """The device's valid keys as a ``KeyRing`` (newest current, the one before previous),
    or None when it has none."""
    rows = list(
        session.scalars(
            select(EnvelopeKey)
            .where(EnvelopeKey.device_id == device.id, EnvelopeKey.revoked_at.is_(None))
            .order_by(EnvelopeKey.version.desc())
            .limit(2)
        )
    )
    if not rows:
        return None
    secrets_ = [(r.version, wrapper.unwrap(device.uid, r.version, r.wrapped)) for r in rows]
    previous = secrets_[1] if len(secrets_) > 1 else None
    return KeyRing(device.uid, secrets_[0][0], secrets_[0][1], previous)
