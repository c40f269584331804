"""Software updates on a board: the ``update`` command, download, checks, switch, trial.

As the Raspberry Pi gateway does (``edge/updates.py``), with the board's parts:

1. ``accept`` takes an ``update`` command (args ``release``, ``version``, ``board``, and
   ``mac`` when the board checks by MAC): refused at once if it cannot be done, else
   reported ACCEPTED and the work begins.
2. ``step`` (the network task calls it every turn) does a bounded piece of the work, so
   the radio, the uplink and the watchdog keep turning: download ``manifest.json`` over
   HTTP(S) (``app.httpget``) from ``/releases/v1/<release>/``; check it: the Ed25519
   signature in ``manifest.sig`` under a trusted release key (``app.ed25519``, keys from
   ``/identity/release_keys.json``) or the per-device MAC from the command
   (``app.release_mac``), whichever ``check`` says (docs/firmware.md: the measurement
   decides); then the board, the version the command names, and a version newer than
   the one running. Nothing unchecked is parsed.
3. Every file is downloaded by its SHA-256 (``blobs/<sha256>``) and checked while it is
   written (``bankiot_core.manifest.FileCheck``) into ``/releases/.incoming``, renamed
   to ``/releases/<version>`` only when all of it checked out. A manifest whose one file
   is ``/image.bin`` is an ESP32 firmware image instead: written to the idle OTA slot
   (``app.ota``) and read back before ``set_boot``.
4. The trial is saved, then the pointer ``/releases/current`` switched (``app.releases``),
   and the board resets into the new version (``reboot``).
5. On trial (``app.update_plan``): each start is counted; the batch with the first
   ``running`` record is closed at once and its sequence number remembered; once the
   cloud acknowledges it, the update is reported DONE (an image is then confirmed with
   ``mark_app_valid_cancel_rollback``); too many starts, or no acknowledgement within the
   trial time, and the pointer goes back, the board resets, and the previous version
   reports the update FAILED with the reason.

A failure before the switch (unreachable, bad signature or MAC, wrong board, older, a
file that does not match) is reported FAILED with one line and leaves the running release
untouched; a download cut by a power loss (or a reset) is removed at the next start, and
its command reported FAILED then (``/releases/download.json`` names it while it runs).
"""

import binascii
import json
import os

from app import releases, store
from app import update_plan as plan
from bankiot_core.batch import STATUS_ACCEPTED, STATUS_DONE, STATUS_FAILED, STATUS_REFUSED
from bankiot_core.errors import CoreError
from bankiot_core.ticks import elapsed

# What runs only during an update (the signature check, the image writer, the manifest
# parser, the HTTP client) is imported when an update begins: until then its bytecode
# takes no heap.

KEYS_FILE = "/identity/release_keys.json"
DOWNLOAD_FILE = "/releases/download.json"  # the command whose download is under way
IMAGE_PATH = "/image.bin"
SIGNATURE = "signature"
MAC = "mac"
MAX_SIGNATURE_BYTES = 4096
CHECK = SIGNATURE  # how boards check releases: the measurement decides (docs/firmware.md)
_PIECES_PER_STEP = 32  # at most this many pieces of work per step ...
_STEP_BUDGET_MS = 50  # ... and no more than this long (a piece takes 5 ms in the VM)


class UpdateFailed(Exception):
    """A release that is not installed; the message is one line for the command result."""


def key_id(public_key):
    """A release key's id as ``provisioning.release_signing`` makes it: the first 8 bytes
    of the SHA-256 of the raw 32-byte key, in hex."""
    import hashlib

    return binascii.hexlify(hashlib.sha256(public_key).digest()[:8]).decode()


def parse_keys(data):
    """Key id -> raw public key, from ``release_keys.json`` (``{"keys": [64 hex digits,
    ...]}``); ValueError naming what is wrong."""
    record = json.loads(data)
    keys = record.get("keys") if isinstance(record, dict) else None
    if not isinstance(keys, list):
        raise ValueError("%s: keys must be a list" % KEYS_FILE)
    out = {}
    for text in keys:
        if not isinstance(text, str) or len(text) != 64:
            raise ValueError("%s: a key is 64 hex digits (32 raw bytes)" % KEYS_FILE)
        raw = binascii.unhexlify(text)
        out[key_id(raw)] = raw
    return out


def load_keys(path=KEYS_FILE):
    """The trusted release keys written at provisioning (empty if there are none)."""
    data = store.read(path)
    if data is None:
        return {}
    try:
        return parse_keys(data)
    except ValueError as exc:
        print("bankiot: %s" % exc)
        return {}


