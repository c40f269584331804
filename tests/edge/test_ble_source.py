"""edge.ble_source: bleak's BleakScanner, fed through bleak's public backend interface.

Every test runs the real ``bleak.BleakScanner`` with ``backend=`` a virtual adapter
(``hw.bleak_radio``) that reports advertisements the way bleak's BlueZ backend does
(``create_or_update_device`` + ``call_detection_callbacks``), so the source runs the code
path it runs on a Raspberry Pi. Expected advertisements are written from the formats'
byte layouts; the core's two routes (raw AD structures, bleak's maps) must agree with them.
No timed assertions: tests wait for conditions with a generous limit.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

from bleak.exc import BleakDBusError, BleakError

from bankiot_core.advdata import Advertisement, advertisement_from_bleak, parse_advertisement
from bankiot_core.backoff import Backoff
from edge.ble_source import BleSource
from edge.heard import Heard
from hw.bleak_radio import VirtualBleakRadio, bluez_maps
from hw.branch_devices import (
    FLAGS,
    Atc1441Thermometer,
    BthomeSensor,
    StrangerPhone,
    VisitingWearable,
    ad,
)
from tests.edge.waiting import run, until

FAST = Backoff(1, 20)  # delays of at most 20 ms between attempts

SENSOR = BthomeSensor("room", bytes.fromhex("a4c138000101"))
THERMOMETER = Atc1441Thermometer("closet", bytes.fromhex("a4c1380abcde"))
WEARABLE = VisitingWearable(
    "wearable", bytes.fromhex("c0ffee004200"), major=42, minor=1, arrive_ms=0, stay_ms=1000
)
PHONE = StrangerPhone("phone", bytes.fromhex("5a1122334455"))

# A payload with what BTHome and beacons do not use: a complete local name, TX power -12 dBm,
# 128-bit service data (Nordic UART's UUID, sent little-endian), 32-bit service data and
# manufacturer data of company 0x0059.
NUS = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
OTHER = (
    FLAGS
    + ad(0x09, b"Kiosk-7")
    + ad(0x0A, b"\xf4")
    + ad(0x21, bytes.fromhex(NUS.replace("-", ""))[::-1] + b"\x01\x02")
    + ad(0x20, bytes.fromhex("78563412") + b"\xaa")
    + ad(0xFF, bytes.fromhex("5900") + b"\x01")
)


def text(mac: bytes) -> str:
    return ":".join("%02X" % b for b in mac)


class Running:
    """A BleSource running on a virtual radio, stopped and awaited on exit."""

    def __init__(self, radio: VirtualBleakRadio, **options: Any) -> None:
        self.radio = radio
        self.heard: list[Heard] = []
        options.setdefault("backoff", FAST)
        self.source = BleSource("hci0", self.heard.append, backend=radio.backend, **options)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.source.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task

    def counter(self, name: str) -> int:
        return self.source.counters()[name]

    async def scanning(self, starts: int = 1) -> None:
        await until(
            lambda: self.counter("starts") >= starts and len(self.radio.scanning) == 1,
            "%d scan starts" % starts,
        )


def test_advertisements_arrive_as_the_core_builds_them() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        async with Running(radio) as r:
            await r.scanning()
            payloads = [
                (SENSOR.mac, SENSOR.advertise(0), -61),
                (THERMOMETER.mac, THERMOMETER.advertise(0), -75),
                (WEARABLE.mac, WEARABLE.advertise(0), -58),
            ]
            for mac, payload, rssi in payloads:
                assert payload is not None
                assert radio.advertise(text(mac), payload, rssi) == 1
            await until(lambda: len(r.heard) == 3, "three advertisements")
        for (mac, payload, rssi), heard in zip(payloads, r.heard, strict=True):
            assert payload is not None
            assert heard.source == "ble:hci0"
            assert (heard.address, heard.rssi, heard.payload) == (mac, rssi, None)
            # bleak reports no flags; everything else is what the raw route makes of the
            # same bytes, and what the core makes of the maps BlueZ reported.
            assert heard.adv == parse_advertisement(payload)._replace(flags=None)
            maps = bluez_maps(payload)
            del maps["service_uuids"]
            assert heard.adv == advertisement_from_bleak(**maps)
        sensor_payload = payloads[0][1]
        thermometer_payload = payloads[1][1]
        wearable_payload = payloads[2][1]
        assert sensor_payload and thermometer_payload and wearable_payload
        # After the flags (3 bytes) and the service data's length, type and UUID (4 bytes).
        assert r.heard[0].adv == Advertisement(None, None, None, {0xFCD2: sensor_payload[7:]}, {})
        assert r.heard[1].adv == Advertisement(
            None, None, None, {0x181A: thermometer_payload[7:]}, {}
        )
        assert r.heard[2].adv == Advertisement(None, None, None, {}, {0x004C: wearable_payload[7:]})
        assert r.counter("advertisements") == 3
        assert radio.modes() == ["passive"]
        assert r.counter("passive") == 1

    run(main)


def test_passive_scanning_skips_what_the_core_does_not_decode() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        async with Running(radio) as r:
            await r.scanning()
            assert radio.advertise(text(PHONE.mac), PHONE.advertise(5000) or b"") == 0
            assert radio.advertise(text(bytes(6)), OTHER) == 0
            sensor = SENSOR.advertise(0)
            assert sensor is not None
            assert radio.advertise(text(SENSOR.mac), sensor) == 1
            await until(lambda: len(r.heard) == 1, "the sensor")
        assert r.heard[0].address == SENSOR.mac

    run(main)


def test_active_scanning_hands_on_everything_bleak_reports() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        async with Running(radio, passive=False) as r:
            await r.scanning()
            radio.advertise("00:11:22:33:44:55", OTHER, -40)
            radio.advertise(text(PHONE.mac), PHONE.advertise(5000) or b"", -80)
            await until(lambda: len(r.heard) == 2, "two advertisements")
        assert radio.modes() == ["active"]
        assert r.heard[0].adv == Advertisement(
            None,
            "Kiosk-7",
            -12,
            {NUS: b"\x01\x02", 0x12345678: b"\xaa"},
            {0x0059: b"\x01"},
        )
        assert r.heard[0].adv == parse_advertisement(OTHER)._replace(flags=None)
        assert r.heard[1].adv == Advertisement(
            None, None, None, {}, {0x0006: bytes.fromhex("0109200288130000")}
        )

    run(main)


def test_what_the_core_cannot_take_is_counted_and_the_scan_goes_on() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        async with Running(radio) as r:
            await r.scanning()
            sensor = SENSOR.advertise(0)
            assert sensor is not None
            # macOS names devices by UUID, not MAC: nothing the core can key on.
            radio.advertise("1B2C3D4E-0000-4000-8000-00112233AABB", sensor)
            radio.advertise(text(SENSOR.mac), sensor)
            await until(lambda: len(r.heard) == 1, "the sensor")
            assert r.counter("malformed") == 1
            assert r.counter("advertisements") == 1
            assert r.counter("restarts") == 0

    run(main)


def test_a_failing_start_is_retried_with_backoff_until_it_works() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        radio.fail_starts(
            BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]),
            OSError(errno.ENODEV, "No such device"),
        )
        async with Running(radio, passive=False) as r:
            await r.scanning()
            sensor = SENSOR.advertise(0)
            assert sensor is not None
            radio.advertise(text(SENSOR.mac), sensor)
            await until(lambda: len(r.heard) == 1, "the sensor")
        assert r.source.counters() == {
            "advertisements": 1,
            "malformed": 0,
            "starts": 1,
            "start_failures": 2,
            "stop_failures": 0,
            "restarts": 2,
            "watchdog_restarts": 0,
            "passive": 0,
        }
        assert radio.start_calls == 3
        assert r.task is not None and r.task.exception() is None

    run(main)


def test_a_start_that_hangs_is_abandoned_and_retried() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        radio.hang_starts(1)
        async with Running(radio, passive=False, call_timeout_s=0.05) as r:
            await r.scanning()
        assert r.counter("start_failures") == 1
        assert radio.start_calls == 2

    run(main)


def test_passive_refused_falls_back_to_active() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio(passive_supported=False)
        async with Running(radio) as r:
            await r.scanning()
            assert radio.modes() == ["passive", "active"]
            assert r.source.mode == "active"
            assert r.counter("passive") == 0
            assert r.counter("start_failures") == 0
            radio.advertise(text(PHONE.mac), PHONE.advertise(5000) or b"")
            await until(lambda: len(r.heard) == 1, "the phone, heard actively")
            # Once refused, passive is not asked for again.
            r.source.rescan()
            await r.scanning(starts=2)
            assert radio.modes() == ["passive", "active", "active"]

    run(main)


def test_when_passive_and_active_both_fail_the_adapter_is_retried_passive() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        radio.fail_starts(
            BleakError("adapter hci0 not found"), BleakError("adapter hci0 not found")
        )
        async with Running(radio) as r:
            await r.scanning()
        assert radio.modes() == ["passive", "active", "passive"]
        assert r.counter("start_failures") == 1
        assert r.counter("passive") == 1

    run(main)


def test_a_silent_scan_is_restarted_by_the_watchdog() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        most_running = 0

        def count() -> bool:
            nonlocal most_running
            most_running = max(most_running, len(radio.scanning))
            return r.counter("watchdog_restarts") >= 2

        async with Running(radio, silence_s=0.05) as r:
            await until(count, "two watchdog restarts")
            await r.scanning(starts=3)
            sensor = SENSOR.advertise(0)
            assert sensor is not None
            radio.advertise(text(SENSOR.mac), sensor)
            await until(lambda: len(r.heard) == 1, "the sensor after the restarts")
        assert most_running == 1  # each scan stopped before the next started
        assert r.counter("restarts") >= 2
        assert radio.stop_calls >= 3

    run(main)


def test_a_failing_stop_is_counted_and_scanning_goes_on() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        radio.fail_stops(BleakDBusError("org.bluez.Error.Failed", ["No discovery started"]))
        async with Running(radio) as r:
            await r.scanning()
            r.source.rescan()
            await r.scanning(starts=2)
            assert r.counter("stop_failures") == 1
            assert r.counter("restarts") == 1

    run(main)


def test_stop_ends_run_and_stops_the_scan() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        r = Running(radio)
        await r.__aenter__()
        await r.scanning()
        await r.__aexit__()
        assert radio.scanning == []
        assert radio.stop_calls == 1

    run(main)


def test_stop_ends_run_during_a_long_backoff() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        radio.fail_starts(*[BleakError("no adapter")] * 4)
        # A minute between attempts: run() must not sit out the delay once stopped.
        r = Running(radio, passive=False, backoff=Backoff(60_000, 60_000), random=lambda: 0.99)
        await r.__aenter__()
        await until(lambda: r.counter("start_failures") == 1, "the first failure")
        await r.__aexit__()
        assert radio.start_calls == 1

    run(main)


def test_cancelling_run_stops_the_scan() -> None:
    async def main() -> None:
        radio = VirtualBleakRadio()
        r = Running(radio)
        await r.__aenter__()
        await r.scanning()
        assert r.task is not None
        r.task.cancel()
        await asyncio.gather(r.task, return_exceptions=True)
        assert radio.scanning == []

    run(main)
