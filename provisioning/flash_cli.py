"""``bankiot flash``: put the firmware and a new identity on an ESP32 or Pico W, and see it
come online.

The steps, ordered so that a claim token is spent only on a board that answers, and a
refused claim leaves the board as it was:

1. check everything local: options, the bundle (``flash_bundle``), the WiFi password file,
   the API token for the online check (``BANKIOT_TOKEN``);
2. ``--firmware`` (ESP32): write the MicroPython image with esptool (``esptool_image``);
3. open the board's raw REPL (``repl``), check its platform, read its unique id (the
   default uid) and the SHA-256 of the software it holds (``board_files``);
4. redeem the claim with a key and CSR made here (``board_identity``);
5. copy what differs (``flash_plan``), with a progress bar, each file verified; write the
   identity and configuration; forget the local copy of the private material;
6. ``--replaces OLD``: the new device takes over the old one's configuration, the old one
   is revoked (``cloud.fleet.replacement``);
7. soft-reset the board and wait until the cloud sees it (``flash_online``); print the
   report, or why not, with what the board printed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

import bankiot_core
from provisioning import board_files
from provisioning.board_identity import CONFIG_DIR, IDENTITY_DIR, WIFI, device_uid, enroll_board
from provisioning.flash_bundle import BundleUnusable, Software, build_on_the_fly, load_bundle
from provisioning.flash_bundle import release_keys as read_release_keys
from provisioning.flash_plan import MANAGED, TOP_FILES, plan
from provisioning.repl import RawRepl, ReplError

PLATFORMS = {"esp32": "esp32", "picow": "rp2"}  # sys.platform of each board
VIRTUAL = "webassembly"  # hw/virtual_board.py
DEFAULT_CLOUD = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class FlashOptions:
    """What the technician asked for (the command's options, checked)."""

    port: str
    claim: str
    board: str
    cloud: str
    software: Software
    release_keys: list[str]
    wifi: tuple[str, str] | None
    uid: str | None
    replaces: int | None
    timeout: float
    wait: bool
    cafile: Path | None


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _wifi(ssid: str | None, password_file: Path | None) -> tuple[str, str] | None:
    if ssid is None and password_file is None:
        return None
    if ssid is None or password_file is None:
        raise _fail("give both --wifi-ssid and --wifi-password-file, or neither")
    try:
        password = password_file.read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail("cannot read the WiFi password file %s: %s" % (password_file, exc)) from None
    return ssid, password


def _api_client(cloud: str) -> object:
    from cloud.fleet.client import ApiError, FleetClient

    try:
        return FleetClient(cloud, os.environ.get("BANKIOT_TOKEN", ""))
    except ApiError as exc:
        raise _fail("%s (needed to see the board online; --no-wait skips that)" % exc) from None


@click.command("flash")
@click.option(
    "--port",
    required=True,
    help="The board's serial port (/dev/ttyUSB0, COM3, socket://HOST:PORT for a virtual board).",
)
@click.option("--claim", required=True, help="The claim token (bankiot fleet claims create).")
@click.option("--board", type=click.Choice(("esp32", "picow")), default="esp32", show_default=True)
@click.option(
    "--firmware",
    "image",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A MicroPython image to write first with esptool (ESP32 only).",
)
@click.option(
    "--bundle",
    type=click.Path(file_okay=False, path_type=Path),
    help="A bundle from `bankiot firmware build` (default: build one now).",
)
@click.option(
    "--release-key",
    "release_key_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A release public key (.pub) the board trusts for updates; checks --bundle "
    "too. Repeatable.",
)
@click.option(
    "--version",
    "version",
    default=bankiot_core.VERSION,
    show_default=True,
    help="The version of a bundle built now.",
)
@click.option(
    "--cloud",
    envvar="BANKIOT_URL",
    default=DEFAULT_CLOUD,
    show_default=True,
    help="The cloud's address (or BANKIOT_URL).",
)
@click.option(
    "--cafile",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CA certificates to verify the cloud's TLS with (default: the system's).",
)
@click.option("--wifi-ssid", help="The WiFi network the board joins.")
@click.option(
    "--wifi-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file holding the WiFi password (never on the command line).",
)
@click.option("--uid", help="The device uid (default: board kind and its unique id).")
@click.option(
    "--replaces",
    type=click.IntRange(1),
    help="The device id of a failed gateway this board replaces.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the board to come online.",
)
@click.option("--no-wait", is_flag=True, help="Do not wait for the board to come online.")
def flash(
    port: str,
    claim: str,
    board: str,
    image: Path | None,
    bundle: Path | None,
    release_key_files: tuple[Path, ...],
    version: str,
    cloud: str,
    cafile: Path | None,
    wifi_ssid: str | None,
    wifi_password_file: Path | None,
    uid: str | None,
    replaces: int | None,
    timeout: float,
    no_wait: bool,
) -> None:
    """Flash a board, enroll it with a claim, and wait until the cloud sees it online.

    The API token for the online check and --replaces comes from BANKIOT_TOKEN.
    """
    if image is not None and board != "esp32":
        raise _fail("--firmware is for an ESP32; on a Pico W copy the .uf2 onto its RPI-RP2 drive")
    if not claim.strip():
        raise _fail("the claim token is empty")
    cloud = cloud.rstrip("/")
    try:
        keys = read_release_keys(release_key_files)
        software = (
            load_bundle(bundle, board, release_key_files)
            if bundle is not None
            else build_on_the_fly(board, version)
        )
    except BundleUnusable as exc:
        raise _fail(str(exc)) from None
    options = FlashOptions(
        port=port,
        claim=claim.strip(),
        board=board,
        cloud=cloud,
        software=software,
        release_keys=keys,
        wifi=_wifi(wifi_ssid, wifi_password_file),
        uid=uid,
        replaces=replaces,
        timeout=timeout,
        wait=not no_wait,
        cafile=cafile,
    )
    client = _api_client(cloud) if options.wait or replaces is not None else None
    if image is not None:
        from provisioning.esptool_image import Esptool, ImageError

        try:
            Esptool().write(port, image)
        except ImageError as exc:
            raise _fail(str(exc)) from None
        click.echo("MicroPython image %s written" % image.name, err=True)
    try:
        with RawRepl(port) as repl:
            run_flash(options, repl, client)
    except ReplError as exc:
        raise _fail(str(exc)) from None


