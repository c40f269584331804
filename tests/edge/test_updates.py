"""``edge.updates`` and ``edge.update_plan``: signed releases installed side by side, switched
atomically, kept on trial, rolled back when the new version does not report healthy.

Releases are signed with ``provisioning.release_signing`` (Ed25519 from ``cryptography``)
and served by the real cloud app (uploaded through its API, downloaded from its device
routes over a real HTTP server, on SQLite: the release data layer is tested on both
databases in ``tests/cloud/test_fleet_releases.py``). What the cloud itself would never
serve (a forged signature, a tampered file) comes from a tiny local HTTP server standing in
for a man in the middle. The gateway's side runs the real engine over its SQLite queue;
what it reports is read back the way the cloud reads it: sealed batches opened with
``bankiot_core.cose`` and decoded with ``bankiot_core.batch``, acknowledged with a sealed
downlink acknowledgement (``bankiot_core.downlink``).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from bankiot_core import cose
from bankiot_core.batch import (
    STATUS_ACCEPTED,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_REFUSED,
    CommandResult,
    Running,
    decode_batch,
)
from bankiot_core.downlink import downlink_topic, encode_ack, encode_command, seal_downlink
from bankiot_core.keyring import KeyRing
from edge import runtime, updates
from edge import update_plan as plan
from edge.settings import parse_settings
from provisioning import release_signing
from tests.cloud.fleet_actions import served_app
from tests.cloud.people_actions import add_operator, bearer, make_token, sign_in
from tests.cloud.release_actions import Releases, make_bundle, releases_app, upload_body
from tests.cloud.test_fleet_releases import put_files

UID = "rpi-0123456789ab"
SECRET = bytes(range(32, 64))  # a test secret, never a real key
DOWN = downlink_topic(UID)
UP = "devices/%s/up" % UID
T0 = 1_800_000_000.0  # Unix seconds: the switch
LIMITS = plan.Limits(trial_s=600, max_starts=3)


def release_files(version: str) -> dict[str, bytes]:
    """A small release for the Pi: Python packages laid out for sys.path."""
    return {
        "edge/__init__.py": b"",
        "edge/version.py": ("VERSION = %r\n" % version).encode(),
        "bankiot_core/marker.py": b"# " + version.encode() * 300 + b"\n",
    }


# ---- the decisions, as a table -------------------------------------------------------------

NEW = plan.Trial("1.1.0", "1.0.0", 7, T0, attempts=1)
FRESH = plan.Trial("1.1.0", "1.0.0", 7, T0)
BACK = plan.Trial("1.1.0", "1.0.0", 7, T0, attempts=2, state=plan.ROLLED_BACK, reason="why")

CASES = [
    # (trial, event, running, seconds after the switch, do, trial after (or None), detail has)
    (None, plan.START, "1.0.0", 0, plan.NOTHING, None, ""),
    (None, plan.TICK, None, 0, plan.NOTHING, None, ""),
    (FRESH, plan.START, "1.1.0", 5, plan.SAVE, plan.Trial("1.1.0", "1.0.0", 7, T0, 1), ""),
    (NEW, plan.START, "1.1.0", 5, plan.SAVE, plan.Trial("1.1.0", "1.0.0", 7, T0, 2), ""),
    (
        plan.Trial("1.1.0", "1.0.0", 7, T0, attempts=3),
        plan.START,
        "1.1.0",
        5,
        plan.ROLL_BACK,
        plan.Trial("1.1.0", "1.0.0", 7, T0, 3, plan.ROLLED_BACK, "1.1.0 started 3 times"),
        "started 3 times",
    ),
    (NEW, plan.START, "1.1.0", 600, plan.ROLL_BACK, "rolled_back", "within 10 minutes"),
    (NEW, plan.TICK, "1.1.0", 599, plan.NOTHING, NEW, ""),
    (NEW, plan.TICK, "1.1.0", 600, plan.ROLL_BACK, "rolled_back", "not healthy within"),
    (NEW, plan.ACKED, "1.1.0", 10, plan.REPORT_DONE, None, "running 1.1.0"),
    (NEW, plan.ACKED, "1.1.0", 5000, plan.REPORT_DONE, None, "running 1.1.0"),
    (FRESH, plan.START, "1.0.0", 5, plan.REPORT_FAILED, None, "runs 1.0.0 after the restart"),
    (FRESH, plan.START, None, 5, plan.REPORT_FAILED, None, "runs the base install"),
    (BACK, plan.START, "1.0.0", 700, plan.REPORT_FAILED, None, "rolled back: why"),
    (BACK, plan.TICK, "1.0.0", 700, plan.NOTHING, BACK, ""),
    (BACK, plan.START, "1.1.0", 700, plan.ROLL_BACK, BACK, "why"),
]


@pytest.mark.parametrize(("trial", "event", "running", "after", "do", "then", "detail"), CASES)
def test_decisions(
    trial: plan.Trial | None,
    event: str,
    running: str | None,
    after: int,
    do: str,
    then: Any,
    detail: str,
) -> None:
    step = plan.decide(trial, event, running, T0 + after, LIMITS)
    assert step.do == do
    assert detail in step.detail
    if then == "rolled_back":
        assert step.trial is not None and step.trial.state == plan.ROLLED_BACK
        assert step.trial.reason == step.detail
    elif isinstance(then, plan.Trial) and then.reason:
        assert step.trial is not None and step.trial.reason.startswith(then.reason)
        assert step.trial.state == then.state and step.trial.attempts == then.attempts
    else:
        assert step.trial == then


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown trial event"):
        plan.decide(NEW, "reboot", "1.1.0", T0, LIMITS)


# ---- settings ---------------------------------------------------------------------------------


def test_settings_take_release_keys_and_trial_limits(tmp_path: Path) -> None:
    settings = parse_settings(
        {"updates": {"release_keys": ["keys/r.pub"], "trial_minutes": 5, "max_starts": 2}},
        tmp_path / "gateway.toml",
    )
    assert settings.release_keys == (tmp_path / "keys" / "r.pub",)
    assert (settings.update_trial_minutes, settings.update_max_starts) == (5, 2)
    assert settings.allow_downgrade is False
    with pytest.raises(Exception, match=r"updates\.trial_minutes must be from 1"):
        parse_settings({"updates": {"trial_minutes": 0}})
    with pytest.raises(Exception, match=r"updates\.keys is not a known key"):
        parse_settings({"updates": {"keys": []}})


def test_a_key_file_that_is_not_an_ed25519_key_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_bytes(b"not a key")
    with pytest.raises(updates.UpdateError, match=r"bad\.pub is not a PEM public key"):
        updates.load_release_keys([bad])


# ---- the cloud serving releases -------------------------------------------------------------


@dataclass
class Cloud:
    """The cloud app (trusting ``rel.key``) on a real HTTP server, with an operator token."""

    rel: Releases
    url: str
    ops: dict[str, str]

    def publish(self, version: str, board: str = "rpi", name: str | None = None) -> int:
        """Sign a bundle with the cloud's trusted key, upload it and its files; its id."""
        bundle = make_bundle(
            self.rel.work / (name or "b-%s-%s" % (board, version)), release_files(version)
        )
        release_signing.sign_bundle(bundle, self.rel.key, board, version)
        client = self.rel.app.test_client()
        answer = client.post("/api/fleet/releases", json=upload_body(bundle), headers=self.ops).json
        assert answer is not None
        assert put_files(self.rel, self.ops, answer["id"], bundle)["status"] == "ready"
        return answer["id"]

    def trusted(self) -> dict[str, Any]:
        public = release_signing.public_path(self.rel.key)
        return updates.load_release_keys([public])


