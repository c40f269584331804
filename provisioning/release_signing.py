"""Release keys and signed bundles: what the release manager runs, on an offline machine.

A bundle is a folder::

    BUNDLE/files/...        the files, laid out as on the device (files/lib/x.py -> /lib/x.py)
    BUNDLE/manifest.json    bankiot_core.manifest format 1, canonical bytes
    BUNDLE/manifest.sig     {"key_id": "<16 hex>", "signature": "<base64>"} (JSON)

The signature is Ed25519 (RFC 8032) over the exact bytes of ``manifest.json``: the manifest
names every file's SHA-256, so one signature covers the whole release, and a board checks
the signature once, then each file as it writes it (``bankiot_core.manifest.FileCheck``).
``key_id`` is the first 8 bytes of the SHA-256 of the raw 32-byte public key, in hex: it
picks the trusted key, it is not trusted itself.

A release key is a PKCS#8 PEM file of mode 0600 (never overwritten; refused when group or
others may read it) with its public key beside it (``<name>.pub``, SubjectPublicKeyInfo
PEM): the public file is what the cloud and the boards trust.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bankiot_core.errors import CoreError
from bankiot_core.manifest import FileCheck, Manifest, encode_manifest, parse_manifest

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
FILES_DIR = "files"
CHUNK = 65536


class ReleaseError(Exception):
    """A key, bundle or signature that cannot be used; the message says which and why."""


class UntrustedRelease(ReleaseError):
    """The signature is by an unknown key or does not match the manifest."""


class InvalidManifest(ReleaseError):
    """Correctly signed, but the manifest is not one ``bankiot_core.manifest`` accepts."""


@dataclass(frozen=True)
class Signature:
    """The content of ``manifest.sig``."""

    key_id: str
    signature: bytes

    def to_json(self) -> bytes:
        return json.dumps(
            {"key_id": self.key_id, "signature": base64.b64encode(self.signature).decode()},
            sort_keys=True,
        ).encode()


def public_path(private_key_path: Path) -> Path:
    """Where the public key of ``private_key_path`` is kept: the same name, ``.pub``."""
    return private_key_path.with_suffix(".pub")


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of ``public_key`` (RFC 8032 encoding)."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's id: the first 8 bytes of SHA-256 of its raw 32 bytes, in hex."""
    return hashlib.sha256(raw_public_key(public_key)).digest()[:8].hex()


def new_release_key(path: Path) -> Path:
    """Make a new Ed25519 release key at ``path`` (PEM, mode 0600) and its public key at
    ``public_path(path)``; return the public key's path. Refuses to overwrite either."""
    public = public_path(path)
    if path.suffix == ".pub":
        raise ReleaseError("%s: the private key's name must not end in .pub" % path)
    for existing in (path, public):
        if existing.exists():
            raise ReleaseError("%s already exists: a release key is never overwritten" % existing)
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ReleaseError("%s already exists: a release key is never overwritten" % path) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(public_pem)
    return public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The release key at ``path``; refused when missing, readable by group or others, or
    not an unencrypted Ed25519 PEM key."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ReleaseError("release key %s does not exist" % path) from None
    if stat.S_IMODE(mode) & 0o077:
        raise ReleaseError(
            "release key %s is accessible by group or others (mode %o): chmod 600 it"
            % (path, stat.S_IMODE(mode))
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ReleaseError("release key %s is not an unencrypted PEM private key" % path) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError("release key %s is not an Ed25519 key" % path)
    return key


def load_public_key(data: bytes, name: str = "public key") -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) bytes; ``name`` for errors."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ReleaseError("%s is not a PEM public key" % name) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError("%s is not an Ed25519 public key" % name)
    return key


def device_path(files_dir: Path, path: Path) -> str:
    """The device path of a bundle file: its path under ``files/``, with a leading /."""
    return "/" + path.relative_to(files_dir).as_posix()


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def bundle_files(bundle_dir: Path) -> dict[str, Path]:
    """Every file under ``bundle_dir/files``, by device path (symbolic links refused: what
    is signed is what is in the folder)."""
    files_dir = bundle_dir / FILES_DIR
    if not files_dir.is_dir():
        raise ReleaseError("%s has no %s/ folder" % (bundle_dir, FILES_DIR))
    found: dict[str, Path] = {}
    for path in sorted(files_dir.rglob("*")):
        if path.is_symlink():
            raise ReleaseError("%s is a symbolic link: copy the file into the bundle" % path)
        if path.is_file():
            found[device_path(files_dir, path)] = path
    if not found:
        raise ReleaseError("%s/%s/ holds no files" % (bundle_dir, FILES_DIR))
    return found