def parse_signature(data):
    """``(key id, 64 signature bytes)`` from ``manifest.sig``; UpdateFailed if malformed."""
    try:
        record = json.loads(data)
        kid = record["key_id"]
        signature = binascii.a2b_base64(record["signature"].encode())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UpdateFailed("manifest.sig is not a signature record") from None
    if not isinstance(kid, str) or len(signature) != 64:
        raise UpdateFailed("manifest.sig is not an Ed25519 signature")
    return kid, signature


def acknowledged(queue, seq):
    """Whether batch ``seq`` left ``queue`` by the cloud's acknowledgement (not dropped)."""
    if seq is None or seq < 0 or seq in queue.seqs():
        return False
    lost_first, lost_last = queue.loss()[2:]
    return lost_first is None or not lost_first <= seq <= lost_last


class Updater:
    """The board's updates (module docstring).

    ``board``: ``esp32`` or ``picow``; ``software``: the version running (``app.version``);
    ``running``: the release folder running (``releases.running()``; None: the base
    install); ``http``: an ``httpget.Http`` (None: no releases endpoint provisioned);
    ``trusted``: key id -> raw release key; ``identity``: ``(uid, key version, secret)``
    for the MAC; ``check``: ``SIGNATURE`` or ``MAC``; ``esp32``: the module, on a board
    whose flash has the OTA layout (None: no images); ``clock``: ticks in ms.
    """

    def __init__(
        self,
        board,
        software,
        running,
        http,
        clock,
        trusted=None,
        identity=None,
        check=SIGNATURE,
        esp32=None,
        limits=plan.DEFAULT_LIMITS,
    ):
        self.board = board
        self.software = software
        self.running = running
        self.http = http
        self.clock = clock
        self.trusted = trusted or {}
        self.identity = identity
        self.check = check
        self.esp32 = esp32
        self.limits = limits
        self.trial = None
        self.marker = None
        self.reboot = False
        self.command = None
        self.stage = None
        self.version = None
        self._work = None
        self._started_at = 0
        self._image = None
        self._body = b""

    # ---- at start ----------------------------------------------------------------------

    def start(self, engine, now_ms):
        """Before the engine's first poll: forget a cut download (its command failed),
        count this start of a version on trial, report or roll back as the plan says."""
        releases.remove_tree(releases.INCOMING)
        cut = store.read(DOWNLOAD_FILE)
        if cut is not None:
            store.remove(DOWNLOAD_FILE)
            if cut.isdigit():
                detail = "the download was cut by a restart; nothing was installed"
                engine.report(int(cut), STATUS_FAILED, detail, now_ms)
        self._started_at = now_ms
        trial = releases.load_trial()
        step = plan.decide(trial, plan.START, self._running_for(trial), 0, self.limits)
        self._apply(engine, trial, step, now_ms)

    def attach(self, engine):
        """After the engine's first poll queued the running record: close its batch now
        and remember its sequence number (its acknowledgement ends the trial)."""
        if self.trial is not None and self.trial["state"] == plan.TRIAL:
            engine.flush()
            self.marker = engine.queue.last_seq

    def _running_for(self, trial):
        if trial is not None and trial.get("kind") == "image":
            return self.software
        return self.running

    # ---- the command -------------------------------------------------------------------

    def accept(self, engine, action, now_ms):
        """Take an ``update`` command: report it refused or accepted (and begin)."""
        args = action.args if isinstance(action.args, dict) else {}
        release_id = args.get("release")
        version = args.get("version")
        mac = args.get("mac")
        refusal = None
        bad_id = not isinstance(release_id, int) or isinstance(release_id, bool) or release_id <= 0
        if bad_id or not isinstance(version, str):
            refusal = "update needs release (a positive integer) and version (text)"
        elif args.get("board", self.board) != self.board:
            refusal = "update is for board %s; this board is %s" % (args.get("board"), self.board)
        elif self.http is None:
            refusal = "no releases endpoint in /identity/enrollment.json"
        elif self._work is not None or self.trial is not None:
            refusal = "another update is under way"
        elif self.check == SIGNATURE and not self.trusted:
            refusal = "no release keys are trusted (%s)" % KEYS_FILE
        elif self.check == MAC and (not isinstance(mac, str) or len(mac) != 64):
            refusal = "update needs mac (64 hex digits): this board checks releases by MAC"
        if refusal is not None:
            engine.report(action.command_id, STATUS_REFUSED, refusal, now_ms)
            return False
        engine.report(action.command_id, STATUS_ACCEPTED, "installing %s" % version, now_ms)
        self.command = action.command_id
        store.makedirs(releases.ROOT)
        store.write(DOWNLOAD_FILE, b"%d" % action.command_id)
        self._work = self._install(release_id, version, mac)
        return True

    def busy(self):
        """True while an update is being downloaded and checked."""
        return self._work is not None

    def step(self, engine, now_ms):
        """A bounded piece of the update under way (module docstring); True while busy."""
        work = self._work
        if work is None:
            return False
        try:
            for _ in range(_PIECES_PER_STEP):
                next(work)
                if elapsed(self.clock(), now_ms) >= _STEP_BUDGET_MS:
                    break  # the other tasks' turn: the watchdog needs them all
        except StopIteration:
            self._work = None
            self._switch(engine, now_ms)
        except Exception as exc:  # whatever stops an update is reported, and it ends
            self._work = None
            self._fail(engine, exc, now_ms)
        return self._work is not None

    def _fail(self, engine, exc, now_ms):
        releases.remove_tree(releases.INCOMING)
        store.remove(DOWNLOAD_FILE)
        detail = (
            str(exc)
            if isinstance(exc, UpdateFailed)
            else "%s: %s"
            % (
                type(exc).__name__,
                exc,
            )
        )
        print("bankiot: update refused: %s" % detail)
        engine.report(self.command, STATUS_FAILED, detail[:200], now_ms)
        self.command = None
        self.stage = None

    # ---- download and check ------------------------------------------------------------

    def _fetch(self, path, limit):
        """The body of ``path``, at most ``limit`` bytes; yields while waiting."""
        data = b""
        http = self.http
        if http is None:
            raise UpdateFailed("no releases endpoint")
        for piece in http.get(path, self.clock):
            if piece is None:
                yield None
                continue
            data += piece
            if len(data) > limit:
                raise UpdateFailed("%s is over %d bytes" % (path, limit))
        self._body = data

    def _install(self, release_id, version, mac):
        from bankiot_core.manifest import MAX_MANIFEST_BYTES, parse_manifest

        base = "/releases/v1/%d/" % release_id
        self.stage = "manifest"
        yield from self._fetch(base + "manifest.json", MAX_MANIFEST_BYTES)
        data = self._body
        if self.check == MAC:
            yield from self._check_mac(data, mac)
            proof = (b"manifest.mac", mac.encode())
        else:
            yield from self._fetch(base + "manifest.sig", MAX_SIGNATURE_BYTES)
            proof = (b"manifest.sig", self._body)
            yield from self._check_signature(data, proof[1])
        try:
            manifest = parse_manifest(data)
        except CoreError as exc:
            raise UpdateFailed("signed manifest refused: %s" % exc) from None
        self._check_release(manifest, version)
        self.stage = "files"
        self.version = manifest.version
        if len(manifest.files) == 1 and manifest.files[0].path == IMAGE_PATH:
            yield from self._write_image(manifest.files[0])
            return
        incoming = releases.INCOMING
        releases.remove_tree(incoming)
        store.makedirs(incoming)
        store.write(incoming + "/manifest.json", data)
        store.write(incoming + "/" + proof[0].decode(), proof[1])
        for entry in manifest.files:
            yield from self._download(entry, incoming + entry.path)
        final = releases.folder(manifest.version)
        if manifest.version != releases.read_pointer():
            releases.remove_tree(final)  # a retry after a rollback: downloaded afresh
        os.rename(incoming, final)

    def _check_signature(self, data, sig):
        kid, signature = parse_signature(sig)
        key = self.trusted.get(kid)
        if key is None:
            raise UpdateFailed("signed by key %s, which is not trusted" % kid)
        from app import ed25519

        self.stage = "signature"
        result = False
        for result in ed25519.verify_steps(key, data, signature):
            if result is None:
                yield None
        if result is not True:
            raise UpdateFailed("the signature does not match the manifest (key %s)" % kid)

    def _check_mac(self, data, mac):
        if self.identity is None:
            raise UpdateFailed("no envelope secret to check a MAC with")
        from app import release_mac

        uid, key_version, secret = self.identity
        try:
            expected = binascii.unhexlify(mac)
        except ValueError:
            raise UpdateFailed("mac is not hex") from None
        key = release_mac.mac_key(secret, uid, key_version)
        yield None
        if not release_mac.same(release_mac.manifest_mac(key, data), expected):
            raise UpdateFailed("the MAC does not match the manifest")

    def _check_release(self, manifest, version):
        from bankiot_core.manifest import version_key

        if manifest.board != self.board:
            raise UpdateFailed(
                "release %s is for board %s, not %s"
                % (manifest.version, manifest.board, self.board)
            )
        if manifest.version != version:
            raise UpdateFailed(
                "the command names %s but the release is %s" % (version, manifest.version)
            )
        try:
            newer = version_key(manifest.version) > version_key(self.software)
        except CoreError:
            raise UpdateFailed(
                "cannot compare with the running version %r" % self.software
            ) from None
        if not newer:
            raise UpdateFailed(
                "release %s is not newer than %s (running)" % (manifest.version, self.software)
            )

    def _blob(self, entry):
        http = self.http
        if http is None:
            raise UpdateFailed("no releases endpoint")
        return http.get("/releases/v1/blobs/%s" % entry.sha256, self.clock)

    def _download(self, entry, target):
        from bankiot_core.manifest import FileCheck

        cut = target.rfind("/")
        store.makedirs(target[:cut])
        check = FileCheck(entry)
        with open(target, "wb") as f:
            for piece in self._blob(entry):
                if piece is None:
                    yield None
                    continue
                check.feed(piece)  # refuses an over-long file before writing its excess
                f.write(piece)
                yield None
        check.check()

    def _write_image(self, entry):
        from app import ota
        from bankiot_core.manifest import FileCheck

        if self.esp32 is None:
            raise UpdateFailed("this board has no OTA partitions for a firmware image")
        writer = ota.ImageWriter(self.esp32)
        writer.begin(entry.size)
        check = FileCheck(entry)
        for piece in self._blob(entry):
            if piece is None:
                yield None
                continue
            check.feed(piece)
            writer.write(piece)
            yield None
        check.check()
        writer.finish(entry.sha256)
        self._image = writer

    # ---- switch and trial --------------------------------------------------------------

    def _switch(self, engine, now_ms):
        """Save the trial, then switch (in that order: a switch never lacks its trial)."""
        version = self.version
        if self._image is not None:
            trial = plan.new_trial(version, self.software, self.command, "image")
            trial["partition"] = self._image.running_label()
            releases.save_trial(trial)
            self._image.switch()
        else:
            trial = plan.new_trial(version, self.running, self.command)
            releases.save_trial(trial)
            releases.write_pointer(version)
        store.remove(DOWNLOAD_FILE)
        self.trial = trial
        self.stage = "restart"
        print("bankiot: release %s installed; restarting into it on trial" % version)
        self.reboot = True

    def check_trial(self, engine, now_ms):
        """One look at the trial (the ticker calls it): done once acknowledged, rolled back
        when the time is up."""
        trial = self.trial
        if trial is None or self.reboot:
            return
        event = plan.ACKED if acknowledged(engine.queue, self.marker) else plan.TICK
        run_ms = elapsed(now_ms, self._started_at)
        self._apply(
            engine,
            trial,
            plan.decide(trial, event, self._running_for(trial), run_ms, self.limits),
            now_ms,
        )

    def _apply(self, engine, trial, step, now_ms):
        do = step.do
        if do == plan.NOTHING:
            self.trial = trial
            return
        if do == plan.SAVE:
            releases.save_trial(step.trial)
            self.trial = step.trial
        elif do == plan.ROLL_BACK:
            print("bankiot: update rolled back: %s" % step.detail)
            releases.roll_back(trial, step.detail)
            if trial.get("kind") == "image" and self.esp32 is not None:
                from app import ota

                ota.revert(self.esp32, trial.get("partition"))
            self.trial = step.trial
            self.reboot = True
        elif do == plan.REPORT_DONE:
            engine.report(trial["command"], STATUS_DONE, step.detail, now_ms)
            if trial.get("kind") == "image" and self.esp32 is not None:
                from app import ota

                ota.confirm(self.esp32)
            releases.save_trial(None)
            if trial.get("kind", "files") == "files":
                releases.write_pointer(trial["previous"], releases.PREVIOUS)
                releases.tidy((trial["version"], trial["previous"]))
            self.trial = None
        elif do == plan.REPORT_FAILED:
            engine.report(trial["command"], STATUS_FAILED, step.detail[:200], now_ms)
            releases.save_trial(None)
            if trial.get("kind", "files") == "files" and releases.read_pointer() != self.running:
                releases.write_pointer(self.running)
            self.trial = None


def build_updater(board, identity, modules, clock, check=None):
    """The ``Updater`` of a provisioned board: releases from ``endpoints.releases`` of its
    enrollment (None there: updates are refused), its trusted release keys, the release it
    runs, ``esp32`` for images on a board with the OTA layout. ``check``: ``SIGNATURE`` or
    ``MAC`` (default ``CHECK``, chosen by measurement: docs/firmware.md)."""
    from app.config import CA
    from app.httpget import Http
    from app.version import SOFTWARE

    source = identity.endpoints.get("releases")
    http = None
    if source is not None:
        http = Http(
            modules["socket"], modules.get("ssl"), source.scheme, source.host, source.port, CA
        )
    esp32 = modules.get("esp32") if getattr(board, "OTA", False) else None
    return Updater(
        board.NAME,
        SOFTWARE,
        releases.running(),
        http,
        clock,
        load_keys(),
        (identity.uid, identity.key_version, identity.secret),
        check if check is not None else CHECK,
        esp32,
    )
