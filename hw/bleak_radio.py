"""A virtual Bluetooth adapter behind bleak's public backend interface, for tests and benches.

``VirtualBleakRadio().backend`` is a class to pass as ``BleakScanner(..., backend=...)``:
a ``bleak.backends.scanner.BaseBleakScanner`` that behaves as bleak's BlueZ backend does
towards its caller, so code under test runs exactly the path it runs on a Raspberry Pi:

- it takes the same arguments (``detection_callback``, ``service_uuids``, ``scanning_mode``,
  ``bluez={"adapter": ..., "or_patterns": [...]}``) and, like BlueZ's, refuses passive
  scanning without ``or_patterns`` (BleakError, at construction);
- ``start()`` and ``stop()`` are coroutines; ``fail_starts(*errors)`` and
  ``fail_stops(*errors)`` make the next calls raise those errors, ``hang_starts(n)`` makes
  the next ``n`` starts never return (a D-Bus call nobody answers), and
  ``passive_supported=False`` makes passive starts fail as a BlueZ without the
  advertisement monitor API does;
- ``advertise(address, payload, rssi)`` takes raw advertising data (AD structures, as
  ``hw.branch_devices`` models make them) and turns it into bleak's ``AdvertisementData``
  maps as BlueZ reports them (service data keyed by 128-bit UUID strings, manufacturer data
  by company id, no flags), then calls the scanner's registered callbacks through the
  public ``create_or_update_device`` and ``call_detection_callbacks``, like real backends.
  A passive scanner is only told about advertisements its or-patterns match, as BlueZ's
  advertisement monitor does.

The AD parsing here is written from the Core specification (Vol 3 Part C 11) and the UUID
handling uses the standard library's ``uuid``, not the core's ``advdata``: tests compare
what the core makes of the same bytes.

Call ``advertise`` from the event loop's thread, where bleak calls back.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import BleakError

BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"

# What BlueZ says when its advertisement monitor API is missing (bleak's own message).
PASSIVE_REFUSED = (
    "passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled "
    "and Linux kernel >= 5.10"
)


def ad_structures(payload: bytes) -> list[tuple[int, bytes]]:
    """The (AD type, data) pairs of an advertising payload; stops at a zero length."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(payload) and payload[i]:
        length = payload[i]
        out.append((payload[i + 1], payload[i + 2 : i + 1 + length]))
        i += 1 + length
    return out


def bluez_maps(payload: bytes) -> dict[str, Any]:
    """The fields of bleak's ``AdvertisementData`` that BlueZ fills from ``payload``."""
    service_data: dict[str, bytes] = {}
    manufacturer_data: dict[int, bytes] = {}
    service_uuids: list[str] = []
    local_name: str | None = None
    tx_power: int | None = None
    for ad_type, data in ad_structures(payload):
        if ad_type == 0x16:
            key = "0000%04x%s" % (int.from_bytes(data[:2], "little"), BASE_UUID_TAIL)
            service_data[key] = data[2:]
        elif ad_type == 0x20:
            key = "%08x%s" % (int.from_bytes(data[:4], "little"), BASE_UUID_TAIL)
            service_data[key] = data[4:]
        elif ad_type == 0x21:
            service_data[str(uuid.UUID(bytes=data[15::-1]))] = data[16:]
        elif ad_type == 0xFF:
            manufacturer_data[int.from_bytes(data[:2], "little")] = data[2:]
        elif ad_type in (0x02, 0x03):
            for i in range(0, len(data), 2):
                value = int.from_bytes(data[i : i + 2], "little")
                service_uuids.append("0000%04x%s" % (value, BASE_UUID_TAIL))
        elif ad_type == 0x09 or (ad_type == 0x08 and local_name is None):
            local_name = data.decode("utf-8", "replace")
        elif ad_type == 0x0A:
            tx_power = int.from_bytes(data, "little", signed=True)
    return {
        "local_name": local_name,
        "manufacturer_data": manufacturer_data,
        "service_data": service_data,
        "service_uuids": service_uuids,
        "tx_power": tx_power,
    }


