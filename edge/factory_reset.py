"""``factory_reset``: the Raspberry Pi gateway back to unprovisioned.

The cloud sends the command (operations only); the gateway then:

1. writes the marker ``<data_dir>/factory-reset`` (the uid and certificate serial being
   wiped), so that a power cut from here on finishes the wipe at the next start instead of
   leaving an enrolled gateway that believes it already ran the command;
2. reports the command ``done`` (the only moment it still can: afterwards it has no key to
   seal with), closes the open batch, and waits until the cloud has acknowledged every
   batch up to the one carrying the result, at most ``ACK_WAIT_S`` seconds; operations
   asked for the reset, so without an acknowledgement it wipes all the same (the cloud then
   shows the command ``sent`` until its own timeout, and the gateway goes silent);
3. stops every task, closes the queue and wipes (``wipe``): the private key and the
   envelope key are overwritten with zeros, synced and unlinked (on an SD card, wear
   levelling may keep older copies of the blocks: the revocation the re-claim makes is what
   ends the key's use), then the certificate, the CA chain, the enrollment record, identities
   put aside by ``enroll --force``, the engine state, the wearable bindings, the sequence
   store, the queue, the open-batch marker and the release trial. Releases and ``current``
   stay: they are signed code, not this gateway's data;
4. logs one line saying it must be re-enrolled and exits with ``UNPROVISIONED``, a status
   the systemd unit does not restart (``RestartPreventExitStatus=``).

``bankiot gateway run`` on a wiped gateway refuses with one line ("not enrolled"), with the
same exit status. A marker left by a wipe a power cut interrupted is finished first
(``finish_interrupted``); a marker whose identity was replaced by a new enrollment since is
stale and only removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bankiot_core.batch import STATUS_DONE
from edge import identity as files
from edge.errors import IdentityError

if TYPE_CHECKING:
    from bankiot_core.gateway import Action
    from edge.runtime import GatewayRuntime

log = logging.getLogger(__name__)

MARKER = "factory-reset"
UNPROVISIONED = 78  # EX_CONFIG: the unit's RestartPreventExitStatus; re-enroll first
ACK_WAIT_S = 60.0  # how long the result may take to be acknowledged before the wipe
CHECK_EVERY_S = 0.2
LOCK_FILE = ".enroll.lock"  # enrollment's and renewal's lock: none of them during a wipe
DETAIL = "wiping identity and data; re-enroll with a re-claim"
RE_ENROLL = (
    "factory reset: this gateway is no longer enrolled; re-enroll it with "
    "'bankiot gateway enroll' and a re-claim from an operator"
)
# What a wipe removes from the data folder besides identities (``edge.runtime``'s names,
# the SQLite queue's journal files, and the release trial).
DATA_FILES = (
    "engine-state.cbor",
    "bindings.sealed",  # the wearables' keys (encrypted: edge.bindings_store)
    "open-batch",
    "sequence",
    "sequence.tmp",
    "queue.sqlite3",
    "queue.sqlite3-wal",
    "queue.sqlite3-shm",
    "releases/trial.json",
)


# ---- the wipe ------------------------------------------------------------------------------


def shred(path: Path) -> bool:
    """Overwrite the regular file ``path`` with zeros, sync, and unlink it; whether it was
    there. A symbolic link is only unlinked (never follow one into another file)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:  # ELOOP: a link in place of the file
        path.unlink(missing_ok=True)
        return True
    try:
        size = os.fstat(fd).st_size
        zeros = bytes(min(size, 65536))
        left = size
        while left > 0:
            left -= os.write(fd, zeros[:left])
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    return True