@pytest.fixture
def cloud(migrated_sqlite_url: URL, tmp_path: Path) -> Iterator[Cloud]:
    rel = releases_app(migrated_sqlite_url, tmp_path / "cloud")
    add_operator(rel.app, "ops", "operations")
    ops = bearer(make_token(sign_in(rel.app, "ops")))
    with served_app(rel.app) as url:
        yield Cloud(rel, url, ops)
    rel.app.extensions["bankiot.db"].dispose()


@contextmanager
def tiny_server(routes: dict[str, bytes]) -> Iterator[str]:
    """A man in the middle: answers GET ``path`` with ``routes[path]``, else 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_port
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def copy_routes(url: str, release_id: int) -> dict[str, bytes]:
    """Everything a gateway downloads for release ``release_id``, fetched from ``url``."""
    import urllib.request

    routes: dict[str, bytes] = {}
    for name in ("manifest.json", "manifest.sig"):
        path = "/releases/v1/%d/%s" % (release_id, name)
        with urllib.request.urlopen(url + path) as response:
            routes[path] = response.read()
    manifest = json.loads(routes["/releases/v1/%d/manifest.json" % release_id])
    for entry in manifest["files"]:
        path = "/releases/v1/blobs/%s" % entry["sha256"]
        with urllib.request.urlopen(url + path) as response:
            routes[path] = response.read()
    return routes


# ---- installing -------------------------------------------------------------------------------


def test_a_good_release_installs_side_by_side_and_switches(cloud: Cloud, tmp_path: Path) -> None:
    old, new = cloud.publish("1.0.0"), cloud.publish("1.1.0")
    releases = tmp_path / "data" / "releases"
    first = updates.fetch_release(
        cloud.url, old, releases, trusted=cloud.trusted(), running=None, expect_version="1.0.0"
    )
    updates.switch_current(releases, first.version)
    second = updates.fetch_release(
        cloud.url, new, releases, trusted=cloud.trusted(), running="1.0.0"
    )
    assert (first.version, second.version) == ("1.0.0", "1.1.0")
    assert updates.current_release(releases) == "1.0.0"  # fetching switches nothing
    updates.switch_current(releases, "1.1.0")
    assert (releases / "current").is_symlink() and updates.current_release(releases) == "1.1.0"
    for version in ("1.0.0", "1.1.0"):  # both whole, byte for byte, signed as published
        files = releases / version / "files"
        for name, data in release_files(version).items():
            assert (files / name).read_bytes() == data
        manifest = json.loads((releases / version / "manifest.json").read_bytes())
        for entry in manifest["files"]:
            data = (files / entry["path"].lstrip("/")).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert (
        releases / "current" / "files" / "edge" / "version.py"
    ).read_text() == "VERSION = '1.1.0'\n"
    assert sorted(p.name for p in releases.iterdir()) == ["1.0.0", "1.1.0", "current"]
    # What runs from a release folder is recognised as that release.
    module = releases / "current" / "files" / "edge" / "version.py"
    assert updates.running_release(releases, str(module)) == "1.1.0"
    assert updates.running_release(releases, str(tmp_path / "elsewhere" / "edge" / "x.py")) is None


def refused(
    url: str, release_id: int, releases: Path, trusted: dict[str, Any], match: str, **kw: Any
) -> None:
    before = sorted(p.name for p in releases.iterdir()) if releases.exists() else []
    with pytest.raises(updates.UpdateError, match=match):
        updates.fetch_release(url, release_id, releases, trusted=trusted, **kw)
    after = sorted(p.name for p in releases.iterdir()) if releases.exists() else []
    assert after == before  # nothing half-installed, nothing switched


def test_releases_that_must_not_install_are_refused(cloud: Cloud, tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    trusted = cloud.trusted()
    esp32 = cloud.publish("2.0.0", board="esp32")
    older = cloud.publish("0.9.0")
    good = cloud.publish("1.1.0")
    refused(cloud.url, esp32, releases, trusted, "is for board esp32, not rpi", running="1.0.0")
    refused(
        cloud.url, older, releases, trusted, r"0\.9\.0 is not newer than 1\.0\.0", running="1.0.0"
    )
    refused(cloud.url, good, releases, trusted, "not newer than 1.1.0", running="1.1.0")
    refused(
        cloud.url, good, releases, trusted, "names 1.2.0 but the release is 1.1.0",
        running="1.0.0", expect_version="1.2.0",
    )  # fmt: skip
    refused(cloud.url, 999, releases, trusted, "HTTP 404", running="1.0.0")
    # A key the gateway does not trust: the cloud's key is fine for the cloud, not for it.
    other = release_signing.new_release_key(tmp_path / "other" / "release.pem")
    stranger = updates.load_release_keys([other])
    refused(cloud.url, good, releases, stranger, "which is not trusted", running="1.0.0")
    refused(cloud.url, good, releases, {}, "no release keys are trusted", running="1.0.0")
    # Downgrades only when allowed.
    installed = updates.fetch_release(
        cloud.url, older, releases, trusted=trusted, running="1.0.0", allow_older=True
    )
    assert installed.version == "0.9.0"


def test_forged_and_tampered_releases_are_refused(cloud: Cloud, tmp_path: Path) -> None:
    release_id = cloud.publish("1.1.0")
    routes = copy_routes(cloud.url, release_id)
    manifest_path = "/releases/v1/%d/manifest.json" % release_id
    sig_path = "/releases/v1/%d/manifest.sig" % release_id
    manifest = json.loads(routes[manifest_path])
    releases = tmp_path / "releases"
    trusted = cloud.trusted()

    forged = dict(routes)  # another manifest under the genuine signature
    forged[manifest_path] = routes[manifest_path].replace(b'"1.1.0"', b'"9.9.9"')
    with tiny_server(forged) as url:
        refused(url, release_id, releases, trusted, "signature does not match", running="1.0.0")

    bad_sig = dict(routes)
    sig = json.loads(routes[sig_path])
    raw = bytearray(release_signing.decode_signature(sig["signature"]))
    raw[0] ^= 1
    import base64

    bad_sig[sig_path] = json.dumps(
        {"key_id": sig["key_id"], "signature": base64.b64encode(raw).decode()}
    ).encode()
    with tiny_server(bad_sig) as url:
        refused(url, release_id, releases, trusted, "signature does not match", running="1.0.0")

    big = max(manifest["files"], key=lambda entry: entry["size"])
    blob = "/releases/v1/blobs/%s" % big["sha256"]
    tampered = dict(routes)
    tampered[blob] = routes[blob][:-1] + b"X"  # same size, other bytes
    with tiny_server(tampered) as url:
        refused(url, release_id, releases, trusted, "does not match its SHA-256", running="1.0.0")
    longer = dict(routes)
    longer[blob] = routes[blob] + b"\n"
    with tiny_server(longer) as url:
        refused(url, release_id, releases, trusted, "longer than the manifest", running="1.0.0")
    shorter = dict(routes)
    shorter[blob] = routes[blob][:-1]
    with tiny_server(shorter) as url:
        refused(url, release_id, releases, trusted, "the manifest says", running="1.0.0")
    assert not list(releases.glob(".incoming-*"))
    with tiny_server(routes) as url:  # the genuine content through the same server installs
        assert updates.fetch_release(url, release_id, releases, trusted=trusted, running="1.0.0")


# ---- the gateway: the update command, the trial, rollback -----------------------------------


class Pi:
    """A gateway's data folder, and the process that runs from it (one per start)."""

    def __init__(self, data_dir: Path, cloud: Cloud) -> None:
        self.data_dir = data_dir
        self.cloud = cloud
        self.ring = KeyRing(UID, 1, SECRET)
        self.down_seq = 0

    def start(self, running: str) -> tuple[runtime.GatewayRuntime, updates.Updater, plan.Step]:
        """Start the gateway's process running release ``running`` (as serve does)."""
        updater = updates.Updater(
            releases=self.data_dir / updates.RELEASES,
            trusted=self.cloud.trusted(),
            cloud_url=self.cloud.url,
            software=running,
            running=running,
            limits=LIMITS,
            wall=lambda: T0,
        )
        step = updater.start(T0 + 60)
        engine = runtime.open_engine(
            self.data_dir, KeyRing(UID, 1, SECRET), UP, running, 1 << 20, resend_ms=1000
        )
        gateway = runtime.GatewayRuntime(
            engine, self.data_dir / runtime.STATE_FILE, updater=updater, clock=lambda: 1000
        )
        updater.attach(gateway, step)
        return gateway, updater, step

    def stop(self, gateway: runtime.GatewayRuntime) -> None:
        runtime.save_state(gateway.state_path, gateway.engine)
        gateway.engine.queue.close()

    def command(
        self, gateway: runtime.GatewayRuntime, command_id: int, args: dict[str, Any]
    ) -> None:
        """The cloud's sealed ``update`` command arrives on the downlink."""
        self.down_seq += 1
        data = seal_downlink(
            self.ring, self.down_seq, encode_command(command_id, "update", args), DOWN
        )

        async def arrive() -> None:
            gateway.on_downlink(data, DOWN)
            if gateway._work:
                await asyncio.gather(*gateway._work)

        asyncio.run(arrive())

    def sent(self, gateway: runtime.GatewayRuntime) -> list[tuple[int, list[Any]]]:
        """Every batch the engine hands the uplink, opened and decoded as the cloud does."""
        out = []
        while (item := gateway.engine.next_to_send(1000)) is not None:
            seq, envelope = item
            opened = cose.open_envelope(envelope, self.ring.lookup, UP)
            out.append((seq, list(decode_batch(opened.plaintext).records)))
        return out

    def ack(self, gateway: runtime.GatewayRuntime, through: int) -> None:
        """The cloud's sealed end-to-end acknowledgement."""
        self.down_seq += 1
        gateway.on_downlink(
            seal_downlink(self.ring, self.down_seq, encode_ack(through), DOWN), DOWN
        )


