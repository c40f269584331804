"""Cases for ``bankiot_core.manifest``, runnable under CPython and MicroPython.

``tests/core/test_manifest.py`` runs ``run(cases)`` on CPython and, from this same file
installed as ``/lib/manifest_scenario.py``, under real MicroPython, and compares both with
answers from independent sources (CPython's ``json`` with ``sort_keys``, ``hashlib``, the
SemVer 2.0 specification). ``cases`` is JSON data:

- ``"encode"``: ``[board, version, [[path, sha256, size], ...]]``; the result has the
  manifest text, or ``"LocalError"``;
- ``"parse"``: manifest texts; the result has ``[board, version, files]`` or
  ``"DecodeError"``;
- ``"check"``: ``[[path, sha256, size], [hex chunk, ...]]``; the result has what ``ok()``
  answered, or the name of the error ``feed``/``check`` raised;
- ``"order"``: versions; the result is them sorted by ``version_key``, each invalid one
  replaced by ``"DecodeError"`` and put first.

Common subset of CPython and MicroPython: no f-strings, no annotations.
"""

import binascii

from bankiot_core import manifest
from bankiot_core.errors import AuthenticationError, DecodeError, LocalError


def _parse(text):
    try:
        parsed = manifest.parse_manifest(text.encode())
    except DecodeError:
        return "DecodeError"
    return [parsed.board, parsed.version, [list(f) for f in parsed.files]]


def _encode(board, version, files):
    try:
        return manifest.encode_manifest(board, version, [tuple(f) for f in files]).decode()
    except LocalError:
        return "LocalError"


def _check(entry, chunks):
    check = manifest.FileCheck(manifest.ManifestFile(entry[0], entry[1], entry[2]))
    try:
        for chunk in chunks:
            check.feed(binascii.unhexlify(chunk))
        ok = check.ok()
        check.check()
    except AuthenticationError:
        return "AuthenticationError"
    return ok


def run(cases):
    out = {"encode": [], "parse": [], "check": [], "order": []}
    for board, version, files in cases["encode"]:
        out["encode"].append(_encode(board, version, files))
    for text in cases["parse"]:
        out["parse"].append(_parse(text))
    for entry, chunks in cases["check"]:
        out["check"].append(_check(entry, chunks))
    invalid = []
    valid = []
    for version in cases["order"]:
        try:
            valid.append((manifest.version_key(version), version))
        except DecodeError:
            invalid.append("DecodeError")
    valid.sort()
    out["order"] = invalid + [v for _, v in valid]
    return out
