"""Batch sequence numbers that never repeat, across reboots and power cuts.

A sealed batch's sequence number is its COSE Partial IV: the AES-CCM nonce is built from it,
so a number used twice under one key would reuse a nonce. Writing the counter to flash for
every batch would wear the flash and cost a write per batch; instead numbers are reserved
ahead in blocks, as OSCORE does (RFC 8613 Appendix B.1.1):

- the store holds ``reserved``: every number below it may have been handed out;
- ``take()`` hands out numbers from memory while they are below ``reserved``; the first
  number at or above it first persists ``reserved = number + block`` (``store.save``) and
  only then hands the number out;
- after a reboot or a power cut (memory lost), counting restarts at the stored ``reserved``:
  the unused rest of the last block is skipped, never reused.

So at most ``block`` numbers are lost per restart, and the store is written once per
``block`` batches. If ``save`` raises (the flash is full, the file system is damaged) the
exception propagates and no number is handed out; the next ``take()`` tries again. The
receiver sees a gap after a restart: skipped numbers are not lost batches (the queue reports
those, see ``queue``).

Numbers run from 0 to ``MAX_SEQUENCE`` (2**40 - 1, the five bytes of Partial IV that OSCORE
and ``cose`` allow). At the end ``take()`` raises LocalError: the gateway needs a new key
version (``cose``) and a fresh store before it may seal again.

Stores are any object with ``load() -> int or None`` (None: never saved) and ``save(int)``,
which must be atomic: after a power cut ``load`` returns the old value or the new one.
``FileCounterStore`` is that for littlefs (the boards) and POSIX file systems (CPython);
``MemoryCounterStore`` keeps the value in memory (tests, and a cloud-side sender that has
its own durable state).
"""

import os

from bankiot_core._compat import const
from bankiot_core.errors import ConfigError, LocalError

MAX_SEQUENCE = 0xFFFFFFFFFF  # 2**40 - 1: cose.MAX_SEQ (not const(): no small int on boards)
DEFAULT_BLOCK = const(1024)
_MAX_BLOCK = const(0x100000)

_fsync = getattr(os, "fsync", None)  # CPython; MicroPython has none (littlefs needs none)
_os_open = getattr(os, "open", None)
_os_close = getattr(os, "close", None)
_O_RDONLY = getattr(os, "O_RDONLY", 0)


class SequenceNumbers:
    """Hands out increasing sequence numbers that never repeat (see the module docstring).

    ``store``: the ``load``/``save`` object; ``block``: numbers reserved per save (1 to
    2**20); ``limit``: the largest number (at most ``MAX_SEQUENCE``). Raises LocalError if
    the stored value is not a valid reservation (a damaged store cannot promise anything),
    ConfigError for a bad ``block`` or ``limit``.
    """

    def __init__(self, store, block=DEFAULT_BLOCK, limit=MAX_SEQUENCE):
        if type(block) is not int or not 1 <= block <= _MAX_BLOCK:
            raise ConfigError("block is an int in 1..%d, got %r" % (_MAX_BLOCK, block))
        if type(limit) is not int or not 0 <= limit <= MAX_SEQUENCE:
            raise ConfigError("limit is an int in 0..2**40-1, got %r" % (limit,))
        reserved = store.load()
        if reserved is None:
            reserved = 0
        elif type(reserved) is not int or not 0 <= reserved <= limit + 1:
            raise LocalError(
                "stored sequence reservation %r is not an int in 0..%d" % (reserved, limit + 1)
            )
        self._store = store
        self._block = block
        self._limit = limit
        self._next = reserved
        self._reserved = reserved
        # The first number this run hands out: the rest of the previous run's last block,
        # below it, was skipped.
        self.first = reserved

    @property
    def next(self):
        """The number ``take()`` will hand out next."""
        return self._next

    @property
    def reserved(self):
        """The stored reservation: every number below it may have been handed out."""
        return self._reserved

    def take(self):
        """The next sequence number; persists a new block first when the current one is used.

        Raises LocalError when the numbers are exhausted, and whatever ``store.save`` raises.
        """
        n = self._next
        if n > self._limit:
            raise LocalError(
                "sequence numbers exhausted at %d: rotate to a new key version" % self._limit
            )
        if n >= self._reserved:
            reserved = n + self._block
            if reserved > self._limit + 1:
                reserved = self._limit + 1
            self._store.save(reserved)  # before the number leaves: a crash now skips the block
            self._reserved = reserved
        self._next = n + 1
        return n


class MemoryCounterStore:
    """A store in memory: ``value`` is what ``load`` returns (None: never saved)."""

    def __init__(self, value=None):
        self.value = value
        self.saves = 0

    def load(self):
        return self.value

    def save(self, value):
        self.value = value
        self.saves += 1


def _parse(data, path):
    """The reservation in a counter file's bytes: ASCII digits and a newline."""
    if len(data) < 2 or len(data) > 21 or data[-1] != 0x0A:
        raise LocalError("counter file %s is damaged (%d bytes)" % (path, len(data)))
    value = 0
    for i in range(len(data) - 1):
        c = data[i]
        if not 0x30 <= c <= 0x39:
            raise LocalError("counter file %s is damaged (not digits)" % path)
        value = value * 10 + c - 0x30
    return value


class FileCounterStore:
    """A counter in the file ``path``: a decimal number and a newline.

    ``save`` writes ``path + ".tmp"`` and renames it over ``path``. On littlefs (the default
    file system of MicroPython on ESP32 and rp2) a closed file and a rename are committed
    atomically, so a power cut leaves the old value or the new one; on CPython the file and
    then its directory are flushed with ``fsync`` (``sync=True``) so the rename is durable.
    A temp file left by a cut-off ``save`` is ignored: that ``save`` never returned, so no
    number of its block was handed out. FAT is not power-loss tolerant: keep the file on
    littlefs. The directory must exist.
    """

    def __init__(self, path, sync=True):
        self.path = str(path)  # a pathlib.Path on CPython
        self._temp = self.path + ".tmp"
        self._sync = sync and _fsync is not None

    def load(self):
        """The saved value, or None if there is none. LocalError if the file is damaged."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            try:
                os.stat(self.path)
            except OSError:  # no file: never saved (asked of the file system, not of errno)
                return None
            raise
        return _parse(data, self.path)

    def save(self, value):
        """Replace the saved value with ``value`` (an int >= 0), atomically."""
        if type(value) is not int or value < 0:
            raise LocalError("a counter is an int >= 0, got %r" % (value,))
        with open(self._temp, "wb") as f:
            f.write(b"%d\n" % value)
            if self._sync and _fsync is not None:
                f.flush()
                _fsync(f.fileno())
        self._rename(self._temp, self.path)
        if self._sync:
            self._sync_dir()

    def _rename(self, source, target):
        """Rename ``source`` over ``target`` (a seam where tests cut the power)."""
        os.rename(source, target)

    def _sync_dir(self):
        """Make the rename durable (CPython): fsync the directory that holds the file."""
        if _os_open is None or _os_close is None or _fsync is None:
            return
        cut = self.path.rfind("/")
        folder = self.path[:cut] if cut > 0 else ("/" if cut == 0 else ".")
        fd = _os_open(folder, _O_RDONLY)
        try:
            _fsync(fd)
        finally:
            _os_close(fd)
