"""The board application's steady-state heap: 32 tracked devices, a 64-reading batch open.

Issue 8's memory goal: the whole application, measured in the MicroPython VM with
``gc.mem_alloc()``, under 48 KB (an ESP32 without PSRAM has about 110 KB free after boot).
Measured in the WebAssembly port (32-bit objects, as on the ESP32 and RP2040), after a
real collection on each side (``hw.micropython_runner``: garbage is reclaimed between
steps only):

- state (the figure judged against the budget): the application built as
  ``app.main.build_gateway`` builds it, started, connected over MQTT (to a broker played
  inside the VM), with 32 paired devices tracked by the filters and 64 readings waiting in
  the open batch (``batch_max_readings`` 65, so none is sealed yet: the worst case before a
  batch leaves);
- code, for the record: the application and the core modules it imports, loaded from the
  ``.mpy`` files ``bankiot firmware compile`` makes (as a bundle installs them) and from
  source. Loaded from the filesystem, bytecode lives in the heap; frozen into the
  MicroPython image (a ``manifest.py`` of a custom build) it stays in flash and costs
  next to nothing, which is what a board without PSRAM needs (see docs/firmware.md).

Not counted: the stand-ins for the board's C modules (``cryptolib``, ``bluetooth``,
``socket``...), loaded before the baseline. The reference is the budget, printed beside.

Run: ``.venv/bin/python bench/firmware_heap.py [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hw.micropython_runner import MicroPythonRunner
from provisioning.firmware_bundle import compile_file, device_files
from tests.firmware.board import FAKES, FIRMWARE, SCENARIO, provisioned

BUDGET = 48 * 1024
DEVICES = 32
READINGS = 64
MARK = "__heap__"

HARNESS = """
import gc, json, binascii, random
import bluetooth, machine, network, socket, ssl, cryptolib
import board_scenario
broker = board_scenario.FakeBroker()
"""

BASELINE = "gc.collect()\n__base = gc.mem_alloc()"

IMPORT = """
from app.main import build_gateway, Runner
from app import gateway, mqttlink, uplinks, wifi, scanner, ring, config, board, health
from app import crashloop, watchdog, store
from app import updates, releases, update_plan, httpget
"""

CODE = "gc.collect()\n__code = gc.mem_alloc() - __base\nprint(%r, 'code', __code)" % MARK

STATE = """
app, clock = board_scenario.board()
app.start(clock.now)
ble = bluetooth.BLE()
n = 0
for rnd in range(%(per)d):
    for d in range(%(devices)d):
        data = bytes([2, 1, 6, 9, 0x16, 0xD2, 0xFC, 0x40, 0, n & 0xFF, 2]) + (
            (2000 + 100 * rnd + d).to_bytes(2, "little"))
        ble._inject(0, bytes([0xA4, 0xC1, 0x38, 0, 1, d]), 0, -60, data)
        n += 1
        if n %% 16 == 0:
            clock.now += 10
            app.drain(clock.now)
    for _ in range(10):
        clock.now += 100
        app.drain(clock.now)
        app.tick(clock.now)
        app.wifi.step(clock.now)
        app.uplinks.step(clock.now)
        broker.serve()
broker.received = []
broker.published = []
"""

STATE_MARK = (
    "gc.collect()\n__state = gc.mem_alloc() - __base - __code\n"
    "print(%r, 'state', __state, app.engine.pending(), app.uplinks.connected, "
    "app.engine.health_counters()['frames_in'])" % MARK
)


def settings() -> dict:
    paired = ["A4:C1:38:00:01:%02X" % d for d in range(DEVICES)]
    return {
        "paired": paired,
        "presence": False,
        "batch_max_readings": READINGS + 1,
        "batch_max_delay_ms": 600000,
        "health_interval_ms": 600000,
    }


def measure(runner: MicroPythonRunner, tree: Path) -> dict[str, int]:
    """The figures with the firmware tree ``tree`` (sources or .mpy) mounted at ``/``."""
    files = {"/lib/board_scenario.py": SCENARIO.read_bytes(), **provisioned(settings=settings())}
    steps = [
        HARNESS,
        BASELINE,
        IMPORT,
        CODE,
        STATE % {"per": READINGS // DEVICES, "devices": DEVICES},
        STATE_MARK,
    ]
    run = runner.run(steps, fakes=FAKES, files=files, mounts={"/": tree, "/lib": tree / "lib"})
    run.check()
    figures: dict[str, int] = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == MARK:
            figures[parts[1]] = int(parts[2])
            if parts[1] == "state":
                figures["pending_readings"] = int(parts[3])
                figures["connected"] = int(parts[4] == "True")
                figures["frames_in"] = int(parts[5])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description="Board application heap, steady state.")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    runner = MicroPythonRunner(mounts={}, timeout=120)
    with tempfile.TemporaryDirectory() as scratch:
        compiled = Path(scratch)
        for source in device_files():
            compile_file(source, compiled)
        mpy = measure(runner, compiled)
    source = measure(runner, FIRMWARE)
    state = mpy["state"]
    report = {
        "devices": DEVICES,
        "readings_open": mpy["pending_readings"],
        "frames_in": mpy["frames_in"],
        "mqtt_connected": bool(mpy["connected"]),
        "heap_state_bytes": state,
        "budget_bytes": BUDGET,
        "ratio_to_budget": round(state / BUDGET, 2),
        "heap_code_mpy_bytes": mpy["code"],
        "heap_code_source_bytes": source["code"],
        "heap_state_from_source_bytes": source["state"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            "board application, %d devices tracked, %d readings open, MQTT %s:"
            % (DEVICES, report["readings_open"], "up" if report["mqtt_connected"] else "down")
        )
        print(
            "  state %d B against a budget of %d B: %.2f of it (%s)"
            % (state, BUDGET, state / BUDGET, "within" if state <= BUDGET else "OVER")
        )
        print(
            "  code in the heap when loaded from the filesystem: %d B as .mpy, %d B from source"
            " (frozen into the image: in flash instead)" % (mpy["code"], source["code"])
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
