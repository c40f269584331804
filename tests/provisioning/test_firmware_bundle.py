"""The firmware bundle: which files go onto a board, and mpy-cross compiling them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioning.cli import cli
from provisioning.firmware_bundle import (
    FirmwareCompileError,
    compile_file,
    device_files,
)


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_device_paths_mirror_the_firmware_tree(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "fw",
        {
            "main.py": "",
            "lib/core/__init__.py": "",
            "lib/core/__pycache__/x.py": "",
            "pyright-esp32.json": "{}",
            "lib/core/types.pyi": "",
        },
    )
    assert [f.device for f in device_files(root)] == ["/lib/core/__init__.py", "/main.py"]


def test_mpy_cross_output_is_micropython_bytecode(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "fw", {"lib/m.py": "X = 1\n"})
    (source,) = device_files(root)
    target = compile_file(source, tmp_path / "out")
    assert target == tmp_path / "out" / "lib" / "m.mpy"
    assert target.read_bytes()[:1] == b"M"  # the .mpy header's magic byte


def test_syntax_micropython_rejects_names_file_and_line(tmp_path: Path) -> None:
    # Valid CPython, rejected by MicroPython: positional-only parameters.
    root = make_tree(tmp_path / "fw", {"bad.py": "X = 1\n\ndef f(a, /, b):\n    pass\n"})
    (source,) = device_files(root)
    with pytest.raises(FirmwareCompileError) as caught:
        compile_file(source, tmp_path / "out")
    assert caught.value.path == source.host
    assert caught.value.line == 3
    assert "SyntaxError" in str(caught.value)


def test_cli_compiles_the_real_firmware_tree() -> None:
    result = CliRunner().invoke(cli, ["firmware", "compile", "--json"])
    assert result.exit_code == 0, result.output
    compiled = json.loads(result.stdout)["compiled"]
    devices = {c["device"] for c in compiled}
    assert "/lib/bankiot_core/errors.py" in devices
    assert all(c["bytes"] > 0 for c in compiled)


def test_cli_version_and_help_list_only_working_groups() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip() == "bankiot, version 0.1.0"
    help_text = runner.invoke(cli, ["--help"]).output
    assert "firmware" in help_text
