"""Release manifests: what a signed software release contains. This docstring is the wire
contract; the signing tool, the cloud and the boards all use this same module.

A release is a bundle of files and a manifest naming each file's device path, SHA-256 and
size, signed with a release key (Ed25519 over the manifest's exact bytes; the signature
travels beside it in ``manifest.sig``, see ``provisioning/release_signing.py``). Format 1
is one JSON object, as canonical bytes::

    {"board":"esp32","files":[{"path":"/lib/bankiot_core/cbor.py","sha256":"<64 hex>",
     "size":1234},...],"format":1,"product":"bankiot-gateway","version":"1.4.0"}

- Canonical means: keys sorted, separators ``,`` and ``:`` with no whitespace, no trailing
  newline, ASCII only, integers in plain decimal, no string escapes. Every string field has
  a charset that needs no escaping (below), so the canonical form is unique and anything
  else (reordered keys, spaces, ``\\u`` escapes, duplicate keys, ``1.0`` for ``1``) is
  refused: a signature covers one byte string, and every reader sees the same content.
- ``format``: 1. ``product``: ``"bankiot-gateway"``. ``board``: one of ``BOARDS``
  (``esp32``, ``picow``, ``rpi``): a board refuses a release for another board.
- ``version``: ``MAJOR.MINOR.PATCH`` (decimal, no leading zeros, each at most 65535) with an
  optional pre-release after ``-`` (``[0-9A-Za-z.-]``, dot-separated non-empty identifiers,
  numeric ones without leading zeros), as SemVer 2.0; no build metadata. ``version_key``
  orders versions by SemVer precedence (``1.0.0-rc.1`` < ``1.0.0``), for rollouts and for a
  board refusing a downgrade.
- ``files``: 1..``MAX_FILES`` entries sorted by ``path`` (byte order), paths unique.
  ``path``: an absolute device path: ``/`` then segments of ``[A-Za-z0-9_.-]`` separated by
  single ``/``, no segment ``.`` or ``..``, at most ``MAX_PATH`` characters; no path is
  also a folder of another path. ``sha256``: 64 lower-case hex digits of the file's bytes.
  ``size``: its length in bytes, 0..``MAX_FILE_SIZE``; the sizes add up to at most
  ``MAX_TOTAL_SIZE``. Two paths may have the same content (and so the same ``sha256``).
- The manifest is at most ``MAX_MANIFEST_BYTES`` long, so a board can refuse an oversized
  one before parsing it.

``parse_manifest(data)`` returns a ``Manifest(board, version, files)`` (``files``: a tuple
of ``ManifestFile(path, sha256, size)``) or raises ``DecodeError`` with a one-line message
for anything that is not exactly this. ``encode_manifest(board, version, files)`` builds the
canonical bytes (sorting the files). ``FileCheck(entry)`` checks one file's bytes as they
stream in: ``feed(chunk)`` while writing, then ``ok()`` (True or False) or ``check()``
(raises ``AuthenticationError``), so a board can verify a file while it writes it.

Portable: MicroPython's ``json`` has no ``sort_keys``, so the canonical bytes are built here
by hand, which the restricted charsets make simple.
"""

import binascii
import hashlib
import json
from collections import namedtuple

from bankiot_core._compat import const
from bankiot_core.errors import AuthenticationError, DecodeError, LocalError

FORMAT = const(1)
PRODUCT = "bankiot-gateway"
BOARDS = ("esp32", "picow", "rpi")
MAX_MANIFEST_BYTES = const(65536)
MAX_FILES = const(256)
MAX_PATH = const(96)
MAX_FILE_SIZE = const(16777216)  # 16 MiB
MAX_TOTAL_SIZE = const(67108864)  # 64 MiB
MAX_VERSION = const(48)
_MAX_VERSION_PART = const(65535)

_KEYS = ("board", "files", "format", "product", "version")
_FILE_KEYS = ("path", "sha256", "size")
_DIGITS = "0123456789"
_HEX = "0123456789abcdef"
_ALNUM = _DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SEGMENT_CHARS = _ALNUM + "_.-"
_PRERELEASE_CHARS = _ALNUM + "-"

Manifest = namedtuple("Manifest", ("board", "version", "files"))
"""A parsed manifest: ``board``, ``version`` and ``files`` (a tuple sorted by path)."""

