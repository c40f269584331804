"""The virtual board behaves like a board on USB serial, for pyserial clients and mpremote.

The expected bytes are MicroPython's REPL protocol as pyexec implements it and mpremote
(its reference client) reads it: raw REPL ``OK`` + stdout + ``\\x04`` + stderr + ``\\x04`` +
``>``; raw-paste ``R\\x01`` + 16-bit window + ``\\x01`` per window consumed; soft reset
``MPY: soft reboot``.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from hw.branch_devices import BthomeSensor
from hw.micropython_runner import MicroPythonUnavailable
from hw.virtual_board import VirtualBoard, firmware_files
from tests.support.environment import free_port, unavailable
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.micropython

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
BOOT_PY = "print('boot ran')\n"
MAIN_PY = "print('main ran')\nbooted = True\n"


class RawRepl:
    """A minimal raw-REPL client over pyserial, written from the protocol, not from mpremote."""

    def __init__(self, url: str) -> None:
        self.serial = serial.serial_for_url(url, timeout=20)

    def read_until(self, marker: bytes) -> bytes:
        data = self.serial.read_until(marker)
        assert data.endswith(marker), "expected %r, got %r" % (marker, data)
        return data

    def enter(self) -> None:
        self.serial.write(b"\r\x03\x03")
        self.serial.write(b"\r\x01")
        self.read_until(RAW_BANNER)

    def send(self, code: str) -> None:
        self.serial.write(code.encode() + b"\x04")
        assert self.serial.read(2) == b"OK"

    def follow(self) -> tuple[bytes, bytes]:
        out = self.read_until(b"\x04")[:-1]
        err = self.read_until(b"\x04")[:-1]
        assert self.serial.read(1) == b">"
        return out, err

    def exec(self, code: str) -> bytes:
        self.send(code)
        out, err = self.follow()
        assert err == b"", err.decode()
        return out

    def close(self) -> None:
        self.serial.close()


def start(**kwargs) -> VirtualBoard:
    try:
        return VirtualBoard(**kwargs).start()
    except MicroPythonUnavailable as exc:
        unavailable(str(exc))
        raise


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A small factory image with a boot.py and main.py that say they ran."""
    (tmp_path / "boot.py").write_text(BOOT_PY)
    (tmp_path / "main.py").write_text(MAIN_PY)
    return {"/boot.py": tmp_path / "boot.py", "/main.py": tmp_path / "main.py"}


@pytest.fixture
def board(tree: dict[str, Path]) -> Iterator[VirtualBoard]:
    vb = start(files=tree)
    yield vb
    vb.stop()


@pytest.fixture
def repl(board: VirtualBoard) -> Iterator[RawRepl]:
    client = RawRepl(board.url)
    client.enter()
    yield client
    client.close()


def test_raw_repl_runs_real_micropython_and_frames_output_and_errors(repl: RawRepl) -> None:
    repl.serial.write(b"import sys\nprint(sys.implementation.name)\nprint(1/0)\x04")
    reply = repl.read_until(b"\x04>")
    assert reply == (
        b"OKmicropython\r\n\x04"
        b"Traceback (most recent call last):\r\n"
        b'  File "<stdin>", line 3, in <module>\r\n'
        b"ZeroDivisionError: divide by zero\r\n\x04>"
    )


def test_raw_paste_grants_windows_as_it_consumes(repl: RawRepl) -> None:
    source = "".join("v%d = %d\n" % (i, i) for i in range(60)) + "print(v59 + v1)\n"
    data = source.encode()
    repl.serial.write(b"\x05A\x01")
    assert repl.serial.read(2) == b"R\x01"
    window = struct.unpack("<H", repl.serial.read(2))[0]
    assert window == 128  # half of MicroPython's default 256-byte stdin buffer
    remain, granted, i = window, 0, 0
    while i < len(data):
        # Send only what the board allowed; it must grant more as it consumes, or this hangs.
        while remain == 0 or repl.serial.in_waiting:
            assert repl.serial.read(1) == b"\x01"
            remain += window
            granted += 1
        chunk = data[i : i + remain]
        repl.serial.write(chunk)
        remain -= len(chunk)
        i += len(chunk)
    repl.serial.write(b"\x04")
    tail = repl.read_until(b"\x04")  # window grants still in flight, then end of data
    granted += tail.count(b"\x01")
    assert set(tail[:-1]) <= {1}
    out, err = repl.follow()
    assert (out, err) == (b"60\r\n", b"")
    assert granted >= len(data) // window  # one grant per window consumed (first is free)


def test_ctrl_c_interrupts_a_running_loop_and_keeps_the_session(repl: RawRepl) -> None:
    repl.send("n = 0\nwhile True:\n    n += 1\n")
    repl.serial.write(b"\x03")
    out, err = repl.follow()
    assert out == b""
    assert err.endswith(b"KeyboardInterrupt: \r\n")
    assert repl.exec("print(n > 0)") == b"True\r\n"
    # Sleeping code is interrupted too (the delay loop checks pending exceptions).
    repl.send("import time\nwhile True:\n    time.sleep_ms(10)\n")
    repl.serial.write(b"\x03")
    assert repl.follow()[1].endswith(b"KeyboardInterrupt: \r\n")


