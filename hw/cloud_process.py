"""``bankiot cloud up`` as a child process on loopback ports chosen once, so it can be
stopped (SIGINT, as Ctrl-C) and started again on the same data folder. Used by the
process tests (``tests/edge/process_support.py``) and by ``make demo``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hw.ports import free_port

CLI = [sys.executable, "-c", "from provisioning.cli import entry_point; entry_point()"]
READY_LINE = "Ctrl-C stops everything."
START_LIMIT_S = 60.0  # far above what a start needs: only a hang reaches it


class CloudUpFailed(RuntimeError):
    """``cloud up`` exited or did not get ready; the message ends with its log's tail."""


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` of a log file ("" if there is none yet)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class CloudUp:
    """``bankiot cloud up --data-dir DATA_DIR`` on free loopback ports (``http``, ``mqtt``,
    ``coap``; ``hw.ports`` says why not the kernel's port 0), its output in
    ``logs/cloud-N.log`` (one file per start)."""

    def __init__(self, data_dir: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.logs = logs
        self.env = dict(env or {})
        self.http = free_port()
        self.mqtt = free_port()
        self.coap = free_port(kind=socket.SOCK_DGRAM)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = logs / "cloud-0.log"

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.http

    @property
    def database_url(self) -> str:
        """The cloud's database: SQLite in its data folder (the embedded default)."""
        return "sqlite:///%s" % (self.data_dir / "bankiot.sqlite3")

    def start(self) -> None:
        """Start ``up`` and wait until it says it is ready; ``CloudUpFailed`` otherwise."""
        self.starts += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        self.log = self.logs / ("cloud-%d.log" % self.starts)
        address = "127.0.0.1:%d"
        command = [
            *CLI,
            "cloud",
            "up",
            "--data-dir",
            str(self.data_dir),
            "--http",
            address % self.http,
            "--coap",
            address % self.coap,
            "--mqtt",
            address % self.mqtt,
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,  # a terminal's Ctrl-C is for our caller to pass on
            )
        deadline = time.monotonic() + START_LIMIT_S
        while READY_LINE not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None:
                raise CloudUpFailed("cloud up exited:\n" + tail(self.log))
            if time.monotonic() > deadline:
                raise CloudUpFailed("cloud up did not get ready:\n" + tail(self.log))
            time.sleep(0.02)

    def stop(self, timeout: float = START_LIMIT_S) -> int:
        """SIGINT, as Ctrl-C: everything stops; ``up``'s exit status (killed after
        ``timeout`` seconds, then its status is negative)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()