ManifestFile = namedtuple("ManifestFile", ("path", "sha256", "size"))
"""One file of a release: device path, SHA-256 (64 lower-case hex digits), size in bytes."""


def _only(text, allowed):
    return all(c in allowed for c in text)


def _number(text):
    """A decimal without leading zeros, or None."""
    if not text or not _only(text, _DIGITS) or (len(text) > 1 and text[0] == "0"):
        return None
    return int(text)


def _check_path(path):
    if not isinstance(path, str) or not 1 < len(path) <= MAX_PATH or path[0] != "/":
        raise DecodeError("file path must be absolute, 2..%d characters" % MAX_PATH)
    for segment in path[1:].split("/"):
        if not segment or segment in (".", "..") or not _only(segment, _SEGMENT_CHARS):
            raise DecodeError("file path %r is not a plain device path" % path)


def _release_parts(version):
    """``(major, minor, patch, prerelease identifiers or None)``; DecodeError if invalid."""
    if not isinstance(version, str) or not 0 < len(version) <= MAX_VERSION:
        raise DecodeError("version must be a string of 1..%d characters" % MAX_VERSION)
    dash = version.find("-")
    core = version if dash < 0 else version[:dash]
    numbers = []
    for part in core.split("."):
        number = _number(part)
        if number is None or number > _MAX_VERSION_PART:
            break
        numbers.append(number)
    if len(numbers) != 3 or core.count(".") != 2:
        raise DecodeError("version %r is not MAJOR.MINOR.PATCH[-PRERELEASE]" % version)
    if dash < 0:
        return numbers[0], numbers[1], numbers[2], None
    identifiers = version[dash + 1 :].split(".")
    for identifier in identifiers:
        if not identifier or not _only(identifier, _PRERELEASE_CHARS):
            raise DecodeError("version %r has an empty or invalid pre-release" % version)
        if _only(identifier, _DIGITS) and _number(identifier) is None:
            raise DecodeError("version %r: numeric pre-release with a leading zero" % version)
    return numbers[0], numbers[1], numbers[2], identifiers


def version_key(version):
    """A key that orders versions by SemVer 2.0 precedence (section 11): numbers compared
    numerically, a pre-release before its release, pre-release identifiers compared in
    turn (numeric ones numerically and before alphanumeric ones, then by ASCII), a longer
    list of equal identifiers after a shorter one. DecodeError for an invalid version."""
    major, minor, patch, identifiers = _release_parts(version)
    if identifiers is None:
        return (major, minor, patch, 1, ())
    keyed = []
    for identifier in identifiers:
        if _only(identifier, _DIGITS):
            keyed.append((0, int(identifier), ""))
        else:
            keyed.append((1, 0, identifier))
    return (major, minor, patch, 0, tuple(keyed))


def _check_file(entry):
    path, sha256, size = entry
    _check_path(path)
    if not isinstance(sha256, str) or len(sha256) != 64 or not _only(sha256, _HEX):
        raise DecodeError("sha256 of %s must be 64 lower-case hex digits" % path)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_SIZE:
        raise DecodeError("size of %s must be an integer 0..%d" % (path, MAX_FILE_SIZE))


def _check_files(files):
    if not 0 < len(files) <= MAX_FILES:
        raise DecodeError("a release has 1..%d files, not %d" % (MAX_FILES, len(files)))
    total = 0
    folders = set()
    previous = None
    for entry in files:
        _check_file(entry)
        path = entry[0]
        if previous is not None and path <= previous:
            raise DecodeError("file paths must be unique and sorted (%s)" % path)
        previous = path
        total += entry[2]
        cut = path.rfind("/")
        while cut > 0:
            folders.add(path[:cut])
            cut = path.rfind("/", 0, cut)
    if total > MAX_TOTAL_SIZE:
        raise DecodeError("files add up to %d bytes, over %d" % (total, MAX_TOTAL_SIZE))
    for entry in files:
        if entry[0] in folders:
            raise DecodeError("%s is both a file and a folder" % entry[0])


def _canonical(board, version, files):
    parts = []
    for path, sha256, size in files:
        parts.append('{"path":"%s","sha256":"%s","size":%d}' % (path, sha256, size))
    return (
        '{"board":"%s","files":[%s],"format":%d,"product":"%s","version":"%s"}'
        % (board, ",".join(parts), FORMAT, PRODUCT, version)
    ).encode()