def results(batches: list[tuple[int, list[Any]]]) -> list[tuple[int, int, str]]:
    return [
        (r.id, r.status, r.detail) for _, rs in batches for r in rs if isinstance(r, CommandResult)
    ]


def running_records(batches: list[tuple[int, list[Any]]]) -> list[tuple[int, str]]:
    return [(seq, r.software) for seq, rs in batches for r in rs if isinstance(r, Running)]


@pytest.fixture
def pi(cloud: Cloud, tmp_path: Path) -> Pi:
    """A gateway on release 1.0.0 (installed and current); 1.1.0 published in the cloud."""
    data_dir = tmp_path / "pi"
    releases = data_dir / updates.RELEASES
    first = cloud.publish("1.0.0")
    updates.fetch_release(cloud.url, first, releases, trusted=cloud.trusted(), running=None)
    updates.switch_current(releases, "1.0.0")
    return Pi(data_dir, cloud)


def update_to_new(pi: Pi) -> int:
    """Release 1.1.0 published; the gateway on 1.0.0 gets command 7 and restarts into it."""
    new = pi.cloud.publish("1.1.0")
    gateway, _, _ = pi.start("1.0.0")
    pi.command(gateway, 7, {"release": new, "version": "1.1.0", "board": "rpi"})
    batches = pi.sent(gateway)
    assert results(batches) == [(7, STATUS_ACCEPTED, "installing 1.1.0")]
    pi.ack(gateway, batches[-1][0])  # the cloud has it
    assert gateway.restart_requested  # exit 75: systemd starts 1.1.0
    pi.stop(gateway)
    releases = pi.data_dir / updates.RELEASES
    assert updates.current_release(releases) == "1.1.0"
    assert (releases / "1.0.0" / "manifest.json").is_file()  # the previous stays beside it
    trial = updates.load_trial(releases)
    assert trial is not None and (trial.version, trial.previous, trial.command_id) == (
        "1.1.0",
        "1.0.0",
        7,
    )
    return new


