"""CPU and memory of the whole Raspberry Pi gateway per 1,000 advertisements a second.

Issue 7 asks for the CPU the gateway needs per 1,000 advertisements a second, from bleak's
detection callback to a sealed batch queued in SQLite, and its resident memory, against
the cost of only decoding the same advertisements; Theengs Gateway's users report 35 % of a
Raspberry Pi Zero core for about 100 messages a second.

The stream: a branch heard at 1,000 advertisements a second (of the gateway's clock, which
the bench drives: 1 ms per advertisement). 40 paired BTHome sensors (temperature, humidity,
battery, packet id) each advertise about 17 times a second and measure every 5 s, so most
of what they send is a repeat; 10 unpaired BTHome sensors and 10 iBeacons (a neighbour's
devices, phones) are heard as well and dropped. Every advertisement goes in through the
virtual adapter (``hw/bleak_radio.py``) behind bleak's real ``BleakScanner``, whose detection
callback is the gateway's ``BleSource``; then ``GatewayRuntime.on_heard``, the engine
(decode, filter, batch, seal with AES-CCM) and the SQLite queue (WAL, ``synchronous=FULL``)
as ``bankiot gateway run`` wires them, the runtime's ticker running. The uplink is left out.

Measured in the same run, best of ``--rounds`` (alternating; the machine is shared):

- ``whole``: process CPU time for the stream through all of the above;
- ``radio``: the same advertisements through the virtual adapter and bleak to a detection
  callback that does nothing: what BlueZ and bleak cost here, not the gateway; the
  gateway's own figure is ``whole - radio``;
- ``decode``: the reference, decoding the same advertisements only, from the maps bleak
  hands the callback (``mac_from_str``, ``advertisement_from_bleak``,
  ``dispatch.decode_advertisement``), as a decode-only bridge would.

CPU per 1,000 advertisements a second is CPU seconds per second of radio at that rate: the
share of one core the gateway would take. Resident memory (VmRSS) is read from ``/proc``
before the gateway is built and after the stream; the peak is ``ru_maxrss``.

Run: ``.venv/bin/python bench/gateway_throughput.py [--seconds 30] [--rounds 5] [--dir D]
[--json]``. ``--dir`` puts the queue on the disk the gateway will use (an fsync costs
anything from microseconds on tmpfs to milliseconds on an SD card; waiting for the disk is
not CPU time and is not counted here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bleak import BleakScanner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bankiot_core.address import mac_from_str
from bankiot_core.advdata import advertisement_from_bleak
from bankiot_core.dispatch import decode_advertisement
from bankiot_core.errors import DecodeError
from bankiot_core.keyring import KeyRing
from edge import runtime
from edge.ble_source import OR_PATTERNS, BleSource
from edge.uplink import uplink_aad
from hw.bleak_radio import VirtualBleakRadio, bluez_maps

PAIRED, STRANGERS, BEACONS = 40, 10, 10
RATE = 1000  # advertisements a second, on the gateway's clock
MEASURE_EVERY_MS = 5000
SECRET = bytes(range(32))  # a bench secret, never a real key
THEENGS = "Theengs Gateway (reported): 35 % of a Raspberry Pi Zero core for ~100 messages/s"
UID = "gw-bench"


def bthome(packet_id: int, temperature: float, humidity: float, battery: int) -> bytes:
    """A plain BTHome v2 advertisement (bthome.io): flags, then service data 0xFCD2."""
    t = round(temperature * 100) & 0xFFFF
    h = round(humidity * 100)
    objects = bytes(
        [0x00, packet_id & 0xFF, 0x01, battery, 0x02, t & 0xFF, t >> 8, 0x03, h & 0xFF, h >> 8]
    )
    service = b"\xd2\xfc\x40" + objects
    return bytes([2, 0x01, 0x06, len(service) + 1, 0x16]) + service


def ibeacon(minor: int) -> bytes:
    """An iBeacon (Apple's format): manufacturer data 0x004C, 02 15, UUID, major, minor, tx."""
    body = b"\x4c\x00\x02\x15" + bytes(range(16)) + b"\x00\x01" + minor.to_bytes(2, "big") + b"\xc5"
    return bytes([2, 0x01, 0x06, len(body) + 1, 0xFF]) + body


def make_stream(seconds: int, seed: int = 11) -> tuple[list[tuple[str, int, bytes]], list[str]]:
    """(address, rssi, advertising data) at ``RATE`` a second, in time order; and the
    addresses of the paired sensors."""
    rng = random.Random(seed)
    devices = PAIRED + STRANGERS + BEACONS
    addresses = ["A4:C1:38:%02X:00:%02X" % (i // 256, i % 256) for i in range(devices)]
    current: dict[int, bytes] = {}
    measured_at: dict[int, int] = {}
    stream = []
    for t in range(seconds * RATE):
        i = t % devices  # round robin: each device about RATE / devices times a second
        if i >= PAIRED + STRANGERS:
            data = ibeacon(i)
        else:
            due = measured_at.get(i, -MEASURE_EVERY_MS) + MEASURE_EVERY_MS <= t
            if due:
                measured_at[i] = t - rng.randrange(100)
                n = t // MEASURE_EVERY_MS + 1
                current[i] = bthome(n, 20 + rng.random() * 4, 40 + rng.random() * 10, 90)
            data = current[i]
        stream.append((addresses[i], -50 - rng.randrange(40), data))
    return stream, addresses[:PAIRED]


def rss_kib() -> int:
    """This process's resident memory now (VmRSS), KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _scanning(radio: VirtualBleakRadio) -> None:
    while not radio.scanning:
        await asyncio.sleep(0.001)


async def _feed(radio: VirtualBleakRadio, stream: list, clock: dict[str, int]) -> float:
    """Push the stream through the radio; the CPU seconds it took."""
    start = time.process_time()
    for t, (address, rssi, data) in enumerate(stream):
        clock["ms"] = t  # 1 ms per advertisement: RATE a second on the gateway's clock
        radio.advertise(address, data, rssi)
        if t % 256 == 0:
            await asyncio.sleep(0)  # the ticker and the scanner's tasks get their turn
    return time.process_time() - start


async def time_whole(stream: list, paired: list[str], folder: Path) -> tuple[float, dict, int]:
    """The whole gateway: CPU seconds for the stream, the engine's counters, and VmRSS
    (KiB) with the gateway running after the stream."""
    clock = {"ms": 0}
    engine = runtime.open_engine(
        folder,
        KeyRing(UID, 1, SECRET),
        uplink_aad(UID),
        "bench",
        64 << 20,
        settings={"paired": paired, "presence": False},
    )
    gateway = runtime.GatewayRuntime(engine, folder / runtime.STATE_FILE, clock=lambda: clock["ms"])
    radio = VirtualBleakRadio()
    gateway.sources = [BleSource("hci0", gateway.on_heard, backend=radio.backend, silence_s=None)]
    stop = asyncio.Event()
    task = asyncio.ensure_future(gateway.run(stop))
    await _scanning(radio)
    cpu = await _feed(radio, stream, clock)
    counters = engine.health_counters()
    rss = rss_kib()
    stop.set()
    await task
    return cpu, counters, rss


async def time_radio(stream: list) -> float:
    """The virtual adapter and bleak alone, to a callback that does nothing."""
    radio = VirtualBleakRadio()
    scanner = BleakScanner(
        detection_callback=lambda device, data: None,
        scanning_mode="passive",  # with the gateway's patterns: the same filtering
        bluez={"or_patterns": OR_PATTERNS},
        backend=radio.backend,
    )
    await scanner.start()
    cpu = await _feed(radio, stream, {"ms": 0})
    await scanner.stop()
    return cpu


def time_decode(stream: list) -> float:
    """The reference: decode only, from the maps bleak hands the callback."""
    maps = [(address, bluez_maps(data)) for address, _rssi, data in stream]
    start = time.process_time()
    for address, fields in maps:
        adv = advertisement_from_bleak(
            fields["service_data"],
            fields["manufacturer_data"],
            fields["local_name"],
            fields["tx_power"],
        )
        with contextlib.suppress(DecodeError):  # none here: all are well formed
            decode_advertisement(adv, mac_from_str(address))
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description="Whole-gateway CPU and memory per 1,000 adv/s.")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of radio at 1,000/s")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (best kept)")
    parser.add_argument("--dir", type=Path, help="where the SQLite queue goes (default: a temp)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    stream, paired = make_stream(args.seconds)
    rss_before = rss_kib()
    whole = radio = decode = float("inf")
    counters: dict = {}
    rss_running = 0
    for n in range(args.rounds):
        folder = Path(tempfile.mkdtemp(prefix="gateway-bench-", dir=args.dir))
        try:
            cpu, counters, rss = asyncio.run(time_whole(stream, paired, folder / str(n)))
        finally:
            shutil.rmtree(folder)
        whole = min(whole, cpu)
        rss_running = max(rss_running, rss)
        radio = min(radio, asyncio.run(time_radio(stream)))
        decode = min(decode, time_decode(stream))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    seconds = len(stream) / RATE
    gateway = max(whole - radio, 0.0)
    figures: dict[str, Any] = {
        "advertisements": len(stream),
        "readings_out": counters.get("readings_out"),
        "batches": (counters.get("batches_routine") or 0) + (counters.get("batches_urgent") or 0),
        "cpu_s_per_s_at_1000_adv_s": {
            "gateway": round(gateway / seconds, 4),
            "radio_and_bleak": round(radio / seconds, 4),
            "whole_process": round(whole / seconds, 4),
            "decode_only_reference": round(decode / seconds, 4),
        },
        "ratio_gateway_to_decode_only": round(gateway / decode, 2),
        "rss_kib": {"before_gateway": rss_before, "gateway_running": rss_running, "peak": peak},
        "theengs_reported": THEENGS,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    per = figures["cpu_s_per_s_at_1000_adv_s"]
    print(
        "whole gateway, %d advertisements (%d readings out in %d batches), best of %d"
        % (len(stream), figures["readings_out"], figures["batches"], args.rounds)
    )
    print("CPU seconds per second at 1,000 advertisements/s (share of one core of this machine):")
    rows = (
        ("gateway: bleak callback to sealed batch in SQLite", "%6.3f" % per["gateway"]),
        ("virtual adapter + bleak (not the gateway's)", "%6.3f" % per["radio_and_bleak"]),
        ("decode only, same advertisements (reference)", "%6.3f" % per["decode_only_reference"]),
        ("ratio gateway / decode only", "%6.2f x" % figures["ratio_gateway_to_decode_only"]),
    )
    for name, value in rows:
        print("  %-50s %s" % (name, value))
    print(
        "resident memory (VmRSS): %d KiB with the gateway running, %d KiB before it was built "
        "(Python, the libraries and the stream in memory): the gateway adds %d KiB; peak of "
        "the whole bench %d KiB" % (rss_running, rss_before, rss_running - rss_before, peak)
    )
    print(
        "%s, i.e. about 3.5 Pi Zero cores per 1,000/s; a Pi Zero core is several times "
        "slower than this machine's: the figures are not comparable one to one" % THEENGS
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