def test_soft_reset_clears_state_and_runs_boot_py(repl: RawRepl) -> None:
    repl.exec("x = 1")
    repl.serial.write(b"\x04")
    repl.read_until(b"OK\r\nMPY: soft reboot\r\n")
    # In the raw REPL a board runs boot.py but not main.py before the raw prompt.
    assert repl.read_until(RAW_BANNER) == b"boot ran\r\n" + RAW_BANNER
    out = repl.exec("import machine\nprint('x' in globals(), machine.reset_cause())")
    assert out == b"False 5\r\n"  # SOFT_RESET


def test_soft_reset_from_friendly_repl_runs_boot_and_main(repl: RawRepl) -> None:
    repl.serial.write(b"\x02")  # back to the friendly REPL
    repl.read_until(b">>> ")
    repl.serial.write(b"\x04")
    reply = repl.read_until(b">>> ")
    assert reply.startswith(b"\r\nMPY: soft reboot\r\nboot ran\r\nmain ran\r\n")
    repl.enter()
    assert repl.exec("print(booted)") == b"True\r\n"  # main.py ran in __main__


def test_machine_reset_reboots_the_board(repl: RawRepl) -> None:
    repl.send("import machine\nmachine.reset()")
    repl.follow()
    repl.read_until(b"main ran\r\n")  # a hard reset boots to the friendly REPL, main.py runs
    repl.enter()
    assert repl.exec("import machine\nprint(machine.reset_cause())") == b"2\r\n"  # HARD_RESET


