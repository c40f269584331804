"""Signed software updates for the Raspberry Pi gateway: fetch, verify, install side by side,
switch atomically, and keep the new version on trial until the cloud has heard from it.

Folders, under ``<data_dir>/releases/``::

    1.4.0/manifest.json        a release, laid out as a bundle (``provisioning.release_signing``):
    1.4.0/manifest.sig         the signed manifest and its signature, and the files under
    1.4.0/files/edge/...       files/ at their manifest paths (a release for board "rpi" is
    1.4.0/files/bankiot_core/  the project's Python packages: a folder for sys.path)
    current -> 1.4.0           the release the service runs (a relative symbolic link)
    previous -> 1.3.0          the release the last successful trial replaced
    trial.json                 the update on trial (``edge.update_plan.Trial``), if any

Installing a release means: the manifest and its signature are downloaded, the signature is
checked with a trusted release key from ``gateway.toml`` (``[updates] release_keys``; keys
never come from the network), the board must be ``rpi`` and the version newer than the one
running (``bankiot_core.manifest.version_key``; ``allow_downgrade`` lifts that), then every
file is downloaded by its SHA-256 and checked while it is written (size and hash,
``bankiot_core.manifest.FileCheck``) into ``.incoming-<version>-<random>/``, which is
renamed to ``<version>/`` only when all of it checked out: a release folder is whole or
absent. ``current`` is switched by making a new link under a temporary name and renaming it
over ``current`` (``os.replace``): a reader sees the old link or the new one.

The service runs the release ``current`` points to: its ExecStart puts
``releases/current/files`` (resolved once, at start) in front of ``PYTHONPATH``, so the
release's packages shadow the installed ones; the third-party libraries (bleak, aiomqtt,
...) stay those of the installed environment. Without ``current`` the installed package runs
(the "base install"). The version a gateway reports is the release folder it runs from, else
``software_version`` from ``gateway.toml``.

The trial (decisions in ``edge.update_plan``): before switching, ``trial.json`` is written;
the gateway then restarts (exit status 75; systemd starts it again). Each start of the new
version counts; it becomes good once the cloud acknowledges the batch carrying its first
``running`` record (the engine queues it at start, the batch is closed at once, and its
sequence number is remembered: its leaving the queue by acknowledgement is the proof), and
then reports the ``update`` command done. Too many starts, or no acknowledgement within the
trial time, and ``current`` goes back to the previous release, the gateway restarts, and the
previous version reports the update failed ("rolled back: ...").

A release so broken that it cannot be imported dies before any of that runs. The unit's
``ExecStartPre`` (``bankiot gateway check-release``, from the installed package, so that a
broken release cannot break its own guard) imports the entry modules of a release on trial
in a subprocess with ``PYTHONPATH`` set as ExecStart sets it, and rolls ``current`` back when
that fails, or when the trial is over by the rules a start applies (``guard_start``); the
previous version then starts and reports the update failed.

Old releases: at start and after a trial succeeds, release folders other than the one
``current`` points to, the one it would roll back to (``previous``: a link to the release a
successful trial replaced; without it, the newest release older than ``current``), the one
running and a trial's two are removed, with stale ``.incoming-*`` downloads
(``remove_old_releases``). Without ``current`` (the base install runs) none is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bankiot_core.batch import STATUS_ACCEPTED, STATUS_DONE, STATUS_FAILED, STATUS_REFUSED
from bankiot_core.errors import CoreError
from bankiot_core.gateway import Action, Gateway
from bankiot_core.manifest import MAX_MANIFEST_BYTES, FileCheck, Manifest, version_key
from edge import update_plan as plan
from edge.errors import GatewayError
from provisioning import release_signing
from provisioning.release_signing import ReleaseError

log = logging.getLogger(__name__)

BOARD = "rpi"
RELEASES = "releases"
CURRENT = "current"
PREVIOUS = "previous"  # the release a successful trial replaced: kept for a manual rollback
TRIAL_FILE = "trial.json"
INCOMING = ".incoming-"
CHUNK = 65536
MAX_SIGNATURE_BYTES = 4096
CHECK_EVERY_S = 1.0


class UpdateError(GatewayError):
    """A release that is not installed: unreachable, unsigned, for another board, older,
    tampered with. The message is one line for the cloud's command result."""


