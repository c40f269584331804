"""Queue storage as files: one file per batch in a directory, for littlefs on the boards.

The ``bankiot_core.queue`` storage interface over a directory (``/data/queue`` on a board):

- batch ``seq`` is the file ``<seq, 12 digits zero-padded>.bin`` holding the envelope's bytes
  (the padding keeps a directory listing in queue order for people; the code sorts by number
  and accepts longer names);
- the meta record is the file ``meta``;
- every write goes to ``<name>.tmp`` first and is then renamed over ``<name>``. Opening removes
  every ``*.tmp``: a temp file is a write that was cut off, whether its bytes are complete or
  not (``put`` had not returned, so the batch was never accepted).

Power loss: littlefs, the default file system of MicroPython on ESP32 and rp2, is
copy-on-write, so a file's new contents and a rename are committed atomically when
``close`` and ``rename`` return; a power cut leaves the old state or the new one. FAT is not
power-loss tolerant (MicroPython's FAT ``rename`` over an existing file even removes the
target first): do not keep the queue on a FAT volume such as an SD card. On CPython the
writes are flushed with ``fsync`` (file, then directory), which makes them durable on
journaling file systems (ext4, APFS); MicroPython has no ``fsync``, and littlefs needs none.

Only the ``os`` functions MicroPython has are used: ``listdir``/``ilistdir``, ``stat``,
``mkdir``, ``remove``, ``rename``.
"""

import os

_SUFFIX = ".bin"
_TEMP = ".tmp"
_META = "meta"

_fsync = getattr(os, "fsync", None)  # CPython; MicroPython has none (littlefs needs none)
_os_open = getattr(os, "open", None)
_os_close = getattr(os, "close", None)
_O_RDONLY = getattr(os, "O_RDONLY", 0)


def _exists(path):
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def _mkdirs(path):
    """Create ``path`` and missing parents (MicroPython has no ``os.makedirs``)."""
    here = ""
    for part in path.split("/"):
        if part:
            here = here + "/" + part if here or path.startswith("/") else part
            if not _exists(here):
                os.mkdir(here)


def _seq_of(name):
    """The sequence number a batch file name stands for, or None for any other name."""
    if name.endswith(_SUFFIX):
        digits = name[: -len(_SUFFIX)]
        if digits and digits.isdigit():
            return int(digits)
    return None


class FileStorage:
    """Queue storage in directory ``root`` (created if missing). ``sync`` (CPython only)
    flushes every write to the disk with ``fsync`` before it counts as done."""

    def __init__(self, root, sync=True):
        self.root = root.rstrip("/") or "/"
        self._sync = sync and _fsync is not None
        _mkdirs(self.root)
        for name in os.listdir(self.root):
            if name.endswith(_TEMP):  # a write cut off by a crash or power cut
                os.remove(self._path(name))

    def _path(self, name):
        return self.root + "/" + name if self.root != "/" else "/" + name

    def _batch(self, seq):
        return self._path("%012d%s" % (seq, _SUFFIX))

    def _sync_dir(self):
        """Make renames and removals in the directory durable (CPython)."""
        if self._sync and _os_open is not None and _os_close is not None and _fsync is not None:
            fd = _os_open(self.root, _O_RDONLY)
            try:
                _fsync(fd)
            finally:
                _os_close(fd)

    def _write(self, path, data):
        """Write ``data`` to ``path`` atomically: temp file, then rename over ``path``."""
        temp = path + _TEMP
        with open(temp, "wb") as f:
            f.write(data)
            if self._sync and _fsync is not None:
                f.flush()
                _fsync(f.fileno())
        os.rename(temp, path)
        self._sync_dir()

    def _read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            if _exists(path):
                raise
            return None

    def _remove(self, path):
        try:
            os.remove(path)
        except OSError:
            if _exists(path):  # ask the file system, not errno: the same on every interpreter
                raise

    def entries(self):
        """Every stored batch, ``(seq, nbytes)`` in ascending ``seq``."""
        found = []
        ilistdir = getattr(os, "ilistdir", None)
        if ilistdir is not None:  # MicroPython: littlefs gives the size without a stat
            for entry in ilistdir(self.root):
                seq = _seq_of(entry[0])
                if seq is not None:
                    size = entry[3] if len(entry) > 3 else os.stat(self._path(entry[0]))[6]
                    found.append((seq, size))
        else:
            for name in os.listdir(self.root):
                seq = _seq_of(name)
                if seq is not None:
                    found.append((seq, os.stat(self._path(name))[6]))
        found.sort()
        return found

    def put(self, seq, data):
        """Store batch ``seq`` (temp file, then rename)."""
        self._write(self._batch(seq), data)

    def get(self, seq):
        """Batch ``seq``'s bytes, or None."""
        return self._read(self._batch(seq))

    def delete(self, seqs, meta=None):
        """Store ``meta`` (if given) first, then remove the files of ``seqs``."""
        if meta is not None:
            self._write(self._path(_META), meta)
        for seq in seqs:
            self._remove(self._batch(seq))
        if seqs:
            self._sync_dir()

    def load_meta(self):
        """The meta record, or None."""
        return self._read(self._path(_META))

    def close(self):
        """Nothing to release: every operation closes its files."""
