"""What the flash tests share: a served cloud, a bundle built once, virtual boards, and
reading a board's flash from the host (its state folder)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hw.micropython_runner import MicroPythonUnavailable
from hw.virtual_board import VirtualBoard
from provisioning.cli import main
from tests.cloud.identity_actions import Cloud
from tests.support.environment import unavailable

BROKER = "mqtts://127.0.0.1:8883"
WIFI_SSID = "branch-iot"  # the networks hw/fakes/network.py knows
WIFI_KEY = "branch-secret"
UNIQUE_ID = bytes.fromhex("240ac4a1b2c3")
UID = "esp32-240ac4a1b2c3"


@dataclass
class Served:
    """The cloud app (SQLite) with a fleet CA, on a real HTTP server at ``url``."""

    cloud: Cloud
    url: str


@contextmanager
def board(
    state_dir: Path,
    blank: bool = True,
    unique_id: bytes = UNIQUE_ID,
    routes: dict[str, str] | None = None,
    asyncio_run: bool = False,
) -> Iterator[VirtualBoard]:
    """A started virtual board keeping its flash in ``state_dir``: blank (MicroPython and
    nothing else) or with the firmware tree as factory image; ``routes`` as
    ``VirtualBoard``'s."""
    kwargs: dict[str, Any] = {
        "state_dir": state_dir,
        "unique_id": unique_id,
        "routes": routes,
        "asyncio_run": asyncio_run,
    }
    if blank:
        kwargs["files"] = {}
    try:
        vb = VirtualBoard(**kwargs).start()
    except MicroPythonUnavailable as exc:
        unavailable(str(exc))
        raise
    try:
        yield vb
    finally:
        vb.stop()


def flash_files(state_dir: Path) -> dict[str, bytes]:
    """Every file on a stopped board's flash (device path -> bytes), from its state folder."""
    root = state_dir / "flash"
    return {
        "/" + p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def sha256s(files: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


def manifest_hashes(bundle: Path) -> dict[str, str]:
    """Device path -> SHA-256 of a bundle's manifest."""
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    return {entry["path"]: entry["sha256"] for entry in manifest["files"]}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``bankiot ARGS``: exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, err: str) -> str:
    """The one ``Error:`` line of a failed command (the progress bar may come before it)."""
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, err
    assert err.rstrip("\n").endswith(lines[0]), err
    return lines[0]
