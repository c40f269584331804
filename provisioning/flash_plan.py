"""What ``bankiot flash`` does to a board's files: pure decisions, no I/O.

The board's software is the bundle (``bankiot firmware build``): ``/boot.py``, ``/main.py``
and the folders ``MANAGED``. A file whose SHA-256 on the board is the bundle's is left as
it is; the others are written. A file under a managed folder that the bundle does not
have is removed: a stale ``app/x.py`` would otherwise shadow the bundle's ``app/x.mpy``
(MicroPython imports ``.py`` before ``.mpy``), and a module the release dropped would still
import.

Installing identity (``identity=True``) makes it a clean install of a new device: what
the board kept for an earlier identity goes (``CLEARED_FOR_IDENTITY``: the queue of
batches sealed with the old key, the sequence counter, the configuration and command log
from the cloud, an update's release folders), so nothing of the old identity is sent
under the new one.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

MANAGED = ("/app", "/lib", "/boards")
TOP_FILES = ("/boot.py", "/main.py")
CLEARED_FOR_IDENTITY = ("/data", "/releases")


@dataclass(frozen=True)
class BundleFile:
    """One file of the bundle: its device path, SHA-256 (hex) and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Plan:
    """What to do: files to ``copy`` (in order), files already there (``unchanged``),
    paths to ``remove``, and the folders the copies need (``folders``, parents first)."""

    copy: tuple[BundleFile, ...]
    unchanged: tuple[BundleFile, ...]
    remove: tuple[str, ...]
    folders: tuple[str, ...]

    @property
    def copy_bytes(self) -> int:
        """Bytes to write."""
        return sum(f.size for f in self.copy)


def managed(path: str) -> bool:
    """Whether ``path`` belongs to the software ``bankiot flash`` installs."""
    return path in TOP_FILES or any(path.startswith(folder + "/") for folder in MANAGED)


def plan(
    bundle: Mapping[str, BundleFile], on_board: Mapping[str, str], identity: bool = False
) -> Plan:
    """The plan that makes the board's software ``bundle`` (device path -> file), given the
    SHA-256 of what ``on_board`` already holds (device path -> hex), and clears what an
    earlier identity left when ``identity``."""
    outside = sorted(p for p in bundle if not managed(p))
    if outside:
        raise ValueError(
            "the bundle has %s outside %s: not a firmware bundle"
            % (outside[0], ", ".join(MANAGED + TOP_FILES))
        )
    copy, unchanged = [], []
    for path in sorted(bundle):
        entry = bundle[path]
        (unchanged if on_board.get(path) == entry.sha256 else copy).append(entry)
    stale = [p for p in sorted(on_board) if managed(p) and p not in bundle]
    if identity:
        stale += list(CLEARED_FOR_IDENTITY)
    folders: set[str] = set()
    for entry in copy:
        parent = posixpath.dirname(entry.path)
        while parent not in ("", "/"):
            folders.add(parent)
            parent = posixpath.dirname(parent)
    return Plan(
        tuple(copy),
        tuple(unchanged),
        tuple(stale),
        tuple(sorted(folders, key=lambda p: (p.count("/"), p))),
    )