def test_a_healthy_trial_reports_done_with_the_new_version(pi: Pi) -> None:
    update_to_new(pi)
    gateway, updater, step = pi.start("1.1.0")
    assert step.do == plan.SAVE and updater.trial is not None and updater.trial.attempts == 1
    assert updater.check(gateway, T0 + 61).do == plan.NOTHING  # not acknowledged yet
    batches = pi.sent(gateway)
    assert running_records(batches) == [(updater.marker, "1.1.0")]
    assert results(batches) == []  # not done before the cloud has heard from it
    pi.ack(gateway, batches[-1][0])
    assert updater.check(gateway, T0 + 62).do == plan.REPORT_DONE
    assert results(pi.sent(gateway)) == [(7, STATUS_DONE, "running 1.1.0")]
    assert updates.load_trial(pi.data_dir / updates.RELEASES) is None
    assert updates.current_release(pi.data_dir / updates.RELEASES) == "1.1.0"
    assert not gateway.restart_requested
    pi.stop(gateway)


def test_a_trial_that_never_gets_healthy_rolls_back_and_reports_failed(pi: Pi) -> None:
    update_to_new(pi)
    releases = pi.data_dir / updates.RELEASES
    gateway, updater, _ = pi.start("1.1.0")
    assert updater.check(gateway, T0 + 599).do == plan.NOTHING
    assert updater.check(gateway, T0 + 600).do == plan.ROLL_BACK  # never acknowledged
    assert gateway.restart_requested
    assert updates.current_release(releases) == "1.0.0"
    pi.stop(gateway)
    gateway, _, step = pi.start("1.0.0")  # systemd starts the previous version again
    assert step.do == plan.REPORT_FAILED
    (report,) = results(pi.sent(gateway))
    assert report[:2] == (7, STATUS_FAILED)
    assert report[2].startswith("rolled back: 1.1.0 was not healthy within 10 minutes")
    assert updates.load_trial(releases) is None
    pi.stop(gateway)


