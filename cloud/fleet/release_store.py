"""Release files on disk, stored once per content: ``<root>/<sha256>``.

A file is written to a temporary name in the same folder while its size and SHA-256 are
checked, flushed to disk, then renamed into place: a reader (a board downloading it) sees
the whole checked file or nothing. Several cloud replicas may share the folder: two
writers of one blob write the same bytes, and the rename is atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import IO

CHUNK = 65536


class BlobMismatch(ValueError):
    """The bytes sent are not the file the manifest names; the message says how."""


class BlobStore:
    """Release file contents under ``root`` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` (64 lower-case hex digits) is kept."""
        return self.root / sha256

    def write(self, sha256: str, size: int, stream: IO[bytes]) -> None:
        """Store ``size`` bytes from ``stream`` as blob ``sha256``; BlobMismatch (nothing
        stored) when the stream is longer or shorter or hashes differently."""
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / (".%s.%s.tmp" % (sha256, secrets.token_hex(4)))
        digest = hashlib.sha256()
        received = 0
        try:
            with temporary.open("xb") as f:
                while chunk := stream.read(min(CHUNK, size + 1 - received)):
                    received += len(chunk)
                    if received > size:
                        raise BlobMismatch("more than the manifest's %d bytes" % size)
                    digest.update(chunk)
                    f.write(chunk)
                if received != size:
                    raise BlobMismatch("%d bytes, the manifest says %d" % (received, size))
                if digest.hexdigest() != sha256:
                    raise BlobMismatch("the bytes do not have the SHA-256 in the URL")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path(sha256))
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        _sync_folder(self.root)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX: fsync the folder)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
