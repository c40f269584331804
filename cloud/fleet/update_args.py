"""What an ``update`` command carries: its arguments when a rollout issues it, and as they
are sent to one board, with the board's per-device release MAC.

A rollout issues ``{release, version, board}`` (``issued``) and stores it with the command.
A board running the MicroPython firmware (``MAC_BOARDS``) may check a release by MAC
instead of by its signature (``firmware/app/updates.py``, docs/firmware.md), so every
``update`` sent to one carries ``mac`` too: HMAC-SHA256 of the release's manifest under a
key derived from the board's envelope secret and key version (``release_mac``). Both are
known only when the message is sealed, and the key version may change between two sends
of the same command (a key rotation), so the MAC is added then (``as_sent``, called by
``delivery``) and never stored: the command's stored arguments, which the API shows, hold
no MAC.

The MAC passes on the release key's word, so it is computed only over a manifest whose
signature the cloud checked: a ``releases`` row exists only once ``releases.create_release``
verified the signature over those exact bytes with a trusted key, and is never changed
after; ``as_sent`` also checks the stored bytes against the SHA-256 recorded then, and
that the release is the one the command names (board and version).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.orm import Session

from cloud.fleet import release_mac
from cloud.fleet.release_models import Release

UPDATE = "update"
MAC_BOARDS = ("esp32", "picow")
"""Boards running the MicroPython firmware: their ``update`` commands carry ``mac``."""


class UpdateArgsError(Exception):
    """An ``update`` command that cannot be sent (its release is gone or does not match);
    ``message`` is one line for the command's detail."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def issued(release: Release) -> dict[str, Any]:
    """The arguments a rollout stores with the ``update`` command of ``release``."""
    return {"release": release.id, "version": release.version, "board": release.board}


def signed_manifest(session: Session, args: dict[str, Any]) -> bytes:
    """The exact manifest bytes of the release ``args`` name, as verified at upload;
    UpdateArgsError if there is no such release or it is not the one named."""
    release_id = args.get("release")
    release = session.get(Release, release_id) if isinstance(release_id, int) else None
    if release is None:
        raise UpdateArgsError("release %r does not exist" % (release_id,))
    if (release.board, release.version) != (args.get("board"), args.get("version")):
        raise UpdateArgsError(
            "release %d is %s %s, not what the command names"
            % (release.id, release.board, release.version)
        )
    manifest = release.manifest.encode("ascii")
    if hashlib.sha256(manifest).hexdigest() != release.manifest_sha256:
        raise UpdateArgsError("release %d: its manifest changed since it was verified" % release.id)
    return manifest


def as_sent(
    session: Session, name: str, args: Any, uid: str, key_version: int, secret: bytes
) -> Any:
    """The arguments of command ``name`` as sealed for gateway ``uid`` under ``key_version``
    (whose envelope secret is ``secret``): an ``update`` for a board in ``MAC_BOARDS`` gains
    ``mac`` (64 hex digits); anything else is sent as stored."""
    if name != UPDATE or not isinstance(args, dict) or args.get("board") not in MAC_BOARDS:
        return args
    manifest = signed_manifest(session, args)
    mac = release_mac.manifest_mac(secret, uid, key_version, manifest)
    return {**args, "mac": mac.hex()}