def test_a_trial_version_that_keeps_crashing_rolls_back(pi: Pi) -> None:
    update_to_new(pi)
    releases = pi.data_dir / updates.RELEASES
    for attempt in range(1, LIMITS.max_starts + 1):  # each start dies before it is healthy
        gateway, updater, step = pi.start("1.1.0")
        assert step.do == plan.SAVE and updater.trial is not None
        assert updater.trial.attempts == attempt
        gateway.engine.queue.close()  # killed: no clean stop
    gateway, _, step = pi.start("1.1.0")
    assert step.do == plan.ROLL_BACK
    assert updates.current_release(releases) == "1.0.0"
    pi.stop(gateway)
    gateway, _, step = pi.start("1.0.0")
    (report,) = results(pi.sent(gateway))
    assert report[:2] == (7, STATUS_FAILED)
    assert report[2] == "rolled back: 1.1.0 started 3 times without reporting healthy"
    pi.stop(gateway)


def test_an_update_that_fails_verification_reports_failed_and_switches_nothing(
    pi: Pi, tmp_path: Path
) -> None:
    older = pi.cloud.publish("0.9.0")
    esp32 = pi.cloud.publish("1.2.0", board="esp32")
    releases = pi.data_dir / updates.RELEASES
    gateway, _, _ = pi.start("1.0.0")
    pi.command(gateway, 8, {"release": older, "version": "0.9.0", "board": "rpi"})
    pi.command(gateway, 9, {"release": esp32, "version": "1.2.0", "board": "rpi"})
    pi.command(gateway, 10, {"release": "x", "version": "1.2.0"})
    pi.command(gateway, 11, {"release": esp32, "version": "1.2.0", "board": "picow"})
    reports = results(pi.sent(gateway))
    assert reports == [
        (8, STATUS_ACCEPTED, "installing 0.9.0"),
        (8, STATUS_FAILED, "release 0.9.0 is not newer than 1.0.0 (running)"),
        (9, STATUS_ACCEPTED, "installing 1.2.0"),
        (9, STATUS_FAILED, "release 1.2.0 is for board esp32, not rpi"),
        (10, STATUS_REFUSED, "update needs release (a positive integer) and version (text)"),
        (11, STATUS_REFUSED, "update is for board picow; this gateway is rpi"),
    ]
    assert not gateway.restart_requested
    assert updates.current_release(releases) == "1.0.0"
    assert updates.load_trial(releases) is None
    assert sorted(p.name for p in releases.iterdir()) == ["1.0.0", "current"]
    pi.stop(gateway)


