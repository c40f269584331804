"""A board's filesystem through its raw REPL: list with SHA-256, write, verify, remove.

Everything runs as small pieces of MicroPython sent with ``RawRepl.exec``; files travel
base64-encoded (``binascii.a2b_base64`` on the board) in pieces of ``CHUNK`` bytes, so no
piece of code needs much of a board's RAM. Each file is written to ``<path>.tmp`` and then
renamed over the old one (littlefs keeps the old or the new across a power cut) and its
SHA-256 is computed on the board (``hashlib``) and compared afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable

from provisioning.repl import RawRepl, ReplError

CHUNK = 1536  # bytes of file per piece of code (2 KB of base64)
_DIR = 0x4000  # os.ilistdir type of a folder

_HASH_FUNCTIONS = """
import os, hashlib, binascii
def _h(p):
    h = hashlib.sha256()
    b = bytearray(512)
    f = open(p, 'rb')
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(memoryview(b)[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
def _walk(d):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            _walk(p)
        else:
            print(p, _h(p))
"""


class BoardFileError(ReplError):
    """A file could not be written or checked on the board."""


def _literal(value: str) -> str:
    """``value`` as a Python string literal (JSON's is one for the paths used here)."""
    return json.dumps(value)


def platform(repl: RawRepl) -> str:
    """The board's ``sys.platform`` (``esp32``, ``rp2``; ``webassembly`` for the virtual)."""
    return repl.exec("import sys\nprint(sys.platform)").decode().strip()


def unique_id(repl: RawRepl) -> str:
    """``machine.unique_id()`` in hex: the chip's own identifier (an ESP32's MAC)."""
    code = "import machine, binascii\nprint(binascii.hexlify(machine.unique_id()).decode())"
    return repl.exec(code).decode().strip()


def file_hashes(repl: RawRepl, folders: Iterable[str], files: Iterable[str]) -> dict[str, str]:
    """SHA-256 (hex) of every file under ``folders`` (recursively) and of each of ``files``
    that exists: device path -> hash."""
    code = _HASH_FUNCTIONS
    for folder in folders:
        code += "_walk(%s)\n" % _literal(folder.rstrip("/"))
    for path in files:
        code += "try:\n    print(%s, _h(%s))\nexcept OSError:\n    pass\n" % (
            _literal(path),
            _literal(path),
        )
    hashes = {}
    for line in repl.exec(code).decode().splitlines():
        path, _, digest = line.strip().rpartition(" ")
        if path:
            hashes[path] = digest
    return hashes


def sha256_of(repl: RawRepl, path: str) -> str | None:
    """The SHA-256 (hex) of ``path`` on the board, None if it is not there."""
    found = file_hashes(repl, (), (path,))
    return found.get(path)


def make_folders(repl: RawRepl, folders: Iterable[str]) -> None:
    """Create each folder (parents first) that does not exist yet."""
    wanted: set[str] = set()
    for folder in folders:
        parts = folder.strip("/").split("/")
        wanted.update("/" + "/".join(parts[: i + 1]) for i in range(len(parts)) if parts[0])
    if not wanted:
        return
    paths = sorted(wanted, key=lambda p: (p.count("/"), p))
    code = "import os\nfor p in %s:\n    try:\n        os.mkdir(p)\n    except OSError:\n" % (
        json.dumps(paths)
    )
    code += "        pass\n"
    repl.exec(code)


def write_file(
    repl: RawRepl,
    path: str,
    data: bytes,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``data`` to ``path`` (its folder must exist): to ``path.tmp`` in pieces, renamed
    over ``path``, then its SHA-256 checked on the board. ``progress(n)`` after each piece.
    ``BoardFileError`` if the board's copy does not match."""
    temp = path + ".tmp"
    repl.exec(
        "from binascii import a2b_base64 as _d\n_f = open(%s, 'wb')\n_w = _f.write" % _literal(temp)
    )
    try:
        for start in range(0, len(data), CHUNK):
            piece = data[start : start + CHUNK]
            repl.exec("_w(_d(b'%s'))" % base64.b64encode(piece).decode())
            if progress is not None:
                progress(len(piece))
    finally:
        repl.exec("_f.close()")
    repl.exec("import os\nos.rename(%s, %s)" % (_literal(temp), _literal(path)))
    expected = hashlib.sha256(data).hexdigest()
    found = sha256_of(repl, path)
    if found != expected:
        raise BoardFileError(
            "%s did not verify after writing (SHA-256 %s on the board, %s sent)"
            % (path, found or "missing", expected[:16])
        )


def read_file(repl: RawRepl, path: str) -> bytes | None:
    """The bytes of ``path`` on the board (small files: one piece), None if it is missing."""
    code = (
        "import binascii\ntry:\n    _f = open(%s, 'rb')\nexcept OSError:\n    _f = None\n"
        "if _f:\n    print(binascii.b2a_base64(_f.read()).decode().strip())\n    _f.close()\n"
        "else:\n    print('-')" % _literal(path)
    )
    text = repl.exec(code).decode().strip()
    return None if text == "-" else base64.b64decode(text)


def remove(repl: RawRepl, paths: Iterable[str]) -> None:
    """Remove each file or folder (with everything under it) in ``paths``; missing ones are
    no error."""
    targets = sorted(set(paths))
    if not targets:
        return
    code = (
        "import os\n"
        "def _rm(p):\n"
        "    try:\n"
        "        t = os.stat(p)[0]\n"
        "    except OSError:\n"
        "        return\n"
        "    if t & 0x4000:\n"
        "        for e in list(os.ilistdir(p)):\n"
        "            _rm(p + '/' + e[0])\n"
        "        os.rmdir(p)\n"
        "    else:\n"
        "        os.remove(p)\n"
        "for p in %s:\n"
        "    _rm(p)\n" % json.dumps(targets)
    )
    repl.exec(code)


def overwrite_and_remove(repl: RawRepl, paths: Iterable[str]) -> None:
    """Overwrite each existing file with zeros of its length, then remove it: for private
    material (a key). A best effort: littlefs writes the zeros to fresh blocks, so the old
    bytes may stay in free blocks until reused (``esptool erase-flash`` erases everything)."""
    targets = sorted(set(paths))
    if not targets:
        return
    code = (
        "import os\n"
        "for p in %s:\n"
        "    try:\n"
        "        n = os.stat(p)[6]\n"
        "    except OSError:\n"
        "        continue\n"
        "    f = open(p, 'wb')\n"
        "    f.write(bytes(n))\n"
        "    f.close()\n"
        "    os.remove(p)\n" % json.dumps(targets)
    )
    repl.exec(code)
