"""What the firmware tests share: a provisioned board's files and running scenarios on it.

``run_board`` runs a function of ``board_scenario`` (or any code) in real MicroPython with
the firmware tree mounted at ``/`` exactly as on a board, the hardware stand-ins in
``/lib``, and the files given (identity, configuration, the flash of an earlier boot).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bankiot_core.keyring import KeyRing
from hw.micropython_runner import MicroPythonRun, MicroPythonRunner

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
SCENARIO = Path(__file__).resolve().parent / "board_scenario.py"
FAKES = ("machine", "bluetooth", "network", "socket", "cryptolib", "ssl")
UID = "gw-board-1"
SECRET = bytes(range(32, 64))
SENSOR = "a4c138000001"
STRANGER = "a4c138000009"
SETTINGS: dict[str, Any] = {
    "paired": ["A4:C1:38:00:00:01"],
    "presence": False,
    "batch_max_delay_ms": 1000,
    "health_interval_ms": 1000,
}


def ring(uid: str = UID, secret: bytes = SECRET) -> KeyRing:
    """The cloud's copy of the board's sealing key."""
    return KeyRing(uid, 1, secret)


def provisioned(
    uid: str = UID,
    secret: bytes = SECRET,
    mqtt: str | None = "mqtts://broker.test:8883",
    settings: Mapping[str, Any] | None = None,
    coap: str | None = None,
) -> dict[str, bytes]:
    """The files provisioning writes onto a board (``app.config``); TLS files are dummies:
    the ``ssl`` stand-in records what is asked of it and encrypts nothing."""
    endpoints = {"mqtt": mqtt} if mqtt else {}
    if coap:
        endpoints["coap"] = coap
    enrollment = {"uid": uid, "endpoints": endpoints, "config": dict(settings or SETTINGS)}
    envelope = {"version": 1, "secret": base64.b64encode(secret).decode()}
    return {
        "/identity/enrollment.json": json.dumps(enrollment).encode(),
        "/identity/envelope.json": json.dumps(envelope).encode(),
        "/identity/device.crt": b"certificate",
        "/identity/device.key": b"key",
        "/identity/ca.pem": b"fleet CA",
        "/config/wifi.json": json.dumps({"ssid": "branch-iot", "key": "branch-secret"}).encode(),
    }


def temperature(step: int, centi_c: int, packet: int, address: str = SENSOR) -> list[Any]:
    """A BTHome v2 advertisement (packet id, temperature) heard at loop step ``step``."""
    data = "020106" + "0916d2fc4000%02x02" % packet + centi_c.to_bytes(2, "little").hex()
    return [step, address, -60, data]


def run_board(
    micropython: MicroPythonRunner,
    code: str,
    files: Mapping[str, bytes] | None = None,
    export: tuple[str, ...] = (),
) -> MicroPythonRun:
    """``code`` on a board with the firmware, the stand-ins and ``files``; checked."""
    all_files = {"/lib/board_scenario.py": SCENARIO.read_bytes(), **(files or {})}
    return micropython.run(
        code, fakes=FAKES, files=all_files, mounts={"/": FIRMWARE}, export=export
    ).check()


def scenario(
    micropython: MicroPythonRunner,
    function: str,
    *args: Any,
    files: Mapping[str, bytes] | None = None,
    export: tuple[str, ...] = (),
) -> tuple[Any, dict[str, bytes]]:
    """``board_scenario.function(*args)`` on a board; its JSON result and exported files."""
    code = (
        "import json, board_scenario\nprint(json.dumps(board_scenario.%s(*json.loads(%r))))\n"
        % (
            function,
            json.dumps(list(args)),
        )
    )
    run = run_board(micropython, code, files, export)
    return json.loads(run.stdout.splitlines()[-1]), run.files
