"""Small files on the board's flash, written so that a power cut leaves old or new, never half.

littlefs (MicroPython's default on ESP32 and rp2) commits a closed file and a rename
atomically, so every write goes to ``<path>.tmp`` and is renamed over ``<path>``.
"""

import os


def exists(path):
    """True if ``path`` names a file or folder."""
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def makedirs(path):
    """Create folder ``path`` and its missing parents (MicroPython has no ``os.makedirs``)."""
    here = ""
    for part in path.split("/"):
        if part:
            here = here + "/" + part
            if not exists(here):
                os.mkdir(here)


def read(path):
    """The bytes of file ``path``, or None if there is none."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def write(path, data):
    """Replace file ``path`` with ``data`` atomically (temp file, then rename)."""
    temp = path + ".tmp"
    with open(temp, "wb") as f:
        f.write(data)
    os.rename(temp, path)


def remove(path):
    """Remove file ``path`` if it exists; True if it did."""
    try:
        os.remove(path)
    except OSError:
        return False
    return True