def _validate(board, version, files):
    if board not in BOARDS:
        raise DecodeError("board must be one of %s" % ", ".join(BOARDS))
    _release_parts(version)
    _check_files(files)


def encode_manifest(board, version, files):
    """The canonical manifest bytes of ``files`` (``ManifestFile`` or ``(path, sha256,
    size)`` tuples, any order) for ``board`` and ``version``. Raises ``LocalError`` for
    anything the format does not allow, including a result over ``MAX_MANIFEST_BYTES``."""
    entries = [ManifestFile(f[0], f[1], f[2]) for f in files]
    try:
        for entry in entries:
            _check_file(entry)
        entries.sort(key=lambda entry: entry[0])
        _validate(board, version, entries)
    except DecodeError as exc:
        raise LocalError("cannot build the manifest: %s" % exc.message) from None
    data = _canonical(board, version, entries)
    if len(data) > MAX_MANIFEST_BYTES:
        raise LocalError("manifest of %d bytes is over %d" % (len(data), MAX_MANIFEST_BYTES))
    return data


def _keys_are(obj, keys, what):
    if not isinstance(obj, dict) or len(obj) != len(keys):
        raise DecodeError("%s must be an object with exactly %s" % (what, ", ".join(keys)))
    for key in keys:
        if key not in obj:
            raise DecodeError("%s has no %s" % (what, key))


def parse_manifest(data):
    """The ``Manifest`` in ``data`` (bytes); ``DecodeError`` unless ``data`` is exactly the
    canonical encoding of a valid format-1 manifest."""
    data = bytes(data)
    if len(data) > MAX_MANIFEST_BYTES:
        raise DecodeError("manifest of %d bytes is over %d" % (len(data), MAX_MANIFEST_BYTES))
    try:
        obj = json.loads(data.decode())
    except (UnicodeError, ValueError):
        raise DecodeError("manifest is not JSON text") from None
    _keys_are(obj, _KEYS, "manifest")
    fmt = obj["format"]
    if isinstance(fmt, bool) or fmt != FORMAT:
        raise DecodeError("unknown manifest format %r" % (fmt,))
    if obj["product"] != PRODUCT:
        raise DecodeError("manifest is not for %s" % PRODUCT)
    listed = obj["files"]
    if not isinstance(listed, list):
        raise DecodeError("files must be a list")
    files = []
    for item in listed:
        _keys_are(item, _FILE_KEYS, "a file entry")
        files.append(ManifestFile(item["path"], item["sha256"], item["size"]))
    board, version = obj["board"], obj["version"]
    _validate(board, version, files)
    if _canonical(board, version, files) != data:
        raise DecodeError("manifest is not in canonical form")
    return Manifest(board, version, tuple(files))


class FileCheck:
    """Checks one file's bytes against its ``ManifestFile`` as they arrive.

    ``feed(chunk)`` for each piece, in order; more bytes than the manifest's size raise
    ``AuthenticationError`` at once (no need to write the rest). Then ``ok()`` says whether
    size and SHA-256 match, or ``check()`` raises ``AuthenticationError`` when they do not.
    The digest is final after either (hashlib objects finalise on ``digest()``).
    """

    def __init__(self, entry):
        self.entry = entry
        self.received = 0
        self._hash = hashlib.sha256()
        self._result = None

    def feed(self, chunk):
        """Add the next ``chunk`` of the file's bytes."""
        if self._result is not None:
            raise LocalError("FileCheck of %s is already finished" % self.entry[0])
        self.received += len(chunk)
        if self.received > self.entry[2]:
            raise AuthenticationError(
                "%s is longer than the manifest's %d bytes" % (self.entry[0], self.entry[2])
            )
        self._hash.update(chunk)

    def ok(self):
        """True when the bytes fed are exactly the file the manifest names."""
        if self._result is None:
            digest = binascii.hexlify(self._hash.digest()).decode()
            self._result = self.received == self.entry[2] and digest == self.entry[1]
        return self._result

    def check(self):
        """Raise ``AuthenticationError`` unless ``ok()``."""
        if not self.ok():
            if self.received != self.entry[2]:
                raise AuthenticationError(
                    "%s has %d bytes, the manifest says %d"
                    % (self.entry[0], self.received, self.entry[2])
                )
            raise AuthenticationError(
                "%s does not match its SHA-256 in the manifest" % self.entry[0]
            )