# ---- keys and folders ----------------------------------------------------------------------


def load_release_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Key id -> trusted release public key, from PEM files (``[updates] release_keys``)."""
    keys = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UpdateError("release key %s: %s" % (path, exc.strerror or exc)) from None
        try:
            keys.append(release_signing.load_public_key(data, "release key %s" % path))
        except ReleaseError as exc:
            raise UpdateError(str(exc)) from None
    return release_signing.trusted_keys(keys)


def current_release(releases: Path, name: str = CURRENT) -> str | None:
    """The release ``current`` (or the link ``name``) points to, or None (no link: the base
    install)."""
    try:
        return Path(os.readlink(releases / name)).name
    except (FileNotFoundError, OSError):
        return None


def running_release(releases: Path, module_file: str | None = None) -> str | None:
    """The release this process runs: the ``releases/<version>`` folder its ``edge``
    package was imported from (``module_file``: a file of that package), or None."""
    if module_file is None:
        import edge

        module_file = edge.__file__ or ""
    folder = Path(module_file).resolve().parent.parent.parent  # <version>/files/edge/x.py
    try:
        if folder.parent == releases.resolve() and (folder / "manifest.json").is_file():
            return folder.name
    except OSError:
        pass
    return None


def switch_current(releases: Path, version: str | None, name: str = CURRENT) -> None:
    """Point ``current`` (or the link ``name``) at ``version`` atomically (None: remove it;
    without ``current`` the base install runs)."""
    link = releases / name
    if version is None:
        link.unlink(missing_ok=True)
    else:
        if not (releases / version / "manifest.json").is_file():
            raise UpdateError("release %s is not installed" % version)
        temporary = releases / (".%s.%s" % (name, os.urandom(6).hex()))
        os.symlink(version, temporary)
        try:
            os.replace(temporary, link)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    _fsync_folder(releases)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_trial(releases: Path) -> plan.Trial | None:
    """The trial saved in ``trial.json`` (None: none, or a file that does not parse, which
    is logged: a trial that cannot be read cannot be acted on)."""
    try:
        data = json.loads((releases / TRIAL_FILE).read_bytes())
        return plan.Trial(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        log.warning("ignoring %s: %s", releases / TRIAL_FILE, exc)
        return None


def save_trial(releases: Path, trial: plan.Trial | None) -> None:
    """Write ``trial.json`` atomically (None: delete it)."""
    path = releases / TRIAL_FILE
    if trial is None:
        path.unlink(missing_ok=True)
    else:
        temporary = path.with_name(".%s.%s" % (TRIAL_FILE, os.urandom(6).hex()))
        with temporary.open("w") as f:
            json.dump(asdict(trial), f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    _fsync_folder(releases)


# ---- fetch and install ---------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """A release folder, whole and verified: its version, folder and manifest."""

    version: str
    path: Path
    manifest: Manifest


def _opener(cafile: Path | None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = []
    if cafile is not None:
        try:
            context = ssl.create_default_context(cafile=str(cafile))
        except (OSError, ssl.SSLError) as exc:
            raise UpdateError("cannot use cafile %s: %s" % (cafile, exc)) from None
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


class _Http:
    """GETs from the cloud's device release downloads, errors as ``UpdateError``."""

    def __init__(self, cloud_url: str, cafile: Path | None, timeout: float) -> None:
        self.base = cloud_url.rstrip("/") + "/releases/v1/"
        self.opener = _opener(cafile)
        self.timeout = timeout

    @contextlib.contextmanager
    def get(self, path: str) -> Any:
        url = self.base + path
        try:
            with self.opener.open(url, timeout=self.timeout) as response:
                yield response
        except urllib.error.HTTPError as exc:
            raise UpdateError("GET %s: HTTP %d" % (url, exc.code)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UpdateError("GET %s failed: %s" % (url, reason)) from None

    def small(self, path: str, limit: int) -> bytes:
        with self.get(path) as response:
            data = response.read(limit + 1)
        if len(data) > limit:
            raise UpdateError("%s is over %d bytes" % (path, limit))
        return data


def check_release(
    manifest: Manifest, board: str, running: str | None, allow_older: bool, expect: str | None
) -> None:
    """Refuse a correctly signed release that is not for this gateway: another board, not
    the version the command names, or not newer than ``running`` (unless ``allow_older``)."""
    if manifest.board != board:
        raise UpdateError(
            "release %s is for board %s, not %s" % (manifest.version, manifest.board, board)
        )
    if expect is not None and manifest.version != expect:
        raise UpdateError("the command names %s but the release is %s" % (expect, manifest.version))
    if allow_older or running is None:
        return
    try:
        newer = version_key(manifest.version) > version_key(running)
    except CoreError:
        raise UpdateError("cannot compare with the running version %r" % running) from None
    if not newer:
        raise UpdateError("release %s is not newer than %s (running)" % (manifest.version, running))


def _download(http: _Http, entry: Any, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    check = FileCheck(entry)
    try:
        with http.get("blobs/%s" % entry.sha256) as response, target.open("xb") as f:
            while chunk := response.read(CHUNK):
                check.feed(chunk)  # refuses an over-long file before writing its excess
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        check.check()
    except CoreError as exc:
        raise UpdateError("release file refused: %s" % exc) from None


def fetch_release(
    cloud_url: str,
    release_id: int,
    dest: Path,
    *,
    trusted: Mapping[str, Ed25519PublicKey],
    running: str | None,
    board: str = BOARD,
    expect_version: str | None = None,
    allow_older: bool = False,
    cafile: Path | None = None,
    timeout: float = 30.0,
) -> Installed:
    """Download release ``release_id`` from ``cloud_url`` and install it as
    ``dest/<version>/`` (module docstring); ``dest`` is the releases folder. Nothing is
    switched. ``running``: the version running now. Raises ``UpdateError``; then no release
    folder was made (a half-downloaded one is removed)."""
    if not trusted:
        raise UpdateError("no release keys are trusted ([updates] release_keys in gateway.toml)")
    http = _Http(cloud_url, cafile, timeout)
    data = http.small("%d/manifest.json" % release_id, MAX_MANIFEST_BYTES)
    sig = http.small("%d/manifest.sig" % release_id, MAX_SIGNATURE_BYTES)
    try:
        manifest = release_signing.verify_manifest(
            data, release_signing.parse_signature(sig), trusted
        )
    except ReleaseError as exc:
        raise UpdateError("release %d refused: %s" % (release_id, exc)) from None
    check_release(manifest, board, running, allow_older, expect_version)
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = dest / manifest.version
    if final.exists():  # downloaded before (a retry after a rollback): use it if it checks out
        try:
            release_signing.verify_bundle(final, trusted.values())
        except ReleaseError as exc:
            raise UpdateError("%s exists but does not verify: %s" % (final, exc)) from None
        return Installed(manifest.version, final, manifest)
    incoming = dest / ("%s%s-%s" % (INCOMING, manifest.version, os.urandom(4).hex()))
    incoming.mkdir(mode=0o700)
    try:
        (incoming / release_signing.MANIFEST_NAME).write_bytes(data)
        (incoming / release_signing.SIGNATURE_NAME).write_bytes(sig)
        files = incoming / release_signing.FILES_DIR
        for entry in manifest.files:
            _download(http, entry, files / entry.path.lstrip("/"))
        _fsync_folder(incoming)
        os.rename(incoming, final)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    _fsync_folder(dest)
    return Installed(manifest.version, final, manifest)


def remove_incoming(dest: Path) -> list[str]:
    """Remove what an interrupted download left (``.incoming-*`` folders); their names."""
    removed = []
    for path in sorted(dest.glob(INCOMING + "*")):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


# ---- old releases ----------------------------------------------------------------------------


def installed_versions(releases: Path) -> list[str]:
    """The release folders under ``releases`` (names that are versions), oldest first."""
    found = []
    for path in releases.iterdir() if releases.is_dir() else ():
        if path.is_symlink() or not path.is_dir() or path.name.startswith("."):
            continue
        try:
            found.append((version_key(path.name), path.name))
        except CoreError:  # not a release folder: never touched
            continue
    return [name for _, name in sorted(found)]


def releases_to_keep(releases: Path, running: str | None, trial: plan.Trial | None) -> set[str]:
    """What cleaning must keep: the release ``current`` points to, the one it would roll back
    to (``previous``, else the newest release older than ``current``), the one this process
    runs, and both releases of a trial."""
    current = current_release(releases)
    keep = {current, running, current_release(releases, PREVIOUS)}
    if trial is not None:
        keep |= {trial.version, trial.previous}
    if current_release(releases, PREVIOUS) is None and current is not None:
        with contextlib.suppress(CoreError):
            older = [
                v for v in installed_versions(releases) if version_key(v) < version_key(current)
            ]
            keep.add(older[-1] if older else None)
    return {version for version in keep if version is not None}


def remove_old_releases(
    releases: Path, running: str | None, trial: plan.Trial | None, incoming: bool = True
) -> list[str]:
    """Remove the release folders ``releases_to_keep`` does not name and (``incoming``)
    stale ``.incoming-*`` downloads; the names removed. Without ``current`` (the base
    install runs) no release folder is removed."""
    keep = releases_to_keep(releases, running, trial)
    removed = remove_incoming(releases) if incoming and releases.is_dir() else []
    if current_release(releases) is None:  # the base install runs: nothing to judge by
        return removed
    for version in installed_versions(releases):
        if version not in keep:
            shutil.rmtree(releases / version)
            removed.append(version)
    if removed:
        _fsync_folder(releases)
    return removed


def acknowledged(queue: Any, seq: int | None) -> bool:
    """Whether the batch ``seq`` left ``queue`` (a ``bankiot_core.queue.Queue``) by the
    cloud's acknowledgement, not by being dropped to make room."""
    if seq is None or seq in queue.seqs():
        return False
    _, _, lost_first, lost_last = queue.loss()
    return lost_first is None or not lost_first <= seq <= lost_last


def apply_step(
    releases: Path, before: plan.Trial | None, step: plan.Step, running: str | None
) -> None:
    """Persist ``step.trial`` first, then move ``current`` as the step says (``before``:
    the trial the step was decided on; ``running``: the release this process runs)."""
    if step.do == plan.NOTHING:
        return
    save_trial(releases, step.trial)
    if before is None:
        return
    if step.do == plan.ROLL_BACK:
        switch_current(releases, before.previous)
    elif step.do == plan.REPORT_FAILED and current_release(releases) != running:
        switch_current(releases, running)


# ---- before the service starts: a release on trial that cannot even be imported ------------

# What ``bankiot gateway run`` imports before its trial bookkeeping can run.
ENTRY_MODULES = (
    "provisioning.cli",
    "edge.cli",
    "edge.runtime",
    "edge.updates",
    "edge.renewal",
    "edge.uplink",
    "edge.ble_source",
    "edge.serial_source",
    "edge.factory_reset",
)
IMPORT_TIMEOUT_S = 120.0
_IMPORTER = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"


def import_error(
    files: Path,
    modules: Iterable[str] = ENTRY_MODULES,
    python: str = sys.executable,
    timeout: float = IMPORT_TIMEOUT_S,
) -> str | None:
    """Import ``modules`` in a new ``python`` process with ``PYTHONPATH`` set to ``files``
    (a release's ``files`` folder, as the unit's ExecStart sets it); None if that works,
    else one line saying why (the exception's last line)."""
    env = dict(os.environ, PYTHONPATH=str(files))
    try:
        done = subprocess.run(
            [python, "-P", "-c", _IMPORTER, *modules],  # -P: not the working folder first
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "importing took over %g s" % timeout
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "exit status %d" % done.returncode
    return last[:150]


def guard_start(
    releases: Path,
    limits: plan.Limits,
    now: float,
    importable: Callable[[Path], str | None] = import_error,
) -> plan.Step:
    """The unit's ``ExecStartPre`` (``bankiot gateway check-release``): with a release on
    trial about to start, roll ``current`` back if the trial is over by the rules a start
    would apply (too many starts, too late), or if the release cannot even be imported
    (the process would die before its trial bookkeeping runs). The start is not counted
    here: the gateway counts it itself. Returns the step (``ROLL_BACK`` when it rolled back)."""
    trial = load_trial(releases) if releases.is_dir() else None
    target = current_release(releases)  # what ExecStart is about to run
    if trial is None or trial.state != plan.TRIAL or target is None or target != trial.version:
        return plan.Step(trial, plan.NOTHING)  # the gateway itself settles the rest
    step = plan.decide(trial, plan.START, target, now, limits)
    if step.do != plan.ROLL_BACK:
        error = importable(releases / target / release_signing.FILES_DIR)
        if error is None:
            return plan.Step(trial, plan.NOTHING, "%s imports" % trial.version)
        step = plan.broken(trial, "%s cannot be imported: %s" % (trial.version, error))
    apply_step(releases, trial, step, None)
    return step


# ---- the gateway's side: the update command and the trial ---------------------------------


class RuntimeLike(Protocol):
    """What the updater needs of ``edge.runtime.GatewayRuntime``."""

    engine: Gateway

    def clock(self) -> int: ...

    def wake(self) -> None: ...

    def request_restart(self) -> None: ...


@dataclass
class Updater:
    """Updates of one gateway: its releases folder, trusted keys, where releases come from
    and the trial limits. ``running``: the release this process runs (None: the base
    install), ``software``: the version it reports."""

    releases: Path
    trusted: Mapping[str, Ed25519PublicKey]
    cloud_url: str | None
    software: str
    running: str | None
    limits: plan.Limits = field(default_factory=plan.Limits)
    allow_downgrade: bool = False
    cafile: Path | None = None
    trial: plan.Trial | None = None
    marker: int | None = None  # sequence number of the batch with this run's running record
    busy: bool = False
    wall: Callable[[], float] = time.time  # Unix seconds: the trial survives restarts

    @classmethod
    def from_settings(cls, settings: Any, module_file: str | None = None) -> Updater:
        """The updater ``gateway.toml`` describes (keys read now: a bad key stops start-up)."""
        releases = Path(settings.data_dir) / RELEASES
        running = running_release(releases, module_file)
        return cls(
            releases=releases,
            trusted=load_release_keys(settings.release_keys),
            cloud_url=settings.cloud_url,
            software=running or settings.software_version,
            running=running,
            limits=plan.Limits(settings.update_trial_minutes * 60, settings.update_max_starts),
            allow_downgrade=settings.allow_downgrade,
            cafile=settings.cloud_cafile,
        )

    # -- the update command --

    def accept(self, runtime: RuntimeLike, action: Action, now: int) -> asyncio.Future[None] | None:
        """Carry out an ``update`` command: report accepted (or refused) now, fetch and
        verify in a worker thread, then switch and ask for a restart. Returns the task."""
        args = action.args if isinstance(action.args, dict) else {}
        release_id, version = args.get("release"), args.get("version")
        refusal = None
        if type(release_id) is not int or release_id <= 0 or not isinstance(version, str):
            refusal = "update needs release (a positive integer) and version (text)"
        elif args.get("board", BOARD) != BOARD:
            refusal = "update is for board %s; this gateway is %s" % (args.get("board"), BOARD)
        elif self.cloud_url is None:
            refusal = "no [cloud] url in gateway.toml to download releases from"
        elif self.busy or self.trial is not None:
            refusal = "another update is under way"
        if refusal is not None:
            runtime.engine.report(action.command_id, STATUS_REFUSED, refusal, now)
            return None
        assert isinstance(release_id, int) and isinstance(version, str)
        self.busy = True
        runtime.engine.report(action.command_id, STATUS_ACCEPTED, "installing %s" % version, now)
        return asyncio.ensure_future(self._update(runtime, action.command_id, release_id, version))

    async def _update(
        self, runtime: RuntimeLike, command_id: int, release_id: int, version: str
    ) -> None:
        try:
            installed = await asyncio.to_thread(self.install, release_id, version)
            self.begin_trial(installed.version, command_id, self.wall())
        except (GatewayError, OSError) as exc:
            self.busy = False
            detail = exc.message if isinstance(exc, GatewayError) else "cannot install: %s" % exc
            log.warning("update %d refused: %s", command_id, detail)
            runtime.engine.report(command_id, STATUS_FAILED, detail, runtime.clock())
            runtime.wake()
            return
        log.info("release %s installed; restarting into it on trial", installed.version)
        runtime.request_restart()

    def install(self, release_id: int, version: str | None = None) -> Installed:
        """Fetch and install release ``release_id`` (not switched)."""
        assert self.cloud_url is not None
        remove_incoming(self.releases)
        return fetch_release(
            self.cloud_url,
            release_id,
            self.releases,
            trusted=self.trusted,
            running=self.software,
            expect_version=version,
            allow_older=self.allow_downgrade,
            cafile=self.cafile,
        )

    def begin_trial(self, version: str, command_id: int, now: float) -> None:
        """Save the trial, then switch ``current`` to ``version`` (in that order: a switch
        is never without its trial)."""
        trial = plan.Trial(version, self.running, command_id, now)
        save_trial(self.releases, trial)
        switch_current(self.releases, version)
        self.trial = trial

    # -- the trial --

    def start(self, now: float) -> plan.Step:
        """At start, before the engine runs: count this start, roll back if the trial is
        over. ``Step.do == ROLL_BACK``: exit with RESTART at once."""
        if not self.releases.is_dir():
            return plan.Step(None, plan.NOTHING)
        self.trial = load_trial(self.releases)
        step = plan.decide(self.trial, plan.START, self.running, now, self.limits)
        if step.do in (plan.SAVE, plan.ROLL_BACK):
            self._apply(step)
        if step.do != plan.ROLL_BACK:
            self.tidy()
        return step

    def attach(self, runtime: RuntimeLike, step: plan.Step) -> None:
        """With the engine built: report what ``start`` decided, and, on trial, close the
        batch that carries the running record now and remember its sequence number."""
        engine = runtime.engine
        if step.do == plan.REPORT_FAILED and self.trial is not None:
            engine.report(self.trial.command_id, STATUS_FAILED, step.detail, runtime.clock())
            self._apply(step)
        if self.trial is not None and self.trial.state == plan.TRIAL:
            engine.poll(runtime.clock())  # queues the running record ...
            engine.flush()  # ... in a batch of its own, now
            self.marker = engine.queue.last_seq

    def acknowledged(self, engine: Gateway) -> bool:
        """Whether the batch with this run's running record was acknowledged (it left the
        queue without being dropped to make room)."""
        return acknowledged(engine.queue, self.marker)

    def check(self, runtime: RuntimeLike, now: float) -> plan.Step:
        """One look at the trial (``watch`` calls it every second)."""
        if self.trial is None:
            return plan.Step(None, plan.NOTHING)
        event = plan.ACKED if self.acknowledged(runtime.engine) else plan.TICK
        step = plan.decide(self.trial, event, self.running, now, self.limits)
        trial = self.trial
        if step.do == plan.REPORT_DONE:
            runtime.engine.report(trial.command_id, STATUS_DONE, step.detail, runtime.clock())
            runtime.wake()
        self._apply(step)
        if step.do == plan.REPORT_DONE:  # kept for a manual rollback; older ones go
            try:
                switch_current(self.releases, trial.previous, PREVIOUS)
            except (UpdateError, OSError) as exc:
                log.warning("cannot remember the previous release: %s", exc)
            self.tidy()
        if step.do == plan.ROLL_BACK:
            log.warning("update rolled back: %s", step.detail)
            runtime.request_restart()
        return step

    async def watch(self, runtime: RuntimeLike, stop: asyncio.Event) -> None:
        """``check`` every second until ``stop`` or the trial ends."""
        while not stop.is_set() and self.trial is not None:
            self.check(runtime, self.wall())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=CHECK_EVERY_S)

    def _apply(self, step: plan.Step) -> None:
        """Persist ``step.trial`` first, then move ``current`` as the step says."""
        trial = self.trial
        if step.do != plan.NOTHING:
            self.trial = step.trial
        apply_step(self.releases, trial, step, self.running)

    def tidy(self) -> list[str]:
        """Remove old release folders and stale downloads (``remove_old_releases``); never
        fatal: a failure is logged in one line."""
        try:
            removed = remove_old_releases(
                self.releases, self.running, self.trial, incoming=not self.busy
            )
        except OSError as exc:
            log.warning("cannot remove old releases in %s: %s", self.releases, exc)
            return []
        if removed:
            log.info("removed old releases: %s", ", ".join(removed))
        return removed