def _check_platform(repl: RawRepl, board: str) -> None:
    found = board_files.platform(repl)
    if found not in (PLATFORMS[board], VIRTUAL):
        other = {v: k for k, v in PLATFORMS.items()}.get(found)
        hint = ": give --board %s" % other if other else ""
        raise _fail("the board on %s is a %s, not a %s%s" % (repl.port, found, board, hint))


def run_flash(options: FlashOptions, repl: RawRepl, client: object) -> None:
    """Steps 3 to 7 on an open board (module docstring)."""
    from cloud.fleet.client import ApiError, FleetClient
    from edge.enroll import check_uid
    from edge.errors import EnrollError
    from provisioning.flash_online import NotOnline, inventory_entry, wait_online

    repl.enter()
    _check_platform(repl, options.board)
    try:
        uid = (
            check_uid(options.uid)
            if options.uid
            else device_uid(options.board, board_files.unique_id(repl))
        )
    except (ValueError, EnrollError) as exc:
        raise _fail(str(exc)) from None
    on_board = board_files.file_hashes(repl, MANAGED, (*TOP_FILES, WIFI))
    if options.wifi is None and WIFI not in on_board:
        raise _fail("the board has no WiFi settings: give --wifi-ssid and --wifi-password-file")
    assert client is None or isinstance(client, FleetClient)
    if options.replaces is not None and client is not None:
        try:
            client.get("/api/devices/%d" % options.replaces)
        except ApiError as exc:
            raise _fail("the device to replace: %s" % exc) from None
    try:
        provisioned = enroll_board(
            options.cloud, options.claim, uid, options.release_keys, options.wifi, options.cafile
        )
    except EnrollError as exc:
        raise _fail("%s (the board was not changed)" % exc) from None
    used = "; the claim is used: ask for a re-claim of device %d" % provisioned.device_id
    bundle_files = {p: f for p, f in options.software.files.items()}
    steps = plan(bundle_files, {p: h for p, h in on_board.items() if p != WIFI}, identity=True)
    try:
        board_files.remove(repl, steps.remove)
        board_files.make_folders(repl, (*steps.folders, IDENTITY_DIR, CONFIG_DIR))
        label = "copying %d files (%d unchanged)" % (len(steps.copy), len(steps.unchanged))
        with click.progressbar(length=steps.copy_bytes, label=label, file=sys.stderr) as bar:
            for entry in steps.copy:
                board_files.write_file(
                    repl, entry.path, options.software.contents[entry.path], bar.update
                )
        for path, data in sorted(provisioned.files.items()):
            board_files.write_file(repl, path, bytes(data))
    except ReplError as exc:
        raise _fail("%s%s" % (exc, used)) from None
    finally:
        provisioned.wipe()
    click.echo(
        "%s enrolled as device %d in branch %d%s; software %s written"
        % (
            uid,
            provisioned.device_id,
            provisioned.branch_id,
            " (re-provisioned)" if provisioned.reprovisioned else "",
            options.software.version,
        ),
        err=True,
    )
    if options.replaces is not None and client is not None:
        from provisioning.flash_online import replaced_line

        try:
            answer = client.request(
                "POST",
                "/api/fleet/devices/%d/replace" % options.replaces,
                json_body={"by": provisioned.device_id},
            )
        except ApiError as exc:
            raise _fail("the board is enrolled, but replacing failed: %s" % exc) from None
        click.echo(replaced_line(answer), err=True)
    seen_before = None
    if options.wait and client is not None:
        try:
            entry = inventory_entry(client, provisioned.device_id, uid)
        except ApiError as exc:
            raise _fail("cannot ask the cloud about %s: %s" % (uid, exc)) from None
        seen_before = entry["last_seen_at"] if entry else None
    repl.reboot_and_run()
    if not options.wait or client is None:
        click.echo("%s restarted; not waiting for it to come online" % uid)
        return
    try:
        online = wait_online(client, repl, provisioned.device_id, uid, seen_before, options.timeout)
    except NotOnline as exc:
        raise _fail(str(exc)) from None
    click.echo(online.report())