def test_the_updater_reports_the_release_it_runs_from(cloud: Cloud, tmp_path: Path) -> None:
    data_dir = tmp_path / "pi"
    releases = data_dir / updates.RELEASES
    updates.fetch_release(
        cloud.url, cloud.publish("1.3.0"), releases, trusted=cloud.trusted(), running=None
    )
    public = release_signing.public_path(cloud.rel.key)
    settings = parse_settings(
        {
            "data_dir": str(data_dir),
            "software_version": "0.5.0",
            "updates": {"release_keys": [str(public)]},
        },
        tmp_path / "gateway.toml",
    )
    inside = releases / "1.3.0" / "files" / "edge" / "version.py"
    updater = updates.Updater.from_settings(settings, module_file=str(inside))
    assert (updater.running, updater.software) == ("1.3.0", "1.3.0")
    assert set(updater.trusted) == set(cloud.trusted())
    base = updates.Updater.from_settings(settings, module_file=updates.__file__)
    assert (base.running, base.software) == (None, "0.5.0")  # the installed package
    assert base.start(T0).do == plan.NOTHING  # no trial


# ---- old releases are removed, never what current or a trial references --------------------


def folders(releases: Path) -> list[str]:
    return sorted(p.name for p in releases.iterdir())


def fake_release(releases: Path, version: str) -> None:
    """A release folder as cleaning sees one (a manifest, no content needed)."""
    (releases / version).mkdir(parents=True)
    (releases / version / "manifest.json").write_text("{}")