def _identity_folders(data_dir: Path) -> list[Path]:
    folders = [files.identity_folder(data_dir)]
    folders += sorted(data_dir.glob(files.REPLACED_PREFIX + "*"))
    folders += sorted(data_dir.glob(".identity-new-*"))  # staged by an interrupted enrollment
    return [f for f in folders if f.is_dir() and not f.is_symlink()]


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Wait for an enrollment or renewal under way to finish; none starts meanwhile."""
    with (data_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def wipe(data_dir: Path) -> list[str]:
    """Wipe the gateway whose data folder is ``data_dir`` (module docstring, step 3); the
    names removed, relative to ``data_dir``. Secrets go first, the marker last, so that a
    wipe a power cut interrupts is finished by the next start. Safe to repeat."""
    removed: list[str] = []
    if not data_dir.is_dir():
        return removed
    with _locked(data_dir):
        folders = _identity_folders(data_dir)
        for folder in folders:
            for name in files.SECRET_FILES:
                if shred(folder / name):
                    removed.append(str((folder / name).relative_to(data_dir)))
        for name in DATA_FILES:
            path = data_dir / name
            if path.exists() or path.is_symlink():
                path.unlink()
                removed.append(name)
        for folder in folders:
            shutil.rmtree(folder)
            removed.append(folder.name + "/")
        files._fsync_folder(data_dir)
        if (data_dir / MARKER).exists():
            (data_dir / MARKER).unlink()
            files._fsync_folder(data_dir)
    return removed


# ---- the marker ----------------------------------------------------------------------------


def mark(data_dir: Path, uid: str | None, serial: str | None) -> None:
    """Record that a reset of the identity ``uid`` / ``serial`` has begun (step 1)."""
    files.write_private(data_dir / MARKER, json.dumps({"uid": uid, "serial": serial}).encode())


def finish_interrupted(data_dir: Path) -> bool:
    """At start: finish a wipe a power cut interrupted; whether one was finished (then the
    gateway is unprovisioned). A marker for an identity that a new enrollment has replaced
    since (another certificate serial) is stale: it is removed and False returned."""
    marker = data_dir / MARKER
    try:
        record = json.loads(marker.read_bytes())
    except FileNotFoundError:
        return False
    except ValueError:
        record = {}
    try:
        current = files.load_identity(data_dir)
    except IdentityError:
        current = None  # gone or half wiped: finish
    if (
        current is not None
        and isinstance(record, dict)
        and record.get("serial")
        not in (
            None,
            current.serial(),
        )
    ):
        marker.unlink()
        log.warning("removed a stale factory reset marker (the gateway was enrolled since)")
        return False
    wipe(data_dir)
    return True


# ---- in the runtime ------------------------------------------------------------------------


def delivered(runtime: GatewayRuntime, result_seq: int, through: int) -> bool:
    """Whether the batch ``result_seq`` (the command's result) was acknowledged, and no
    batch up to ``through`` (what was closed with it) still waits in the queue."""
    from edge.updates import acknowledged

    queue = runtime.engine.queue
    if not acknowledged(queue, result_seq):
        return False
    return all(seq > through for seq in queue.seqs())


@dataclass
class FactoryReset:
    """Carries out ``factory_reset`` in the runtime (module docstring, steps 1 and 2); the
    runtime wipes when it has stopped (step 3). ``wait_s``: the bound on the wait for the
    acknowledgement."""

    wait_s: float = ACK_WAIT_S
    started: bool = False
    requested: bool = False  # the wait is over: the runtime stops and wipes
    acknowledged: bool | None = None  # after the wait: whether the cloud had the result

    def accept(
        self, runtime: GatewayRuntime, action: Action, now: int
    ) -> asyncio.Task[None] | None:
        """Mark, report done, close the batch; return the task that waits and then stops
        (None: a reset is already under way, which this command joins)."""
        if self.started:
            runtime.engine.report(action.command_id, STATUS_DONE, DETAIL, now)
            return None
        self.started = True
        data_dir = runtime.state_path.parent
        uid = serial = None
        with contextlib.suppress(IdentityError):
            enrolled = files.load_identity(data_dir)
            uid, serial = enrolled.uid, enrolled.serial()
        mark(data_dir, uid, serial)
        engine = runtime.engine
        engine.report(action.command_id, STATUS_DONE, DETAIL, now)
        result_seq = engine.queue.last_seq
        engine.flush()  # readings accepted before the command go with it
        through = engine.queue.last_seq
        log.warning("factory reset asked (command %d): wiping once the cloud has the result",
                    action.command_id)  # fmt: skip
        return asyncio.ensure_future(self._wait(runtime, result_seq, through))

    async def _wait(self, runtime: GatewayRuntime, result_seq: int, through: int) -> None:
        runtime.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while not delivered(runtime, result_seq, through) and loop.time() < deadline:
            await asyncio.sleep(CHECK_EVERY_S)
        self.acknowledged = delivered(runtime, result_seq, through)
        if not self.acknowledged:
            log.warning(
                "factory reset: the cloud did not acknowledge the result within %g s; "
                "wiping all the same",
                self.wait_s,
            )
        self.requested = True
        runtime.request_restart()  # stops the runtime; ``run`` wipes and exits UNPROVISIONED

    def finish(self, runtime: GatewayRuntime) -> int:
        """With the runtime stopped and its queue closed: wipe, log, the exit status."""
        wipe(runtime.state_path.parent)
        log.warning(RE_ENROLL)
        return UNPROVISIONED