def build_manifest(bundle_dir: Path, board: str, version: str) -> bytes:
    """The canonical manifest of the bundle's files."""
    entries = []
    for device, path in bundle_files(bundle_dir).items():
        sha256, size = _hash_file(path)
        entries.append((device, sha256, size))
    try:
        return encode_manifest(board, version, entries)
    except CoreError as exc:
        raise ReleaseError("%s: %s" % (bundle_dir, exc)) from None


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(".%s.tmp" % path.name)
    temporary.write_bytes(data)
    os.replace(temporary, path)


def sign_manifest(manifest: bytes, key: Ed25519PrivateKey) -> Signature:
    """The signature of ``manifest`` (its exact bytes) with ``key``."""
    return Signature(key_id(key.public_key()), key.sign(manifest))


def sign_bundle(bundle_dir: Path, private_key_path: Path, board: str, version: str) -> Manifest:
    """Write ``manifest.json`` and ``manifest.sig`` for the files of ``bundle_dir``, signed
    with the release key at ``private_key_path``; return the manifest. The signature is
    written last, so a bundle interrupted half-way does not verify."""
    key = load_private_key(private_key_path)
    data = build_manifest(bundle_dir, board, version)
    signature = sign_manifest(data, key)
    (bundle_dir / SIGNATURE_NAME).unlink(missing_ok=True)
    _write_atomic(bundle_dir / MANIFEST_NAME, data)
    _write_atomic(bundle_dir / SIGNATURE_NAME, signature.to_json())
    return parse_manifest(data)


def parse_signature(data: bytes) -> Signature:
    """The ``manifest.sig`` JSON: ``{"key_id": 16 hex digits, "signature": base64 of 64 bytes}``."""
    try:
        obj = json.loads(data)
    except ValueError:
        raise ReleaseError("manifest.sig is not JSON") from None
    if not isinstance(obj, dict) or set(obj) != {"key_id", "signature"}:
        raise ReleaseError("manifest.sig must hold exactly key_id and signature")
    return Signature(check_key_id(obj["key_id"]), decode_signature(obj["signature"]))


def check_key_id(value: object) -> str:
    """``value`` if it is a key id (16 lower-case hex digits)."""
    if not isinstance(value, str) or len(value) != 16 or value.strip("0123456789abcdef"):
        raise ReleaseError("key_id must be 16 lower-case hex digits")
    return value


def decode_signature(value: object) -> bytes:
    """The 64 signature bytes in base64 ``value``."""
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise ReleaseError("signature must be the base64 of 64 bytes (Ed25519)")
    return raw


def verify_manifest(
    manifest: bytes, signature: Signature, trusted: Mapping[str, Ed25519PublicKey]
) -> Manifest:
    """The parsed ``manifest`` if ``signature`` is valid under the trusted key it names.

    ``trusted``: key id -> public key. Raises ReleaseError for an unknown key, a bad
    signature or a manifest that does not parse (in that order: nothing unsigned is parsed).
    """
    key = trusted.get(signature.key_id)
    if key is None:
        raise UntrustedRelease("signed by key %s, which is not trusted" % signature.key_id)
    try:
        key.verify(signature.signature, manifest)
    except InvalidSignature:
        raise UntrustedRelease(
            "the signature does not match the manifest (key %s)" % signature.key_id
        ) from None
    try:
        return parse_manifest(manifest)
    except CoreError as exc:
        raise InvalidManifest("signed manifest refused: %s" % exc) from None


def trusted_keys(public_keys: Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Key id -> key, for ``verify_manifest``."""
    return {key_id(key): key for key in public_keys}


def verify_bundle(bundle_dir: Path, trusted_public_keys: Iterable[Ed25519PublicKey]) -> Manifest:
    """Check a bundle as a board would: the signature under one of ``trusted_public_keys``,
    then every file's size and SHA-256, and no file that the manifest does not list."""
    try:
        data = (bundle_dir / MANIFEST_NAME).read_bytes()
        signature = parse_signature((bundle_dir / SIGNATURE_NAME).read_bytes())
    except FileNotFoundError as exc:
        raise ReleaseError(
            "%s is not signed: %s is missing" % (bundle_dir, Path(exc.filename).name)
        ) from None
    manifest = verify_manifest(data, signature, trusted_keys(trusted_public_keys))
    present = bundle_files(bundle_dir)
    listed = {entry.path for entry in manifest.files}
    extra = sorted(set(present) - listed)
    if extra:
        raise ReleaseError("%s is in the bundle but not in the manifest" % extra[0])
    for entry in manifest.files:
        path = present.get(entry.path)
        if path is None:
            raise ReleaseError("%s is in the manifest but not in the bundle" % entry.path)
        check = FileCheck(entry)
        try:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    check.feed(chunk)
            check.check()
        except CoreError as exc:
            raise ReleaseError(str(exc)) from None
    return manifest
