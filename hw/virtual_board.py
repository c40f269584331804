"""A virtual ESP32: real MicroPython with the firmware on its flash, its REPL on a TCP port.

The board is the MicroPython WebAssembly VM run by Node (``hw/virtual_board.mjs``) with the
firmware tree copied onto its filesystem as ``bankiot firmware`` would put it on a board
(``firmware/lib`` at ``/lib``, the other device files at ``/``), the stand-ins from
``hw/fakes`` (``machine``, ``network``, ``bluetooth``, ``socket``...) importable as if built
in, and its REPL served on a TCP port. Tools talk to it as to a board on USB serial, through
pyserial's ``socket://127.0.0.1:PORT`` URL: the friendly REPL, the raw REPL, raw-paste mode
with its flow-control window, Ctrl-C interrupting running code, and Ctrl-D soft reset
(``MPY: soft reboot``, a fresh VM on the same flash, ``boot.py`` then ``main.py`` in the
friendly REPL). ``machine.reset()`` reboots it too. mpremote works unchanged against it.

The flash lives as long as the board: files written through the REPL survive soft resets.
With ``state_dir`` it is also kept on the host (``<state_dir>/flash``, each file written to
a temporary name then renamed), so a board started again on the same folder boots with the
flash it had, not the factory image. It is saved whenever the board's code returns to the
REPL or yields to the event loop, and when the board stops.

The board's network is the host's: its ``socket`` (``hw/fakes/socket.py``) makes a TCP
connection to an address nobody in the VM listens on on the host, and sends a datagram to
an address nobody in the VM has bound from a UDP socket on the host (MQTT to a real broker,
CoAP to a real server), with the board's blocking, timeouts and errno.

The host plays the radio: :meth:`VirtualBoard.inject_advertisement` hands an advertisement
to the fake ``bluetooth`` module, which calls the IRQ handler the board's code registered
(event 5, ``_IRQ_SCAN_RESULT``) if it is scanning. Delivery happens at the board's next
``time`` call (``sleep``, ``ticks_ms``: every loop of the firmware makes them) or at once
when it sits at the REPL, much as a soft IRQ waits for the VM.

Command line: ``python -m hw.virtual_board --board esp32 --port 0 [--state-dir D]`` prints
the port and serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from bankiot_core.manifest import BOARDS
from hw.micropython_runner import FAKES_DIR, PROJECT_ROOT, find_node

SCRIPT = Path(__file__).resolve().parent / "virtual_board.mjs"
FIRMWARE_DIR = PROJECT_ROOT / "firmware"
MICROPYTHON_BOARDS = tuple(b for b in BOARDS if b != "rpi")
_START_TIMEOUT = 90.0  # Node and the WebAssembly VM start slowly on a loaded machine
_STOP_TIMEOUT = 30.0  # time to save the flash before the board is killed


class VirtualBoardError(RuntimeError):
    """The virtual board could not start, or was asked something it cannot do."""


def firmware_files(firmware_dir: Path = FIRMWARE_DIR) -> dict[str, Path]:
    """The factory image: device path -> host file, as ``bankiot firmware`` deploys them."""
    from provisioning.firmware_bundle import device_files

    return {f.device: f.host for f in device_files(firmware_dir)}


def fake_modules() -> dict[str, Path]:
    """Every stand-in in ``hw/fakes``, by module name."""
    return {p.stem: p for p in sorted(FAKES_DIR.glob("*.py")) if p.stem != "__init__"}


class VirtualBoard:
    """One virtual board, started by :meth:`start` (or ``with``) and stopped by :meth:`stop`.

    ``port`` 0 picks a free port; :attr:`port` and :attr:`url` say where it listens once
    started. ``files`` replaces the factory image (device path -> host file), which is
    otherwise the firmware tree (``{}``: a blank board, MicroPython and nothing else).
    ``unique_id`` sets ``machine.unique_id()``. ``routes`` (``"host:port"`` ->
    ``"host:port"``) sends the board's connections (and datagrams) to the first to the
    second instead, for a test's stand-in in front of a real service (a TLS bridge: the
    fake ``ssl`` encrypts nothing). ``asyncio_run``: the port's asyncio has no ``run()``
    (its loop is the JS event loop); with this, ``asyncio.run(coro)`` starts ``coro`` as a
    task there and returns, so the application runs in the background while the REPL
    answers (unlike a board, Ctrl-C then does not stop it).
    """

    def __init__(
        self,
        board: str = "esp32",
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        state_dir: Path | str | None = None,
        files: dict[str, Path] | None = None,
        unique_id: bytes | None = None,
        heapsize: int = 1024 * 1024,
        routes: dict[str, str] | None = None,
        asyncio_run: bool = False,
    ) -> None:
        if board not in MICROPYTHON_BOARDS:
            raise ValueError(
                "unknown board %r; virtual boards: %s" % (board, ", ".join(MICROPYTHON_BOARDS))
            )
        if not 0 <= port <= 65535:
            raise ValueError("port must be 0..65535, got %d" % port)
        self.board = board
        self.host = host
        self.requested_port = port
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.files = dict(files) if files is not None else firmware_files()
        self.unique_id = unique_id
        self.heapsize = heapsize
        self.routes = dict(routes or {})
        self.asyncio_run = asyncio_run
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._events: queue.Queue[dict] = queue.Queue()
        self._stderr = None
        self._lock = threading.Lock()

    # --- life ----------------------------------------------------------------------------
    def start(self) -> VirtualBoard:
        """Power the board on: boot it and open its serial port. Returns self."""
        if self._proc is not None:
            raise VirtualBoardError("virtual board already started")
        node = find_node()
        config = {
            "host": self.host,
            "port": self.requested_port,
            "board": self.board,
            "files": {device: str(path) for device, path in self.files.items()},
            "fakes": {name: str(path) for name, path in fake_modules().items()},
            "stateDir": str(self.state_dir) if self.state_dir is not None else None,
            "uniqueId": self.unique_id.hex() if self.unique_id is not None else None,
            "heapsize": self.heapsize,
            "routes": self.routes,
            "asyncioRun": self.asyncio_run,
        }
        # Kept for error messages; a file, so a chatty board never blocks on a full pipe.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._proc = subprocess.Popen(
            [node, str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=PROJECT_ROOT,
        )
        threading.Thread(target=self._read_events, daemon=True).start()
        self._send(config)
        try:
            event = self._wait_for("listening")
        except VirtualBoardError:
            self.stop()
            raise
        self.port = int(event["port"])
        return self

    def stop(self) -> None:
        """Power the board off, saving its flash to ``state_dir`` first if it has one."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            self._send_to(proc, {"cmd": "stop"})
            proc.wait(timeout=_STOP_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):  # it had already exited
                    proc.stdin.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            self.port = None

    def __enter__(self) -> VirtualBoard:
        return self if self._proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The pyserial URL of the board's serial port (``socket://host:port``)."""
        if self.port is None:
            raise VirtualBoardError("virtual board is not running")
        return "socket://%s:%d" % (self.host, self.port)

    # --- the radio -------------------------------------------------------------------------
    def inject_advertisement(
        self,
        addr: bytes,
        adv_data: bytes,
        *,
        rssi: int = -60,
        addr_type: int = 0,
        adv_type: int = 0,
    ) -> None:
        """The board's radio hears an advertisement (delivered to its BLE IRQ handler)."""
        if len(addr) != 6:
            raise ValueError("a BLE address is 6 bytes, got %d" % len(addr))
        if len(adv_data) > 255:
            raise ValueError("advertising data is at most 255 bytes, got %d" % len(adv_data))
        if not -127 <= rssi <= 20:
            raise ValueError("rssi must be -127..20 dBm, got %d" % rssi)
        if addr_type not in (0, 1) or not 0 <= adv_type <= 4:
            raise ValueError("addr_type is 0 or 1 and adv_type 0..4")
        record = "%d,%s,%d,%d,%s" % (addr_type, addr.hex(), adv_type, rssi, adv_data.hex())
        self._send({"cmd": "adv", "adv": record})

    def play(self, heard: Iterable[tuple[int, bytes, int, bytes]]) -> int:
        """Inject what a radio heard, as ``hw.branch_devices.radio_stream`` lists it
        (``(t_ms, address, rssi, payload)``), without waiting between them; returns how many."""
        n = 0
        for _t_ms, address, rssi, payload in heard:
            self.inject_advertisement(address, payload, rssi=rssi)
            n += 1
        return n

    # --- plumbing --------------------------------------------------------------------------
    def _send(self, message: dict) -> None:
        if self._proc is None:
            raise VirtualBoardError("virtual board is not running")
        self._send_to(self._proc, message)

    def _send_to(self, proc: subprocess.Popen[bytes], message: dict) -> None:
        assert proc.stdin is not None
        with self._lock:
            proc.stdin.write((json.dumps(message) + "\n").encode())
            proc.stdin.flush()

    def _read_events(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                continue
        self._events.put({"event": "exited"})

    def _wait_for(self, name: str) -> dict:
        while True:
            try:
                event = self._events.get(timeout=_START_TIMEOUT)
            except queue.Empty:
                raise VirtualBoardError(
                    "virtual board did not start within %.0f s" % _START_TIMEOUT
                ) from None
            if event.get("event") == name:
                return event
            if event.get("event") == "exited":
                raise VirtualBoardError("virtual board exited: %s" % self._stderr_tail())

    def condition(self) -> str:
        """One line for a failure report: whether the board's process runs, and the end of
        what it wrote on stderr."""
        proc = self._proc
        if proc is None:
            return "virtual board not started"
        state = "running" if proc.poll() is None else "exited with %s" % proc.returncode
        tail = self._stderr_tail()
        return "virtual board %s%s" % (state, "; stderr: " + tail if tail else "")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:]


def main(argv: list[str] | None = None) -> int:
    """``python -m hw.virtual_board``: serve a virtual board until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m hw.virtual_board",
        description="A virtual board running the firmware in real MicroPython, its REPL on TCP.",
    )
    parser.add_argument("--board", default="esp32", choices=MICROPYTHON_BOARDS)
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--state-dir", type=Path, help="keep the board's flash here across restarts"
    )
    args = parser.parse_args(argv)
    board = VirtualBoard(args.board, port=args.port, host=args.host, state_dir=args.state_dir)
    try:
        board.start()
    except (ValueError, VirtualBoardError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    print(board.port, flush=True)
    print(
        "virtual %s on %s (mpremote connect %s); Ctrl-C to stop"
        % (args.board, board.url, board.url),
        file=sys.stderr,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if board._proc is None or board._proc.poll() is not None:
                print("error: virtual board exited: %s" % board._stderr_tail(), file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
