"""Releases on the board's flash, the pointer that picks one, and picking it at boot.

Layout (littlefs)::

    /releases/1.4.0/           a release, whole: its files at their manifest paths
    /releases/1.4.0/app/...    (app/, lib/bankiot_core/, boards/...), manifest.json and
    /releases/1.4.0/lib/...    manifest.sig (or manifest.mac) beside them
    /releases/current          the release to run: its version, one line
    /releases/previous         the release a successful trial replaced (kept to go back to)
    /releases/trial.json       the update on trial (``app.update_plan``), if any
    /releases/.incoming/       a download under way: renamed to /releases/<version> when
                               every file checked out, removed at start otherwise

Without ``current`` the base install runs: the files at ``/app``, ``/lib`` and
``/boards`` that flashing put there. ``boot.py`` calls ``select()``: it reads the pointer
(written temp-then-rename, ``store.write``: a power cut leaves the old or the new one) and
puts ``/releases/<version>`` and its ``lib`` first on ``sys.path``, so the release's
``app``, ``boards`` and ``bankiot_core`` shadow the base install's. ``boot.py`` and
``main.py`` themselves always run from ``/``: they are the board's loader, kept small,
and a release can never break them.

Before selecting, ``select`` applies the trial's start rules without counting the start
(the application counts it, ``app.updates``): a trial that is over (too many starts) is
rolled back here, so a release that keeps resetting the board goes before the crash-loop
counter reaches safe mode. ``failed`` is what ``main.py`` calls when starting raised:
a release on trial that cannot even start is rolled back at once.
"""

import json
import os
import sys

from app import store, update_plan

ROOT = "/releases"
POINTER = "/releases/current"
PREVIOUS = "/releases/previous"
TRIAL = "/releases/trial.json"
INCOMING = "/releases/.incoming"
_NAME_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-"


def folder(version):
    """Where release ``version`` is kept."""
    return "%s/%s" % (ROOT, version)


def _plain(name):
    return bool(name) and name[0] != "." and all(c in _NAME_CHARS for c in name)


def read_pointer(path=POINTER):
    """The version ``path`` points to, or None (none, or not a plain version name)."""
    data = store.read(path)
    if not data:
        return None
    try:
        name = data.decode().strip()
    except UnicodeError:
        return None
    return name if _plain(name) else None


def write_pointer(version, path=POINTER):
    """Point ``path`` at ``version`` atomically (None: remove it: the base install runs)."""
    if version is None:
        store.remove(path)
    else:
        store.write(path, version.encode())


def load_trial(path=TRIAL):
    """The trial saved at ``path`` (a dict), or None (none, or unreadable)."""
    data = store.read(path)
    if data is None:
        return None
    try:
        trial = json.loads(data)
    except ValueError:
        return None
    if not isinstance(trial, dict):
        return None
    for key in ("version", "previous", "command", "attempts", "state", "reason"):
        if key not in trial:
            return None
    return trial


def save_trial(trial, path=TRIAL):
    """Save ``trial`` atomically (None: delete it)."""
    if trial is None:
        store.remove(path)
    else:
        store.write(path, json.dumps(trial).encode())


def running(path=None):
    """The release this interpreter runs (the ``/releases/<version>`` that ``select`` put
    on ``sys.path``), or None: the base install."""
    prefix = ROOT + "/"
    for entry in path if path is not None else sys.path:
        if entry.startswith(prefix) and "/" not in entry[len(prefix) :]:
            return entry[len(prefix) :]
    return None


def roll_back(trial, reason):
    """Mark ``trial`` rolled back for ``reason`` and point back at its previous release
    (in that order: the failure is never lost). Returns the saved trial."""
    rolled = dict(trial)
    rolled["state"] = update_plan.ROLLED_BACK
    rolled["reason"] = reason
    save_trial(rolled)
    if rolled.get("kind", "files") == "files":
        write_pointer(rolled["previous"])
    return rolled


def select(limits=update_plan.DEFAULT_LIMITS, modules=None):
    """At boot: apply the trial's start rules, then put the release ``current`` names first
    on ``sys.path``. Returns the version selected, or None (the base install)."""
    trial = load_trial()
    version = read_pointer()
    if trial is not None and trial.get("kind", "files") == "files":
        step = update_plan.decide(trial, update_plan.START, version, 0, limits)
        if step.do == update_plan.ROLL_BACK:
            print("bankiot: update rolled back: %s" % step.detail)
            roll_back(trial, step.detail)
            version = read_pointer()
    if version is None or not store.exists(folder(version) + "/app"):
        return None
    where = folder(version)
    sys.path.insert(0, where + "/lib")
    sys.path.insert(0, where)
    table = modules if modules is not None else sys.modules
    for name in list(table):  # this module's own package came from the base install
        if name in ("app", "boards", "bankiot_core") or name.split(".")[0] in (
            "app",
            "boards",
            "bankiot_core",
        ):
            del table[name]
    return version


def failed(exc, path=None):
    """``main.py``: starting raised ``exc``. A release on trial is rolled back at once;
    True if it was (the board must then reset into the previous release). ``path``: the
    ``sys.path`` the failed start ran with."""
    trial = load_trial()
    version = running(path)
    if trial is None or trial["state"] != update_plan.TRIAL or trial["version"] != version:
        return False
    roll_back(trial, "%s failed to start: %s: %s" % (version, type(exc).__name__, exc))
    return True


def remove_tree(path):
    """Remove folder ``path`` and everything in it (MicroPython has no ``shutil``)."""
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        child = "%s/%s" % (path, entry[0])
        if entry[1] == 0x4000:  # a folder
            remove_tree(child)
        else:
            os.remove(child)
    os.rmdir(path)


def tidy(keep):
    """Remove release folders not named in ``keep`` and an interrupted download; the
    names removed. Never touches anything but ``/releases/<name>`` folders."""
    removed = []
    try:
        entries = list(os.ilistdir(ROOT))
    except OSError:
        return removed
    for entry in entries:
        name = entry[0]
        if entry[1] != 0x4000 or name in keep:
            continue
        if name == ".incoming" or _plain(name):
            remove_tree(folder(name))
            removed.append(name)
    return removed
