"""``bankiot firmware``: build what gets flashed onto ESP32 and Pico W boards."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from bankiot_core.manifest import BOARDS
from provisioning.firmware_bundle import (
    BundleError,
    FirmwareCompileError,
    compile_file,
    device_files,
)


@click.group()
def firmware() -> None:
    """Build and check the MicroPython firmware bundle."""


@firmware.command("compile")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the .mpy files (default: a temporary folder, removed afterwards).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def compile_command(out: Path | None, as_json: bool) -> None:
    """Compile every file that goes onto a board with mpy-cross.

    Fails with one line naming the file and line of the first file MicroPython rejects.
    """
    try:
        files = device_files()
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = out or Path(scratch)
        compiled = []
        with click.progressbar(files, label="mpy-cross", file=sys.stderr) as bar:
            for source in bar:
                try:
                    target = compile_file(source, out_dir)
                except FirmwareCompileError as exc:
                    raise click.ClickException(str(exc)) from exc
                compiled.append({"device": source.device, "bytes": target.stat().st_size})
    if as_json:
        click.echo(json.dumps({"compiled": compiled}, indent=2))
    else:
        total = sum(c["bytes"] for c in compiled)
        click.echo("compiled %d files, %d bytes of bytecode" % (len(compiled), total))


@firmware.command("build")
@click.option(
    "--board", required=True, type=click.Choice(("esp32", "picow")), help="The target board."
)
@click.option("--version", required=True, help="The release version (MAJOR.MINOR.PATCH).")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private release key (mode 0600).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The bundle folder to create (must not exist or be empty).",
)
def build_command(board: str, version: str, key_path: Path, out: Path) -> None:
    """Build the signed bundle a board installs: .mpy files, manifest, signature."""
    from provisioning.firmware_bundle import build_bundle
    from provisioning.release_signing import ReleaseError

    try:
        manifest = build_bundle(out, board, version, key_path)
    except (BundleError, FirmwareCompileError, ReleaseError) as exc:
        raise click.ClickException(str(exc)) from None
    total = sum(entry.size for entry in manifest.files)
    click.echo(
        "built %s %s in %s: %d files, %d bytes, signed"
        % (board, version, out, len(manifest.files), total)
    )


@firmware.group("release-key")
def release_key() -> None:
    """Release signing keys (Ed25519): keep them offline."""


@release_key.command("new")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private key file to create (mode 0600); the public key goes to OUT.pub.",
)
def release_key_new(out: Path) -> None:
    """Make a new release key; prints its key id and where the public key is."""
    from provisioning.release_signing import ReleaseError, key_id, load_private_key, new_release_key

    try:
        public = new_release_key(out)
        ident = key_id(load_private_key(out).public_key())
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("release key %s: private %s, public %s" % (ident, out, public))


@firmware.command("sign")
@click.argument("bundle", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private release key (mode 0600).",
)
@click.option("--board", required=True, type=click.Choice(BOARDS), help="The target board.")
@click.option("--version", required=True, help="The release version (MAJOR.MINOR.PATCH).")
def sign_command(bundle: Path, key_path: Path, board: str, version: str) -> None:
    """Write BUNDLE/manifest.json and manifest.sig for the files under BUNDLE/files/."""
    from provisioning.release_signing import ReleaseError, sign_bundle

    try:
        manifest = sign_bundle(bundle, key_path, board, version)
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from None
    total = sum(entry.size for entry in manifest.files)
    click.echo("signed %s %s: %d files, %d bytes" % (board, version, len(manifest.files), total))
