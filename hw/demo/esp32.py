"""The demo's virtual ESP32: a blank board (real MicroPython in WebAssembly,
``hw.virtual_board``) flashed with ``bankiot flash`` over ``socket://`` and a claim, then
kept running: the firmware enrolls, joins the branch's WiFi and speaks MQTT over TLS to the
cloud's broker through ``hw.tls_bridge`` (the board's ``ssl`` is a stand-in that encrypts
nothing). The host plays its radio: ``hear`` hands it advertisements.

On a resumed demo the board starts again from its saved flash (``state_dir/flash``), already
enrolled, and is not flashed again.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hw.cloud_process import CLI
from hw.demo.web import DemoError
from hw.tls_bridge import TlsBridge
from hw.virtual_board import VirtualBoard

UNIQUE_ID = bytes.fromhex("240ac4de0001")
WIFI = ("branch-iot", "branch-secret")  # the network hw/fakes/network.py knows


class Esp32:
    """A virtual ESP32 with its flash in ``state_dir``, its broker connections bridged to
    the cloud's broker at ``127.0.0.1:mqtt_port``."""

    def __init__(self, state_dir: Path, mqtt_port: int) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.bridge = TlsBridge(state_dir / "flash", ("127.0.0.1", mqtt_port))
        routes = {"127.0.0.1:%d" % mqtt_port: "127.0.0.1:%d" % self.bridge.port}
        # Blank (MicroPython and nothing else) the first time; after that its saved flash.
        self.flashed = (state_dir / "flash" / "identity" / "device.crt").exists()
        self.board = VirtualBoard(
            files={}, state_dir=state_dir, unique_id=UNIQUE_ID, routes=routes, asyncio_run=True
        )

    def start(self) -> Esp32:
        """Power the board on (raises ``MicroPythonUnavailable`` without Node.js)."""
        self.board.start()
        return self

    def flash(self, claim: str, cloud_url: str, token: str, log: Path) -> str:
        """``bankiot flash`` with ``claim`` (``token``: an operator's API token, to see the
        board online): the one line it prints."""
        password = self.state_dir / "wifi.txt"
        password.write_text(WIFI[1])
        command = [*CLI, "flash", "--port", self.board.url, "--claim", claim, "--cloud", cloud_url]
        command += [
            "--wifi-ssid",
            WIFI[0],
            "--wifi-password-file",
            str(password),
            "--timeout",
            "90",
        ]
        with log.open("ab") as err:
            env = {**os.environ, "BANKIOT_TOKEN": token}
            result = subprocess.run(
                command, stdout=subprocess.PIPE, stderr=err, env=env, check=False
            )
        if result.returncode != 0:
            raise DemoError("bankiot flash failed (see %s); bridge: %s" % (log, self.bridge.errors))
        self.flashed = True
        return result.stdout.decode().strip()

    def hear(self, address: bytes, payload: bytes, rssi: int) -> None:
        """The board's radio hears one advertisement."""
        self.board.inject_advertisement(address, payload, rssi=rssi)

    def stop(self) -> None:
        """Power off (the flash is saved) and close the bridge."""
        self.board.stop()
        self.bridge.close()