def test_flash_survives_soft_reset_and_power_cycle_with_state_dir(
    tree: dict[str, Path], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    write = (
        "import os\n"
        "open('/data.tmp', 'w').write('42')\n"
        "os.rename('/data.tmp', '/data.txt')\n"
        "os.mkdir('/queue')"
    )
    read = "import os, machine\nprint(open('/data.txt').read(), os.listdir('/queue'), "
    read += "machine.reset_cause())"
    with start(files=tree, state_dir=state) as vb:
        client = RawRepl(vb.url)
        client.enter()
        client.exec(write)
        client.serial.write(b"\x04")
        client.read_until(RAW_BANNER)
        assert client.exec(read) == b"42 [] 5\r\n"
        client.close()
    assert (state / "flash" / "data.txt").read_text() == "42"
    with start(files=tree, state_dir=state) as vb:
        client = RawRepl(vb.url)
        client.enter()
        assert client.exec(read) == b"42 [] 1\r\n"  # powered on with its flash
        client.close()
    with start(files=tree) as vb:  # no state folder: the factory image again
        client = RawRepl(vb.url)
        client.enter()
        assert client.exec("import os\nprint('data.txt' in os.listdir('/'))") == b"False\r\n"
        client.close()


def test_file_errors_carry_the_boards_errno(repl: RawRepl) -> None:
    code = (
        "import errno, os\n"
        "try:\n"
        "    os.stat('/missing')\n"
        "except OSError as e:\n"
        "    print(e.errno == errno.ENOENT)\n"
        "try:\n"
        "    os.mkdir('/boot.py')\n"
        "except OSError as e:\n"
        "    print(e.errno == errno.EEXIST)"
    )
    assert repl.exec(code) == b"True\r\nTrue\r\n"


HANDLER = """
import bluetooth, time
heard = []
def irq(event, data):
    if event == 5:
        addr_type, addr, adv_type, rssi, adv_data = data
        heard.append((addr_type, bytes(addr), adv_type, rssi, bytes(adv_data)))
ble = bluetooth.BLE()
ble.active(True)
ble.irq(irq)
ble.gap_scan(0, 30000, 30000)
"""


def test_injected_advertisement_reaches_the_irq_handler_while_code_runs(
    board: VirtualBoard, repl: RawRepl
) -> None:
    sensor = BthomeSensor("lobby", bytes.fromhex("a4c138000101"))
    payload = sensor.advertise(0)
    assert payload is not None
    repl.exec(HANDLER)
    repl.send("while not heard:\n    time.sleep_ms(5)\nprint(heard[0][4].hex(), heard[0][3])")
    board.inject_advertisement(sensor.mac, payload, rssi=-71)
    out, err = repl.follow()
    assert err == b""
    assert out == b"%s -71\r\n" % payload.hex().encode()
    assert repl.exec("print(heard[0][:3])") == b"(0, b'\\xa4\\xc18\\x00\\x01\\x01', 0)\r\n"


def test_firmware_tree_is_on_the_flash() -> None:
    # The firmware's own boot.py and main.py are left out: they are not this test's subject.
    files = {d: h for d, h in firmware_files().items() if d not in ("/boot.py", "/main.py")}
    assert "/lib/bankiot_core/__init__.py" in files
    with start(files=files) as vb:
        client = RawRepl(vb.url)
        client.enter()
        out = client.exec(
            "import bankiot_core, os\nprint(bankiot_core.__file__, 'bankiot_core' in "
            "os.listdir('/lib'))"
        )
        client.close()
    assert out == b"/lib/bankiot_core/__init__.py True\r\n"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown board 'rpi'"):
        VirtualBoard("rpi", files={})
    board = VirtualBoard(files={})
    with pytest.raises(ValueError, match="6 bytes"):
        board.inject_advertisement(b"\x01\x02", b"")


def mpremote_command() -> list[str]:
    exe = Path(sys.executable).parent / "mpremote"
    found = str(exe) if exe.exists() else shutil.which("mpremote")
    if not found:
        unavailable("mpremote is not installed (pip install -e '.[dev]')")
    return [str(found)]


def test_mpremote_execs_and_copies_files_both_ways(board: VirtualBoard, tmp_path: Path) -> None:
    """The real mpremote as the independent client: it soft-resets, uses raw-paste, copies."""
    mpremote = [*mpremote_command(), "connect", board.url]

    def run(*args: str) -> str:
        proc = subprocess.run(
            [*mpremote, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert run("exec", "print(6 * 7)").strip() == "42"
    local = tmp_path / "module.py"
    local.write_text("".join("value_%d = %d\n" % (i, i * i) for i in range(300)))
    run("fs", "cp", str(local), ":module.py")
    back = tmp_path / "back.py"
    run("fs", "cp", ":module.py", str(back))
    assert back.read_bytes() == local.read_bytes()
    assert run("exec", "import module; print(module.value_299)").strip() == "89401"


def test_command_line_prints_the_port_and_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hw.virtual_board", "--port", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            proc.wait(timeout=10)
            message = proc.stderr.read() if proc.stderr else ""
            if "node" in message or "npm" in message:
                unavailable(message)
            pytest.fail("no port printed: %s" % message)
        client = RawRepl("socket://127.0.0.1:%d" % int(line))
        client.enter()
        assert client.exec("print(1 + 1)") == b"2\r\n"
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert (tmp_path / "flash").is_dir()


def test_board_sockets_reach_a_real_broker_on_the_host(
    board: VirtualBoard, repl: RawRepl, mosquitto: MosquittoBroker
) -> None:
    """An MQTT 3.1.1 CONNECT written by code on the board is answered by the real Mosquitto."""
    # CONNECT: protocol "MQTT" level 4, clean session, keep-alive 60 s, client id "vb1";
    # CONNACK with return code 0 (MQTT 3.1.1, sections 3.1 and 3.2).
    connect = "100f00044d5154540402003c0003766231"
    code = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(10)\n"
        "s.connect(socket.getaddrinfo(%r, %d)[0][-1])\n"
        "s.send(bytes.fromhex(%r))\n"
        "print(s.recv(4).hex())\n"
        "s.close()" % (mosquitto.host, mosquitto.port, connect)
    )
    assert repl.exec(code) == b"20020000\r\n"


def test_board_socket_errors_are_the_boards(repl: RawRepl) -> None:
    port = free_port()  # nobody listens there
    code = (
        "import socket, errno\n"
        "s = socket.socket()\n"
        "try:\n"
        "    s.connect(('127.0.0.1', %d))\n"
        "except OSError as e:\n"
        "    print(e.errno == errno.ECONNREFUSED)" % port
    )
    assert repl.exec(code) == b"True\r\n"


def test_firmware_that_never_returns_is_reached_with_ctrl_c(tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text(
        "import time\nloops = 0\nprint('running')\nwhile True:\n    loops += 1\n"
        "    time.sleep_ms(1)\n"
    )
    with start(files={"/main.py": main}) as vb:
        client = RawRepl(vb.url)
        client.enter()
        # Whether main.py had started when Ctrl-C came is a race; either way the REPL answers.
        assert client.exec("print('loops' in globals())") in (b"True\r\n", b"False\r\n")
        client.serial.write(b"\x02")  # friendly REPL, then soft reset: main.py runs again
        client.read_until(b">>> ")
        client.serial.write(b"\x04")
        client.read_until(b"MPY: soft reboot\r\nrunning\r\n")
        client.enter()  # interrupts the running main.py
        assert client.exec("print(loops > 0)") == b"True\r\n"
        client.close()


def test_ctrl_c_from_a_tool_connecting_at_power_on_does_not_kill_the_board() -> None:
    """A tool that connects the moment the port appears and sends Ctrl-C (as ``bankiot
    flash`` does) reaches the REPL; the board's own start-up is not interruptible."""
    with start(files={}, asyncio_run=True) as vb:
        port = serial.serial_for_url(vb.url, timeout=0.01)
        for _ in range(150):  # Ctrl-C every 10 ms for about 1.5 s: over the whole start-up
            port.write(b"\x03")
            port.read(256)
        port.close()
        client = RawRepl(vb.url)
        client.enter()
        assert client.exec("print(6 * 7)") == b"42\r\n"
        client.close()
        assert "running" in vb.condition(), vb.condition()
