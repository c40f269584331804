"""``make demo``: the most complete end-to-end path that exists today.

Today that is the gateway's edge: a simulated branch (an encrypted lobby sensor, an ATM
cabinet that overheats, a server-closet thermometer, a panic button, a customer's wearable
walking up to the kiosk, a stranger's phone) heard by the portable core, decoded,
authenticated and filtered, first under CPython (as on the Raspberry Pi gateway) and then
under real MicroPython (as on an ESP32 or Pico W), and the two results compared. Sealing,
queueing, uplinks, the cloud and the dashboards join this demo as their issues land.

Run: ``.venv/bin/python -m hw.demo [--minutes 2] [--quiet]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bankiot_core.address import mac_to_str
from hw.branch_devices import demo_branch, radio_stream
from hw.edge_replay import replay
from hw.micropython_runner import MicroPythonRunner, MicroPythonUnavailable

REPLAY_SOURCE = Path(__file__).with_name("edge_replay.py")


def same(a: object, b: object) -> bool:
    """Equal, with floats compared to 1e-9 (the two interpreters print floats differently)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bankiot demo: the edge of a branch.")
    parser.add_argument("--minutes", type=int, default=2, help="simulated minutes (default 2)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)

    print("bankiot demo: what exists today is the gateway edge (decode, authenticate, filter).")
    print("Sealed delivery, the cloud and the dashboards join this demo as they land.\n")
    devices, keys = demo_branch()
    names = {d.mac.hex(): d.name for d in devices}
    stranger = next(d for d in devices if d.name.startswith("a passer-by"))
    people = [d for d in devices if d.name.startswith("customer")]
    config = {
        "paired": [mac_to_str(d.mac) for d in devices if d is not stranger],
        "presence_devices": [mac_to_str(d.mac) for d in people],
        "deadband": {"temperature": 0.5, "humidity": 2},
        "heartbeat_default_ms": 60_000,
    }
    frames = [
        [t, address.hex(), rssi, payload.hex()]
        for t, address, rssi, payload in radio_stream(devices, args.minutes * 60)
    ]
    key_hex = {mac.hex(): key.hex() for mac, key in keys.items()}

    on_cpython = replay(frames, config, key_hex)
    if not args.quiet:
        print("What the gateway forwards (simulated time):")
        for item in on_cpython["forwarded"]:
            t, kind, address = item[0], item[1], names.get(item[2], item[2])
            if kind == "reading":
                unit = " " + item[5] if item[5] and item[5] != "event" else ""
                print("  %6.1f s  %-24s %s = %s%s" % (t / 1000, address, item[3], item[4], unit))
            else:
                print(
                    "  %6.1f s  %-24s %s (rssi %s, confidence %s%%)"
                    % (t / 1000, address, kind.upper(), item[3], item[4])
                )
    counters = on_cpython["counters"]
    print(
        "\nHeard %d frames; forwarded %d readings and %d presence events."
        % (counters["frames_heard"], counters["readings_out"], counters["events_out"])
    )
    print(
        "Dropped at the edge: %d from devices not paired (nothing about them kept), "
        "%d repeated frames, %d readings within their deadband."
        % (
            counters["frames_not_paired"],
            counters["frames_duplicate"],
            counters["readings_unchanged"],
        )
    )

    try:
        runner = MicroPythonRunner()
    except MicroPythonUnavailable as exc:
        print("\nMicroPython comparison skipped: %s" % exc, file=sys.stderr)
        return 1
    script = (
        "import json\nfrom edge_replay import replay\n"
        "print(json.dumps(replay(%s, %s, %s)))"
        % (json.dumps(frames), json.dumps(config), json.dumps(key_hex))
    )
    run = runner.run(
        script, files={"/lib/edge_replay.py": REPLAY_SOURCE.read_bytes()}, fakes=("cryptolib",)
    ).check()
    on_micropython = json.loads(run.stdout)
    if same(on_cpython, on_micropython):
        print(
            "\nThe same core under real MicroPython (the firmware's interpreter) forwarded "
            "exactly the same %d items: one implementation, one behaviour."
            % len(on_micropython["forwarded"])
        )
        return 0
    print("\nMISMATCH between CPython and MicroPython results", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
