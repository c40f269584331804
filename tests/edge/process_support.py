"""What the process tests share: ``bankiot cloud up`` and ``bankiot gateway run`` as real
processes, a gateway enrolled against that cloud, and waiting without timed assertions.

``Cloud`` runs ``up`` on ports chosen once, so it can be stopped (SIGINT, as Ctrl-C) and
started again on the same data folder; ``GatewayProcess`` runs the gateway, one log file
per life. ``enroll`` makes a claim in the cloud's database (as the API makes one) and runs
``bankiot gateway enroll`` with it. ``wait_until`` fails only after ``LIMIT_S``, a limit
far above what any wait needs, naming what it waited for and the logs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cloud.db import Database
from cloud.embedded_broker import find_mosquitto
from cloud.fleet.models import Branch
from cloud.identity import claims
from hw.cloud_process import CLI, CloudUp, tail
from provisioning.cli import main
from tests.cloud.test_up import listening
from tests.support.environment import unavailable

LIMIT_S = 60.0  # far above what any wait needs: only a hang reaches it


def wait_until(condition: Callable[[], bool], what: str, why: Callable[[], str] = str) -> None:
    """Poll ``condition`` until it holds; fail after ``LIMIT_S`` saying ``what`` (and
    ``why()``, the logs)."""
    deadline = time.monotonic() + LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, "still waiting for %s\n%s" % (what, why())
        time.sleep(0.02)


class Cloud(CloudUp):
    """``bankiot cloud up`` on ports chosen once (``hw.cloud_process.CloudUp``, which
    ``make demo`` uses too), so it can be stopped and started again; and the broker under
    it, to restart."""

    def __init__(self, data_dir: Path, logs: Path) -> None:
        super().__init__(data_dir, logs)
        self.broker: subprocess.Popen[bytes] | None = None  # a broker started by the test

    def database(self) -> Database:
        """The cloud's database (SQLite in its data folder), for the test to read."""
        return Database(self.database_url)

    def stop(self, timeout: float = LIMIT_S) -> int:
        """SIGINT, as Ctrl-C: everything stops and ``up`` exits 0 (returned)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(timeout=timeout)
        if self.broker is not None:  # ours: `up` only stops the one it started
            self.broker.terminate()
            self.broker.wait(timeout=LIMIT_S)
            self.broker = None
        assert status == 0, "cloud up exited %s:\n%s" % (status, tail(self.log))
        return status

    def close(self) -> None:
        """After the test: stop whatever still runs (``up`` stops its own broker)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=LIMIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.broker is not None and self.broker.poll() is None:
            self.broker.kill()
            self.broker.wait()

    def _embedded_broker_pid(self) -> int:
        assert self.process is not None
        children: list[int] = []
        for task in Path("/proc/%d/task" % self.process.pid).iterdir():
            children += [int(pid) for pid in (task / "children").read_text().split()]
        for pid in children:
            cmdline = Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")
            if cmdline and cmdline[0].endswith(b"mosquitto"):
                return pid
        raise AssertionError("cloud up runs no mosquitto: %s" % children)

    def restart_broker(self, kill: bool, down_s: float) -> None:
        """Stop the broker under the running cloud (SIGKILL or SIGTERM), and after
        ``down_s`` start it again with the same configuration."""
        sig = signal.SIGKILL if kill else signal.SIGTERM
        if self.broker is not None:
            self.broker.send_signal(sig)
            self.broker.wait(timeout=LIMIT_S)
        else:
            os.kill(self._embedded_broker_pid(), sig)  # `up` reaps it when it stops
        wait_until(lambda: not listening(self.mqtt), "the broker to go")
        time.sleep(down_s)
        mosquitto = find_mosquitto()
        assert mosquitto is not None
        with (self.logs / "broker.log").open("ab") as out:
            self.broker = subprocess.Popen(
                [mosquitto, "-c", str(self.data_dir / "broker" / "mosquitto.conf")],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: listening(self.mqtt), "the broker to listen again")


@contextmanager
def cloud_up(folder: Path) -> Iterator[Cloud]:
    """A started ``Cloud`` with its data and logs in ``folder``, closed on the way out; the
    test is ``unavailable`` without Mosquitto."""
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed")
    running = Cloud(folder / "cloud", folder)
    try:
        running.start()
        yield running
    finally:
        running.close()


class GatewayProcess:
    """``bankiot gateway run --config gateway.toml``; one log file per life."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        self.lives = 0
        self.log = logs / "gateway-0.log"

    def start(self) -> None:
        self.lives += 1
        self.log = self.logs / ("gateway-%d.log" % self.lives)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*CLI, "gateway", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def holds(self, tty: str) -> bool:
        """Whether the process has the serial line open (its serial source connected)."""
        assert self.process is not None
        assert self.process.poll() is None, "the gateway exited:\n" + tail(self.log)
        folder = Path("/proc/%d/fd" % self.process.pid)
        try:
            return any(os.readlink(fd) == tty for fd in folder.iterdir())
        except OSError:  # an fd closed while we looked
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=LIMIT_S)


def make_claim(
    database: Database,
    code: str = "B-PROC",
    name: str = "Branch under faults",
    kind: str = "gateway",
) -> str:
    """A claim for a device of ``kind`` in a new branch, as an operator makes one through
    the API."""
    now = dt.datetime.now(dt.UTC)
    with database.sessions() as session:
        branch = Branch(code=code, name=name)
        session.add(branch)
        session.flush()
        _claim, token = claims.create_claim(session, "test", branch.id, kind, now)
        session.commit()
        return token


def enroll(config: Path, token: str, uid: str) -> None:
    """``bankiot gateway enroll`` with the claim ``token``, as an installer runs it."""
    code = main(["gateway", "enroll", "--config", str(config), "--claim", token, "--uid", uid])
    assert code == 0, "gateway enroll exited %d" % code


def write_gateway_toml(
    folder: Path, cloud: Cloud, serial: Path | None = None, kiosk_port: int | None = None
) -> Path:
    """``folder/gateway.toml`` for a gateway of ``cloud`` (data in ``folder/gateway``), no
    BLE adapter; an ESP32 radio on ``serial`` and a ``[kiosk]`` on ``kiosk_port`` if given."""
    text = "data_dir = %s\n\n[cloud]\nurl = %s\n\n[sources]\nble = []\n" % (
        json.dumps("gateway"),
        json.dumps(cloud.url),
    )
    if serial is not None:
        text += "serial = [{ port = %s, baud = 115200 }]\n" % json.dumps(str(serial))
    if kiosk_port is not None:
        text += "\n[kiosk]\nlisten = %s\n" % json.dumps("127.0.0.1:%d" % kiosk_port)
    path = folder / "gateway.toml"
    path.write_text(text)
    return path


def queued_envelopes(queue: Path) -> list[bytes]:
    """The sealed batches in a gateway's SQLite queue (none if it has no queue yet)."""
    if not queue.exists():
        return []
    connection = sqlite3.connect(queue, timeout=10)
    try:
        return [row[0] for row in connection.execute("SELECT data FROM batches")]
    finally:
        connection.close()
