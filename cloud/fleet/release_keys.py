"""Trusted release keys: the Ed25519 public keys whose signatures the cloud accepts.

From configuration, read once when the app starts (a key file that cannot be used stops
start-up with one line; add a key, then restart): every ``*.pub`` in ``RELEASE_KEYS_DIR``
(default ``<data dir>/release-keys``, which may be absent: then no release is accepted),
plus the ``.pub`` files listed, comma-separated, in ``RELEASE_KEYS``. Only public keys live
on the cloud: release private keys stay offline with the release manager.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.config import ConfigError
from provisioning.release_signing import ReleaseError, key_id, load_public_key

DEFAULT_DIR = "release-keys"


def key_files(config: Mapping[str, Any]) -> list[Path]:
    """The public key files the configuration names, in a stable order."""
    folder = config.get("RELEASE_KEYS_DIR") or Path(config["DATA_DIR"]) / DEFAULT_DIR
    folder = Path(folder)
    files = sorted(folder.glob("*.pub")) if folder.is_dir() else []
    listed = config.get("RELEASE_KEYS") or ""
    files += [Path(item.strip()) for item in listed.split(",") if item.strip()]
    return files


def load_trusted_keys(config: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key for every configured key file; ConfigError for a file that is
    missing or not an Ed25519 public key."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in key_files(config):
        try:
            key = load_public_key(path.read_bytes(), "release key %s" % path)
        except OSError as exc:
            raise ConfigError("release key %s cannot be read: %s" % (path, exc.strerror)) from None
        except ReleaseError as exc:
            raise ConfigError(str(exc)) from None
        keys[key_id(key)] = key
    return keys
