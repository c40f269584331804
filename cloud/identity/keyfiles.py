"""Private keys at rest: PEM files readable by their owner only, optionally encrypted.

A key file is created with mode 0600 in a folder with mode 0700 (never widened
afterwards, never overwritten: ``O_EXCL``). With a passphrase the PEM is PKCS#8 encrypted
(``BestAvailableEncryption``: AES-256-CBC under scrypt or PBKDF2, as the OpenSSL backend
picks); the passphrase comes from an environment variable, never from a file next to the
key.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloud.identity.errors import KeyFileError


def passphrase(environ: Mapping[str, str], variable: str) -> bytes | None:
    """The passphrase in ``environ[variable]`` as bytes, or None when unset or empty."""
    value = environ.get(variable, "")
    return value.encode() if value else None


def private_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents) if needed; a new folder gets mode 0700."""
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
    return folder


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey, secret: bytes | None) -> None:
    """Write ``key`` to a new file at ``path`` (mode 0600), encrypted when ``secret``."""
    encryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def read_private_key(path: Path, secret: bytes | None, variable: str) -> ec.EllipticCurvePrivateKey:
    """Load the EC key at ``path``; ``variable`` names the passphrase's variable in errors."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError("key file %s does not exist" % path) from None
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except TypeError:
        # cryptography: a password for an unencrypted key, or none for an encrypted one
        if secret:
            raise KeyFileError(
                "key file %s is not encrypted but %s is set" % (path, variable)
            ) from None
        raise KeyFileError("key file %s is encrypted: set %s" % (path, variable)) from None
    except ValueError:
        raise KeyFileError(
            "key file %s cannot be read (wrong %s, or not a PEM key)" % (path, variable)
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError("key file %s does not hold an EC key" % path)
    return key


def publish_locked(path: Path, render: Callable[[], bytes]) -> Path:
    """Write ``render()`` to ``path`` atomically, holding an exclusive ``flock`` on a lock
    file beside it while rendering and writing: of two concurrent publishers, the last to
    write also rendered last, so it saw everything the other saw."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(".%s.lock" % path.name).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            write_public(path, render())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def write_public(path: Path, data: bytes) -> None:
    """Write public material (certificates, CRLs) atomically: a reader never sees half."""
    temporary = path.with_name(".%s.tmp" % path.name)
    temporary.write_bytes(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