def test_what_cleaning_keeps(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    for version in ("0.7.0", "0.9.0", "1.0.0", "1.1.0", "2.0.0-rc.1"):
        fake_release(releases, version)
    (releases / "notes").mkdir()  # not a release: never touched
    # No current (the base install runs): no release folder is judged.
    assert updates.remove_old_releases(releases, None, None) == []
    updates.switch_current(releases, "1.1.0")
    # current, and the newest older one (what a rollback would use), and what runs
    assert updates.releases_to_keep(releases, None, None) == {"1.1.0", "1.0.0"}
    assert updates.releases_to_keep(releases, "0.7.0", None) == {"1.1.0", "1.0.0", "0.7.0"}
    # a trial's both releases; the previous link (set when a trial succeeds) wins
    trial = plan.Trial("1.1.0", "0.9.0", 3, T0)
    assert updates.releases_to_keep(releases, None, trial) == {"1.1.0", "1.0.0", "0.9.0"}
    updates.switch_current(releases, "0.9.0", updates.PREVIOUS)
    assert updates.releases_to_keep(releases, None, None) == {"1.1.0", "0.9.0"}
    (releases / ".incoming-1.2.0-abcd").mkdir()
    removed = updates.remove_old_releases(releases, None, None)
    assert sorted(removed) == [".incoming-1.2.0-abcd", "0.7.0", "1.0.0", "2.0.0-rc.1"]
    assert folders(releases) == ["0.9.0", "1.1.0", "current", "notes", "previous"]
    assert updates.current_release(releases) == "1.1.0"


def test_a_successful_trial_removes_older_releases(pi: Pi) -> None:
    releases = pi.data_dir / updates.RELEASES
    trusted = pi.cloud.trusted()
    for version in ("0.8.0", "0.9.0"):
        release_id = pi.cloud.publish(version)
        updates.fetch_release(
            pi.cloud.url, release_id, releases, trusted=trusted, running=None, allow_older=True
        )
    (releases / ".incoming-1.0.1-dead").mkdir()  # a download a power cut interrupted
    update_to_new(pi)  # its first start (on 1.0.0) keeps 1.0.0 and 0.9.0, the rollback
    assert folders(releases) == ["0.9.0", "1.0.0", "1.1.0", "current", "trial.json"]
    gateway, updater, _ = pi.start("1.1.0")  # on trial: both of the trial's stay
    assert folders(releases) == ["1.0.0", "1.1.0", "current", "trial.json"]
    fake_release(releases, "0.5.0")  # e.g. put there by hand meanwhile
    pi.ack(gateway, pi.sent(gateway)[-1][0])
    assert updater.check(gateway, T0 + 62).do == plan.REPORT_DONE
    # current, and the release it would roll back to (the one the trial replaced)
    assert folders(releases) == ["1.0.0", "1.1.0", "current", "previous"]
    assert updates.current_release(releases, updates.PREVIOUS) == "1.0.0"
    pi.stop(gateway)
    gateway, _, _ = pi.start("1.1.0")  # the next start keeps the same
    assert folders(releases) == ["1.0.0", "1.1.0", "current", "previous"]
    pi.stop(gateway)


# ---- ExecStartPre: a release on trial that cannot even be imported is rolled back -----------

PACKAGES = {
    "edge": "edge",
    "bankiot_core": "firmware/lib/bankiot_core",
    "provisioning": "provisioning",
}


def source_files(broken: bool) -> dict[str, bytes]:
    """The project's own packages as a release for the Pi carries them; ``broken``: its
    ``edge/runtime.py`` raises when imported (as a bad release would)."""
    root = Path(__file__).resolve().parents[2]
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            out["%s/%s" % (package, path.relative_to(root / folder))] = path.read_bytes()
    if broken:  # at the end: the module body runs, then raises
        out["edge/runtime.py"] += b'\nraise RuntimeError("this release is broken")\n'
    return out


def install_local(cloud: Cloud, releases: Path, version: str, broken: bool = False) -> None:
    """Sign a release of the project's packages and lay it out under ``releases``."""
    bundle = make_bundle(cloud.rel.work / ("src-%s" % version), source_files(broken))
    release_signing.sign_bundle(bundle, cloud.rel.key, "rpi", version)
    release_signing.verify_bundle(bundle, cloud.trusted().values())
    import shutil

    shutil.copytree(bundle, releases / version)


def check_release_cli(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> tuple[int, str, str]:
    """``bankiot gateway check-release`` as the unit's ExecStartPre runs it."""
    from provisioning.cli import main

    config = tmp_path / "gateway.toml"
    config.write_text('data_dir = "%s"\n[updates]\ntrial_minutes = 10\nmax_starts = 3\n' % data_dir)
    code = main(["gateway", "check-release", "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_release_that_cannot_be_imported_is_rolled_back_before_it_starts(
    cloud: Cloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "pi"
    releases = data_dir / updates.RELEASES
    releases.mkdir(parents=True)
    install_local(cloud, releases, "1.0.0")
    updates.switch_current(releases, "1.0.0")
    pi = Pi(data_dir, cloud)
    gateway, updater, _ = pi.start("1.0.0")
    install_local(cloud, releases, "1.1.0", broken=True)  # as an update command installs it
    # No trial: the guard does nothing, even with a broken release beside current.
    assert check_release_cli(capsys, data_dir, tmp_path) == (0, "", "")
    updater.begin_trial("1.1.0", 7, T0 + 30)  # then exit 75: systemd starts it again
    pi.stop(gateway)
    code, out, err = check_release_cli(capsys, data_dir, tmp_path)
    assert (code, err) == (0, "")
    assert out == (
        "rolled back to 1.0.0: 1.1.0 cannot be imported: RuntimeError: this release is broken\n"
    )
    assert updates.current_release(releases) == "1.0.0"  # what ExecStart now runs
    trial = updates.load_trial(releases)
    assert trial is not None and trial.state == plan.ROLLED_BACK
    # The previous version starts and reports the update failed, with the reason.
    gateway, _, step = pi.start("1.0.0")
    assert step.do == plan.REPORT_FAILED
    assert results(pi.sent(gateway)) == [
        (
            7,
            STATUS_FAILED,
            "rolled back: 1.1.0 cannot be imported: RuntimeError: this release is broken",
        )
    ]
    assert updates.load_trial(releases) is None
    pi.stop(gateway)


def test_the_guard_lets_a_good_release_start_and_ends_an_expired_trial(
    cloud: Cloud, tmp_path: Path
) -> None:
    releases = tmp_path / "pi" / updates.RELEASES
    releases.mkdir(parents=True)
    install_local(cloud, releases, "1.0.0")
    install_local(cloud, releases, "1.1.0")
    updates.save_trial(releases, plan.Trial("1.1.0", "1.0.0", 7, T0, attempts=1))
    updates.switch_current(releases, "1.1.0")
    step = updates.guard_start(releases, LIMITS, T0 + 60)
    assert (step.do, step.detail) == (plan.NOTHING, "1.1.0 imports")
    assert updates.load_trial(releases) == plan.Trial("1.1.0", "1.0.0", 7, T0, attempts=1)

    # The start is not counted by the guard; a trial over by the start rules is ended
    # without importing anything (it would be rolled back by the start anyway).
    def never(files: Path) -> str | None:
        raise AssertionError("nothing to import")

    step = updates.guard_start(releases, LIMITS, T0 + 600, importable=never)
    assert step.do == plan.ROLL_BACK and "not healthy within 10 minutes" in step.detail
    assert updates.current_release(releases) == "1.0.0"
    updates.save_trial(releases, plan.Trial("1.1.0", "1.0.0", 7, T0, attempts=3))
    updates.switch_current(releases, "1.1.0")
    step = updates.guard_start(releases, LIMITS, T0 + 60, importable=never)
    assert step.do == plan.ROLL_BACK and "started 3 times" in step.detail
    assert updates.current_release(releases) == "1.0.0"
