"""The parts of ``bankiot flash`` on their own: the plan (pure), the esptool invocation
(a recording stand-in: there is no chip), and the raw-REPL client's fallbacks and
failures against the virtual board and against a peer that is not a board."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from provisioning import board_files
from provisioning.esptool_image import Esptool, ImageError
from provisioning.flash_plan import BundleFile, plan
from provisioning.repl import (
    ANSWER_TIMEOUT,
    NETWORK_ANSWER_TIMEOUT,
    BoardCodeError,
    BoardNotAnswering,
    RawRepl,
)
from tests.provisioning.flash_support import board, one_error_line, run_cli
from tests.support.environment import unavailable


def entry(path: str, data: bytes) -> BundleFile:
    return BundleFile(path, hashlib.sha256(data).hexdigest(), len(data))


# --- the plan -------------------------------------------------------------------------------


def test_plan_copies_what_differs_and_removes_stale_software_only() -> None:
    bundle = {
        "/boot.py": entry("/boot.py", b"boot"),
        "/app/main.mpy": entry("/app/main.mpy", b"main"),
        "/lib/bankiot_core/cbor.mpy": entry("/lib/bankiot_core/cbor.mpy", b"cbor"),
    }
    on_board = {
        "/boot.py": hashlib.sha256(b"boot").hexdigest(),  # unchanged
        "/app/main.mpy": hashlib.sha256(b"older").hexdigest(),  # differs
        "/app/main.py": "0" * 64,  # source that would shadow the .mpy
        "/config/wifi.json": "1" * 64,  # not software: kept
    }
    steps = plan(bundle, on_board)
    assert [f.path for f in steps.copy] == ["/app/main.mpy", "/lib/bankiot_core/cbor.mpy"]
    assert [f.path for f in steps.unchanged] == ["/boot.py"]
    assert steps.remove == ("/app/main.py",)
    assert steps.folders == ("/app", "/lib", "/lib/bankiot_core")
    assert steps.copy_bytes == 8
    with_identity = plan(bundle, on_board, identity=True)
    assert with_identity.remove == ("/app/main.py", "/data", "/releases")


def test_plan_refuses_a_bundle_that_writes_outside_the_software() -> None:
    with pytest.raises(ValueError, match=r"/identity/device\.key outside"):
        plan({"/identity/device.key": entry("/identity/device.key", b"k")}, {})


# --- esptool ----------------------------------------------------------------------------------


class Recorder:
    """Stands in for running esptool: records each command, answers ``returncode``."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.commands: list[list[str]] = []
        self.returncode = returncode
        self.stderr = stderr

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(command))
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


def test_esptool_erases_then_writes_the_image_at_0x1000(tmp_path: Path) -> None:
    image = tmp_path / "ESP32_GENERIC-v1.24.1.bin"
    image.write_bytes(b"\xe9" + bytes(100))
    recorder = Recorder()
    Esptool(run=recorder, python="python3").write("/dev/ttyUSB0", image)
    base = ["python3", "-m", "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0"]
    assert recorder.commands == [
        [*base, "erase-flash"],
        [*base, "--baud", "460800", "write-flash", "-z", "0x1000", str(image)],
    ]


def test_esptool_invocation_is_one_the_installed_esptool_accepts(tmp_path: Path) -> None:
    """The real esptool parses the arguments (``--help`` of each subcommand after them)."""
    try:
        import esptool  # noqa: F401
    except ImportError:
        unavailable("esptool is not installed (pip install -e '.[field]')")
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(16))
    for command in Esptool().commands("/dev/ttyUSB0", image):
        assert command[-1] == str(image) or command[-1] == "erase-flash"
        subcommand = "write-flash" if "write-flash" in command else "erase-flash"
        head = command[: command.index(subcommand) + 1]
        done = subprocess.run([*head, "--help"], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def test_esptool_failure_and_virtual_ports_are_one_line(tmp_path: Path) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(bytes(16))
    failing = Recorder(2, "A fatal error occurred: Failed to connect to ESP32: No serial data")
    with pytest.raises(ImageError, match=r"erase-flash failed: A fatal error .* No serial data"):
        Esptool(run=failing).write("/dev/ttyUSB0", image)
    recorder = Recorder()
    with pytest.raises(ImageError, match="board's own serial port"):
        Esptool(run=recorder).write("socket://127.0.0.1:4000", image)
    assert recorder.commands == []


# --- the raw REPL -----------------------------------------------------------------------------


def test_plain_raw_mode_writes_and_verifies_files_too(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40  # binary, several pieces
    with board(tmp_path / "board") as vb, RawRepl(vb.url, use_raw_paste=False) as repl:
        repl.enter()
        board_files.make_folders(repl, ["/app/deep"])
        board_files.write_file(repl, "/app/deep/blob.bin", data)
        assert not repl.raw_paste_used
        assert board_files.read_file(repl, "/app/deep/blob.bin") == data
        assert board_files.sha256_of(repl, "/app/deep/blob.bin") == hashlib.sha256(data).hexdigest()
        with pytest.raises(BoardCodeError, match="the board said: ZeroDivisionError"):
            repl.exec("1/0")
        board_files.remove(repl, ["/app"])
        assert board_files.file_hashes(repl, ["/app"], ["/app/deep/blob.bin"]) == {}


@pytest.fixture
def silent_peer() -> Iterator[str]:
    """A TCP port that accepts connections and never says anything (not a board)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield "socket://127.0.0.1:%d" % server.getsockname()[1]
    server.close()
    for conn in accepted:
        conn.close()


def test_a_peer_that_is_not_a_board_is_reported(silent_peer: str) -> None:
    with (
        RawRepl(silent_peer, answer_timeout=0.5) as repl,
        pytest.raises(BoardNotAnswering, match="did not answer on its raw REPL within"),
    ):
        repl.enter()


def test_a_board_over_the_network_gets_longer_to_answer_than_one_on_a_serial_device(
    silent_peer: str,
) -> None:
    controller, device = os.openpty()  # a serial device, as a USB adapter's tty
    try:
        with RawRepl(os.ttyname(device)) as serial_board:
            assert serial_board.answer_timeout == ANSWER_TIMEOUT
    finally:
        os.close(controller)
        os.close(device)
    with RawRepl(silent_peer) as network_board:
        assert network_board.answer_timeout == NETWORK_ANSWER_TIMEOUT > ANSWER_TIMEOUT


# --- the command's own checks, before any board or cloud ------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--board", "picow", "--firmware", "fw.uf2"], "--firmware is for an ESP32"),
        (["--wifi-ssid", "branch-iot"], "give both --wifi-ssid and --wifi-password-file"),
        (["--claim", "  "], "the claim token is empty"),
        (["--bundle", "no-such-bundle"], "cannot read the bundle no-such-bundle"),
    ],
)
def test_bad_options_are_one_line_before_anything_happens(
    extra: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["flash", "--port", "socket://127.0.0.1:9", "--claim", "bkc_x", "--no-wait", *extra]
    code, _out, err = run_cli(capsys, *args)
    assert words in one_error_line(code, err)
