"""``bankiot firmware build``: the signed bundle a board installs, and that it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hw.micropython_runner import MicroPythonRunner
from provisioning.cli import cli
from provisioning.release_signing import (
    FILES_DIR,
    load_public_key,
    new_release_key,
    verify_bundle,
)


@pytest.fixture(scope="module")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    key = folder / "release.pem"
    return key, new_release_key(key)


def build(out: Path, board: str, key: Path, version: str = "1.2.3") -> str:
    args = ["firmware", "build", "--board", board, "--version", version]
    result = CliRunner().invoke(
        cli,
        [*args, "--key", str(key), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("board", "other"), [("esp32", "picow"), ("picow", "esp32")])
def test_the_bundle_is_signed_compiled_and_for_one_board(
    tmp_path: Path, release_key: tuple[Path, Path], board: str, other: str
) -> None:
    key, public = release_key
    out = tmp_path / "bundle"
    assert "built %s 1.2.3" % board in build(out, board, key)
    manifest = verify_bundle(out, [load_public_key(public.read_bytes())])
    paths = {entry.path for entry in manifest.files}
    assert manifest.board == board and manifest.version == "1.2.3"
    assert {"/boot.py", "/main.py", "/app/main.mpy", "/lib/bankiot_core/gateway.mpy"} <= paths
    assert "/boards/%s.mpy" % board in paths and "/boards/%s.mpy" % other not in paths
    assert not [p for p in paths if p.endswith(".py") and p not in ("/boot.py", "/main.py")]


def test_a_bundle_folder_that_is_not_empty_is_refused(
    tmp_path: Path, release_key: tuple[Path, Path]
) -> None:
    (tmp_path / "old.txt").write_text("x")
    args = ["firmware", "build", "--board", "esp32", "--version", "1.0.0"]
    result = CliRunner().invoke(cli, [*args, "--key", str(release_key[0]), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "is not empty" in result.output


def test_the_esp32_bundle_boots_in_micropython_and_reports_its_version(
    tmp_path: Path, release_key: tuple[Path, Path], micropython: MicroPythonRunner
) -> None:
    out = tmp_path / "bundle"
    build(out, "esp32", release_key[0], "2.0.1")
    code = (
        "exec(open('/boot.py').read())\nexec(open('/main.py').read())\n"
        "from app.version import SOFTWARE\nprint('version', SOFTWARE)\n"
    )
    run = micropython.run(
        code, fakes=("machine",), mounts={"/": out / FILES_DIR, "/lib": out / FILES_DIR / "lib"}
    ).check()
    assert "not provisioned" in run.stdout  # boot.py and main.py ran the .mpy application
    assert "version 2.0.1" in run.stdout
