"""The operations and technician guides, walked: their marked blocks run as written.

The fenced blocks marked ``<!-- walk: operations N -->`` in ``docs/operations.md`` and
``<!-- walk: technician N -->`` in ``docs/technicians.md`` (``guides.walk_blocks``) are run
in order, each command as its own process in one working folder, as a reader at a terminal
would: ``bankiot cloud up`` on a fresh data folder (in the background, as in a second
terminal), the first operations account (its password typed at the prompt), an API token,
the first branch and a claim; then a signed bundle, a claim, ``bankiot flash`` onto a blank
virtual ESP32 at ``socket://`` and the branch's inventory. ``export`` lines set the
environment of the commands after them; every other line runs in ``bash``.

Placeholders (the guides' ``/srv/bankiot``, ``bkt_...``, ``/dev/ttyUSB0``...) are replaced
by ``PLACEHOLDERS`` with what this machine has or an earlier command printed; anything else
is run exactly as the guide shows it. The machine's own settings: ``BANKIOT_HTTP`` and
``BANKIOT_COAP`` on free ports (``up``'s documented environment); MQTT on its default, or
the free port ``up`` takes and prints when that is taken. Where the guides show an answer
(``its id: 1``, the flash's last line), the walk checks the real one against it.

The board is ``hw.virtual_board`` (real MicroPython); its broker connections go through
``hw.tls_bridge``, as in ``tests/provisioning/test_flash_online.py``. Each wait has a
deadline far above what it needs (``LIMIT_S``); nothing sleeps a fixed time.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.embedded_broker import find_mosquitto
from cloud.fleet.cli import COLUMNS
from hw.cloud_process import READY_LINE, tail
from hw.tls_bridge import TlsBridge
from tests.docs import guides
from tests.provisioning.flash_support import UID, WIFI_KEY, WIFI_SSID, board
from tests.support.environment import free_port, unavailable

pytestmark = [pytest.mark.mosquitto, pytest.mark.micropython, pytest.mark.timeout(300)]

LIMIT_S = 120.0  # per command and per wait: far above what any needs, only a hang reaches it
PASSWORD = "correct horse battery staple"

# What the guides write -> what stands in for it (``{name}``: a value the walk has by then).
PLACEHOLDERS: dict[str, str] = {
    "/srv/bankiot": "{data_dir}",
    "http://127.0.0.1:5000": "{web}",  # "the web address `serve` or `up` printed"
    "https://iot.bank.example": "{web}",
    "bkt_...": "{api_token}",
    "BANKIOT_TOKEN=...": "BANKIOT_TOKEN={api_token}",  # "your API token"
    "bkc_...": "{claim}",
    "B": "{branch}",  # a branch id
    "/dev/ttyUSB0": "{board}",
    "the-wifi-password": "{wifi_password}",
}
# What a reader copies from a command's output for later commands: value name -> pattern.
CAPTURES: dict[str, re.Pattern[str]] = {
    "api_token": re.compile(r"^token \(shown once\): (bkt_[A-Za-z0-9_-]+)$", re.MULTILINE),
    "claim": re.compile(r"^token \(shown once\): (bkc_[A-Za-z0-9_-]+)$", re.MULTILINE),
    "branch": re.compile(r"^branch \S+ \(id (\d+)\)", re.MULTILINE),
}


class Walk:
    """A reader's terminal: a working folder, an environment, and what earlier commands
    printed (``values``, for the placeholders)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True)
        bin_dir = Path(sys.executable).parent
        assert (bin_dir / "bankiot").exists(), "no bankiot beside %s" % sys.executable
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BANKIOT_")}
        self.env.update(
            PATH="%s%s%s" % (bin_dir, os.pathsep, os.environ.get("PATH", "")),
            PYTHONUNBUFFERED="1",
            BANKIOT_HTTP="127.0.0.1:%d" % free_port(),
            BANKIOT_COAP="127.0.0.1:%d" % free_port(kind=socket.SOCK_DGRAM),
        )
        self.values: dict[str, str] = {"wifi_password": WIFI_KEY}
        self.transcript = folder / "transcript.log"
        self.up: subprocess.Popen[bytes] | None = None
        self.up_log = folder / "cloud-up.log"

    def log(self, text: str) -> None:
        with self.transcript.open("a", encoding="utf-8") as out:
            out.write(text.rstrip("\n") + "\n")

    def why(self) -> str:
        """The transcript's and ``up``'s last lines, for a failure message."""
        return "transcript:\n%s\ncloud up:\n%s" % (tail(self.transcript, 30), tail(self.up_log))

    def substitute(self, command: str) -> str:
        """``command`` with each placeholder (a whole word, or a quoted one, or after
        ``=``) replaced by its value."""
        for text, template in PLACEHOLDERS.items():
            pattern = r"(?<![^\s='\"])%s(?![^\s'\"])" % re.escape(text)
            if re.search(pattern, command):
                try:
                    value = template.format(**self.values)
                except KeyError as exc:
                    raise AssertionError("%r: nothing for %s yet" % (command, exc)) from None
                assert shlex.quote(value) == value, value  # safe as one shell word
                command = re.sub(pattern, lambda _match, v=value: v, command)
        assert "..." not in command, "a placeholder the walk does not know: %s" % command
        return command

    def block(self, block: guides.WalkBlock) -> list[str]:
        """Run every command of ``block`` in order; what each printed on stdout."""
        self.log("## %s (%s %d)" % (block.source, block.role, block.step))
        return [self.command(command) for command in block.commands]

    def command(self, written: str) -> str:
        command = self.substitute(written)
        self.log("$ %s" % command)
        words = shlex.split(command)
        if words[0] == "export":
            for word in words[1:]:
                name, _, value = word.partition("=")
                self.env[name] = value
            return ""
        if words[:3] == ["bankiot", "cloud", "up"]:
            return self.start_up(command)
        typed = b""
        if words[:4] == ["bankiot", "cloud", "operator", "create"]:
            typed = ("%s\n%s\n" % (PASSWORD, PASSWORD)).encode()  # the prompt, twice
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            cwd=self.folder,
            env=self.env,
            input=typed,
            capture_output=True,
            timeout=LIMIT_S,
            start_new_session=True,  # no terminal: the password prompt reads stdin
            check=False,
        )
        out, err = result.stdout.decode(), result.stderr.decode()
        self.log(out + err)
        for name, pattern in CAPTURES.items():
            if found := pattern.search(out):
                self.values[name] = found.group(1)
        assert result.returncode == 0, "%s exited %d:\n%s%s\n%s" % (
            written,
            result.returncode,
            out,
            err,
            self.why(),
        )
        return out

    def start_up(self, command: str) -> str:
        """``bankiot cloud up`` in the background; once it is ready, the block it printed
        (its addresses go into ``values``)."""
        with self.up_log.open("wb") as out:
            self.up = subprocess.Popen(
                ["bash", "-c", "exec " + command],
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + LIMIT_S
        while READY_LINE not in (printed := self.up_log.read_text(errors="replace")):
            assert self.up.poll() is None, "cloud up exited:\n" + self.why()
            assert time.monotonic() < deadline, "cloud up is not ready:\n" + self.why()
            time.sleep(0.05)
        web = re.search(r"^\s+web\s+(http://\S+)", printed, re.MULTILINE)
        mqtt = re.search(r"^\s+mqtt\s+mqtts://127\.0\.0\.1:(\d+)$", printed, re.MULTILINE)
        data = re.search(r"^\s+data\s+(.+)$", printed, re.MULTILINE)
        assert web and mqtt and data, printed
        self.values["web"], self.values["mqtt_port"] = web.group(1), mqtt.group(1)
        self.values["up_data_dir"] = data.group(1)
        self.log(printed)
        return printed

    def stop_up(self) -> int:
        """Ctrl-C (SIGINT) to ``up``: its exit status."""
        assert self.up is not None
        self.up.send_signal(signal.SIGINT)
        return self.up.wait(timeout=LIMIT_S)

    def close(self) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.kill()
            self.up.wait()


def flash_example() -> re.Pattern[str]:
    """The last line ``bankiot flash`` prints, as technicians.md shows it ("It ends with one
    line: ..."), as a pattern: its device id and time stand for any."""
    text = " ".join((guides.ROOT / "docs" / "technicians.md").read_text().split())
    example = re.search(r"It ends with one line: `([^`]+)`", text)
    assert example, "technicians.md no longer shows the flash's last line"
    pattern = re.escape(example.group(1))
    pattern = re.sub(r"\\\(id\\ \d+\\\)", r"\\(id \\d+\\)", pattern)
    return re.compile(pattern.replace(re.escape("..."), r"(?P<seen>\S+)") + "$")


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed")
    walking = Walk(tmp_path / "terminal")
    try:
        yield walking
    finally:
        walking.close()


def test_operations_then_technician_guides_as_written(walk: Walk, tmp_path: Path) -> None:
    operations = guides.walk_blocks(guides.ROOT / "docs" / "operations.md", "operations")
    technician = guides.walk_blocks(guides.ROOT / "docs" / "technicians.md", "technician")
    assert [b.step for b in operations] == [1, 2] and [b.step for b in technician] == [1, 2, 3, 4]
    started = dt.datetime.now(dt.UTC)
    walk.values["data_dir"] = str(tmp_path / "srv-bankiot")

    # operations 1: the whole cloud on one machine, on a fresh data folder.
    walk.block(operations[0])
    assert walk.values["up_data_dir"] == walk.values["data_dir"]

    # operations 2: first account, its API token, the first branch, a claim.
    made, token, _export, branch, claim = walk.block(operations[1])
    assert made == "operator alice created: operations (every branch)\n"
    assert token.startswith("token 1 (alice laptop) of alice, operations, expires ")
    assert walk.values["api_token"] in token
    assert branch == "branch B-12 (id 1): Harbour Street\n"  # the guide: "its id: 1"
    assert claim.startswith("claim 1 for a gateway in branch 1, expires ")

    # technician 1: a signed bundle.
    key, built = walk.block(technician[0])
    assert re.fullmatch(r"release key [0-9a-f]+: private release.pem, public release.pub\n", key)
    assert built.startswith("built esp32 1.4.0 in bundle-esp32: ")

    # technician 2: the claim for the board.
    (claim,) = walk.block(technician[1])
    assert claim.startswith("claim 2 for a gateway in branch 1, expires ")
    assert walk.values["claim"] in claim

    # technician 3: flash a blank ESP32 (its broker connections through the TLS bridge).
    mqtt = int(walk.values["mqtt_port"])
    state = tmp_path / "board"
    bridge = TlsBridge(state / "flash", ("127.0.0.1", mqtt))
    routes = {"127.0.0.1:%d" % mqtt: "127.0.0.1:%d" % bridge.port}
    try:
        with board(state, routes=routes, asyncio_run=True) as esp32:
            walk.values["board"] = esp32.url
            assert "--wifi-ssid %s" % WIFI_SSID in technician[2].commands[-1]
            try:
                *_, flashed = walk.block(technician[2])
            except AssertionError as failed:
                raise AssertionError("%s\n%s" % (failed, esp32.condition())) from None

            # technician 4: the board in the branch's inventory.
            (inventory,) = walk.block(technician[3])
    finally:
        bridge.close()
    assert bridge.sessions >= 1, bridge.errors
    report = flash_example().match(flashed.strip())
    assert report, "%r is not what technicians.md shows" % flashed
    assert dt.datetime.fromisoformat(report["seen"]) >= started - dt.timedelta(seconds=1)
    header, *rows = inventory.splitlines()
    assert re.split(r"\s{2,}", header) == list(COLUMNS)
    (row,) = rows
    assert row.split()[1:6] == [UID, "gateway", "B-12", "active", "1.4.0"]
    assert "never" not in row

    # Ctrl-C: everything stops and `up` exits 0 (the guide's promise).
    assert walk.stop_up() == 0, walk.why()
