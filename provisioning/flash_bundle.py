"""The software ``bankiot flash`` installs: a bundle from ``bankiot firmware build``, checked,
or one built on the fly from this checkout's ``firmware/``.

A given bundle is checked before anything touches the board: its manifest parses, is for
this board, and every file has the size and SHA-256 the manifest names; with release keys
(``--release-key``) its signature must also verify with one of them. A bundle built on the
fly is signed with a throwaway key that the board is not told to trust (so it is the same
layout and the same check as a release, but gives no trust for updates: those need the
release keys given with ``--release-key``).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bankiot_core.errors import CoreError
from bankiot_core.manifest import parse_manifest
from provisioning.flash_plan import BundleFile
from provisioning.release_signing import (
    FILES_DIR,
    MANIFEST_NAME,
    ReleaseError,
    load_public_key,
    raw_public_key,
    verify_bundle,
)


class BundleUnusable(Exception):
    """The bundle cannot be installed; the message says why."""


@dataclass(frozen=True)
class Software:
    """What goes onto the board: the version, each file's entry and bytes."""

    board: str
    version: str
    files: dict[str, BundleFile]
    contents: dict[str, bytes]


def release_keys(paths: Sequence[Path]) -> list[str]:
    """The raw Ed25519 public keys (64 hex) of the ``.pub`` files ``paths``, for the board's
    ``release_keys.json``; ``BundleUnusable`` for a file that is not one."""
    keys = []
    for path in paths:
        try:
            key = load_public_key(path.read_bytes(), str(path))
        except (OSError, ReleaseError) as exc:
            raise BundleUnusable("release key %s: %s" % (path, exc)) from None
        keys.append(raw_public_key(key).hex())
    return keys


def load_bundle(bundle_dir: Path, board: str, trusted: Sequence[Path] = ()) -> Software:
    """The checked bundle in ``bundle_dir`` for ``board`` (module docstring)."""
    try:
        if trusted:
            keys = [load_public_key(p.read_bytes(), str(p)) for p in trusted]
            manifest = verify_bundle(bundle_dir, keys)
        else:
            manifest = parse_manifest((bundle_dir / MANIFEST_NAME).read_bytes())
    except OSError as exc:
        raise BundleUnusable(
            "cannot read the bundle %s: %s" % (bundle_dir, exc.strerror or exc)
        ) from None
    except (ReleaseError, CoreError) as exc:
        raise BundleUnusable("bundle %s: %s" % (bundle_dir, exc)) from None
    if manifest.board != board:
        raise BundleUnusable(
            "bundle %s is for a %s, not a %s" % (bundle_dir, manifest.board, board)
        )
    files, contents = {}, {}
    for entry in manifest.files:
        path = bundle_dir / FILES_DIR / entry.path.lstrip("/")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleUnusable("bundle file %s: %s" % (path, exc.strerror or exc)) from None
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise BundleUnusable("bundle file %s does not match its manifest" % path)
        files[entry.path] = BundleFile(entry.path, entry.sha256, entry.size)
        contents[entry.path] = data
    return Software(manifest.board, manifest.version, files, contents)


def build_on_the_fly(board: str, version: str) -> Software:
    """The bundle of ``board`` built now from ``firmware/`` (mpy-cross), as ``bankiot
    firmware build`` makes it, signed with a throwaway key (module docstring)."""
    from provisioning.firmware_bundle import BundleError, FirmwareCompileError, build_bundle
    from provisioning.release_signing import new_release_key

    with tempfile.TemporaryDirectory(prefix="bankiot-flash-") as scratch:
        key = Path(scratch) / "throwaway.pem"
        try:
            new_release_key(key)
            build_bundle(Path(scratch) / "bundle", board, version, key)
        except (BundleError, FirmwareCompileError, ReleaseError, FileNotFoundError) as exc:
            raise BundleUnusable("cannot build the %s firmware: %s" % (board, exc)) from None
        return load_bundle(Path(scratch) / "bundle", board)
