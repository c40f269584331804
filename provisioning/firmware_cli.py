"""``bankiot firmware``: build what gets flashed onto ESP32 and Pico W boards."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from provisioning.firmware_bundle import FirmwareCompileError, compile_file, device_files


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
    files = device_files()
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
