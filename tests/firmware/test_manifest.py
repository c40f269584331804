"""firmware/manifest.py, the frozen-image manifest: evaluated with recording stand-ins for
MicroPython's manifest functions, it freezes every file a board's bundle installs.

The stand-ins follow ``tools/manifestfile.py`` of MicroPython: ``package(path,
base_path=...)`` takes every ``.py`` under ``base_path/path`` as the module
``path/...``; ``module(file, base_path=...)`` one file; ``freeze(path, script)`` a file
or folder under ``path``; paths are relative to the manifest's folder; ``include`` and
``require`` name other manifests (recorded, not followed: they are MicroPython's own).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from provisioning.firmware_bundle import SOURCE_ONLY, board_files, device_files

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
MANIFEST = FIRMWARE / "manifest.py"


class Recorder:
    """What a manifest asks for: the frozen modules' target paths, includes, requires."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.targets: dict[str, Path] = {}
        self.includes: list[str] = []
        self.requires: list[str] = []

    def _base(self, base_path: str) -> Path:
        assert "$(" not in base_path, "the bankiot files are found relative to the manifest"
        return (self.root / base_path).resolve()

    def _add(self, source: Path, target: str) -> None:
        assert source.is_file(), "no file %s" % source
        assert target not in self.targets, "%s frozen twice" % target
        self.targets[target] = source

    def package(
        self, package_path: str, files: Any = None, base_path: str = ".", opt: Any = None
    ) -> None:
        base = self._base(base_path)
        if files is not None:
            for name in files:
                self._add(base / package_path / name, "%s/%s" % (package_path, name))
            return
        assert (base / package_path).is_dir(), "no package %s under %s" % (package_path, base)
        for folder, _, names in os.walk(base / package_path):
            for name in names:
                if name.endswith(".py"):
                    source = Path(folder) / name
                    self._add(source, source.relative_to(base).as_posix())

    def module(self, module_path: str, base_path: str = ".", opt: Any = None) -> None:
        self._add(self._base(base_path) / module_path, module_path)

    def freeze(self, path: str, script: Any = None, opt: Any = None) -> None:
        base = self._base(path)
        scripts = [script] if isinstance(script, str) else script
        if scripts is None:
            self.package(".", base_path=path)
            return
        for item in scripts:
            if (base / item).is_dir():
                self.package(item, base_path=path)
            else:
                self._add(base / item, item)

    def include(self, manifest: str, **options: Any) -> None:
        self.includes.append(manifest)

    def require(self, name: str, **options: Any) -> None:
        self.requires.append(name)

    def evaluate(self, manifest: Path) -> Recorder:
        names = {
            "include": self.include,
            "require": self.require,
            "package": self.package,
            "module": self.module,
            "freeze": self.freeze,
            "metadata": lambda **kwargs: None,
            "options": None,
        }
        exec(compile(manifest.read_text(), str(manifest), "exec"), names)
        return self


def frozen_target(device: str) -> str:
    """The module path a device file is imported by: ``/lib`` and ``/`` are on sys.path."""
    return device[len("/lib/") :] if device.startswith("/lib/") else device[1:]


@pytest.fixture(scope="module")
def recorded() -> Recorder:
    return Recorder(FIRMWARE).evaluate(MANIFEST)


@pytest.mark.parametrize("board", ["esp32", "picow"])
def test_the_manifest_freezes_every_file_of_the_boards_bundle(
    recorded: Recorder, board: str
) -> None:
    wanted = {
        frozen_target(f.device): f.host.resolve()
        for f in board_files(board)
        if f.device not in SOURCE_ONLY  # run from the flash as source, never frozen
    }
    assert "bankiot_core/gateway.py" in wanted and "app/main.py" in wanted
    assert "boards/%s.py" % board in wanted
    missing = sorted(set(wanted) - set(recorded.targets))
    assert missing == []
    for target, host in wanted.items():
        assert recorded.targets[target] == host  # the same file, under the same name


def test_the_manifest_freezes_nothing_a_board_does_not_run(recorded: Recorder) -> None:
    every_device_file = {frozen_target(f.device) for f in device_files()}
    assert set(recorded.targets) <= every_device_file
    assert not {"boot.py", "main.py", "manifest.py"} & set(recorded.targets)


def test_the_manifest_keeps_the_ports_own_image_and_what_the_firmware_imports(
    recorded: Recorder,
) -> None:
    assert recorded.includes == ["$(PORT_DIR)/boards/manifest.py"]
    assert set(recorded.requires) == {"ntptime", "ssl"}


def test_the_manifest_is_a_build_input_not_a_device_file() -> None:
    assert "/manifest.py" not in {f.device for f in device_files()}
    assert MANIFEST.exists()