def matches(or_patterns: list[Any], payload: bytes) -> bool:
    """Whether BlueZ's advertisement monitor would report ``payload`` for ``or_patterns``."""
    structures = ad_structures(payload)
    for start, ad_type, content in or_patterns:
        for t, data in structures:
            if t == ad_type and data[start : start + len(content)] == bytes(content):
                return True
    return False


class _VirtualScanner(BaseBleakScanner):
    radio: VirtualBleakRadio  # set on the subclass each radio makes

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        bluez: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        bluez = bluez or {}
        self.scanning_mode = scanning_mode
        self.adapter = bluez.get("adapter")
        self.or_patterns = list(bluez.get("or_patterns") or [])
        if scanning_mode == "passive" and not self.or_patterns:
            raise BleakError("passive scanning mode requires bluez or_patterns")
        self.radio.constructed.append(self)

    async def start(self) -> None:
        self.radio.start_calls += 1
        if self.radio.hanging_starts:
            self.radio.hanging_starts -= 1
            await asyncio.Event().wait()  # until cancelled
        if self.radio.pending_failures:
            raise self.radio.pending_failures.pop(0)
        if self.scanning_mode == "passive" and not self.radio.passive_supported:
            raise BleakError(PASSIVE_REFUSED)
        self.seen_devices = {}
        self.radio.scanning.append(self)

    async def stop(self) -> None:
        self.radio.stop_calls += 1
        if self in self.radio.scanning:
            self.radio.scanning.remove(self)
        if self.radio.pending_stop_failures:
            # BlueZ stops reporting even when the call to stop fails.
            raise self.radio.pending_stop_failures.pop(0)

    def receive(self, address: str, payload: bytes, rssi: int) -> bool:
        if self.scanning_mode == "passive" and not matches(self.or_patterns, payload):
            return False
        maps = bluez_maps(payload)
        path = "/org/bluez/%s/dev_%s" % (self.adapter or "hci0", address.replace(":", "_"))
        props = {"Address": address, "AddressType": "public", "RSSI": rssi}
        adv = AdvertisementData(rssi=rssi, platform_data=(path, props), **maps)
        device = self.create_or_update_device(
            path, address, maps["local_name"], {"path": path, "props": props}, adv
        )
        self.call_detection_callbacks(device, adv)
        return True


class VirtualBleakRadio:
    """One virtual adapter: its ``backend`` class, what it was asked, and the air around it.

    ``constructed``: every backend instance made; ``scanning``: those started and not
    stopped; ``start_calls`` and ``stop_calls`` count the calls.
    """

    def __init__(self, passive_supported: bool = True) -> None:
        self.passive_supported = passive_supported
        self.pending_failures: list[BaseException] = []
        self.pending_stop_failures: list[BaseException] = []
        self.hanging_starts = 0
        self.constructed: list[_VirtualScanner] = []
        self.scanning: list[_VirtualScanner] = []
        self.start_calls = 0
        self.stop_calls = 0
        self.backend: type[BaseBleakScanner] = type(
            "VirtualBleakScanner", (_VirtualScanner,), {"radio": self}
        )

    def fail_starts(self, *errors: BaseException) -> None:
        """The next ``start()`` calls raise these, one each, in order."""
        self.pending_failures.extend(errors)

    def fail_stops(self, *errors: BaseException) -> None:
        """The next ``stop()`` calls raise these, one each, in order."""
        self.pending_stop_failures.extend(errors)

    def hang_starts(self, n: int = 1) -> None:
        """The next ``n`` ``start()`` calls never return (until cancelled)."""
        self.hanging_starts += n

    def advertise(self, address: str, payload: bytes, rssi: int = -60) -> int:
        """``payload`` heard from ``address`` (``"AA:BB:.."``); returns how many running
        scanners reported it (a passive scanner skips what its patterns do not match)."""
        return sum(1 for scanner in list(self.scanning) if scanner.receive(address, payload, rssi))

    def modes(self) -> list[str]:
        """The scanning mode of every backend instance made, in order."""
        return [scanner.scanning_mode for scanner in self.constructed]
