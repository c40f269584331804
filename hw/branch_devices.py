"""Virtual BLE devices of a bank branch, for the demo and tests.

Each device is a small deterministic model that, asked ``advertise(t_ms)``, returns the
advertising payload (AD structures, as a board's radio delivers them) it would send at that
moment, or None when it is silent. Sensors measure on their own period and repeat their last
frame in between, as real ones do; encrypted devices seal with BTHome v2 encryption under
their bind key. ``rssi(t_ms)`` is what a gateway near the kiosk would measure.

Encoding goes through ``bankiot_core.bthome.encrypt_bthome`` and plain byte layouts written
from the formats' specifications; the decoders are tested against independent libraries,
not against these models.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from bankiot_core.bthome import encrypt_bthome

FLAGS = bytes([0x02, 0x01, 0x06])


def ad(ad_type: int, data: bytes) -> bytes:
    """One AD structure: length, type, data."""
    return bytes([len(data) + 1, ad_type]) + data


def service_data(uuid16: int, data: bytes) -> bytes:
    return ad(0x16, uuid16.to_bytes(2, "little") + data)


@dataclass
class BthomeSensor:
    """A BTHome v2 room or cabinet sensor: temperature and humidity every ``period_ms``."""

    name: str
    mac: bytes
    key: bytes | None = None
    period_ms: int = 30_000
    base_temperature: float = 21.0
    heating_per_min: float = 0.0  # a failing ATM fan makes its cabinet warm up
    counter: int = 0

    def measure(self, t_ms: int) -> tuple[float, float]:
        minutes = t_ms / 60_000
        wobble = 0.3 * math.sin(minutes)
        return self.base_temperature + self.heating_per_min * minutes + wobble, 45.0 + wobble

    def advertise(self, t_ms: int) -> bytes | None:
        n = t_ms // self.period_ms + 1
        temperature, humidity = self.measure((n - 1) * self.period_ms)
        objects = (
            bytes([0x00, n & 0xFF, 0x02])
            + struct.pack("<h", round(temperature * 100))
            + bytes([0x03])
            + struct.pack("<H", round(humidity * 100))
        )
        if self.key is None:
            return FLAGS + service_data(0xFCD2, b"\x40" + objects)
        # One counter per measurement: repeats of a measurement are identical frames.
        sealed = encrypt_bthome(objects, self.mac, self.key, 1000 + n)
        return FLAGS + service_data(0xFCD2, sealed)


@dataclass
class PanicButton:
    """A BTHome button under a teller's desk, encrypted, trigger-based; pressed at given times."""

    name: str
    mac: bytes
    key: bytes
    presses_ms: tuple[int, ...] = ()
    repeat_ms: int = 3_000  # a press is advertised for a few seconds

    def advertise(self, t_ms: int) -> bytes | None:
        for i, at in enumerate(self.presses_ms):
            if at <= t_ms < at + self.repeat_ms:
                objects = bytes([0x3A, 0x01])  # button: press
                sealed = encrypt_bthome(objects, self.mac, self.key, 50 + i, trigger_based=True)
                return FLAGS + service_data(0xFCD2, sealed)
        return None


@dataclass
class Atc1441Thermometer:
    """A Xiaomi thermometer with ATC1441 firmware (13 bytes, big-endian, x0.1 degrees)."""

    name: str
    mac: bytes
    temperature: float = 19.5
    period_ms: int = 10_000

    def advertise(self, t_ms: int) -> bytes | None:
        n = t_ms // self.period_ms
        body = (
            self.mac
            + struct.pack(">h", round(self.temperature * 10))
            + bytes([52, 87])
            + struct.pack(">H", 2950)
            + bytes([n & 0xFF])
        )
        return FLAGS + service_data(0x181A, body)


@dataclass
class VisitingWearable:
    """A customer's paired wearable advertising as an iBeacon; walks up to the kiosk at
    ``arrive_ms``, stays ``stay_ms``, walks away."""

    name: str
    mac: bytes
    major: int
    minor: int
    arrive_ms: int
    stay_ms: int
    uuid: bytes = bytes.fromhex("e2c56db5dffb48d2b060d0f5a71096e0")
    noise: list[int] = field(default_factory=lambda: [0, 2, -3, 1, -1, 3, -2, 0, 2, -1])

    def rssi(self, t_ms: int) -> int:
        jitter = self.noise[(t_ms // 1000) % len(self.noise)]
        if self.arrive_ms <= t_ms < self.arrive_ms + self.stay_ms:
            return -58 + jitter
        return -92 + jitter

    def advertise(self, t_ms: int) -> bytes | None:
        body = b"\x4c\x00\x02\x15" + self.uuid + struct.pack(">HHb", self.major, self.minor, -59)
        return FLAGS + ad(0xFF, body)


@dataclass
class StrangerPhone:
    """Somebody's phone: advertises vendor data the bank has no business with."""

    name: str
    mac: bytes

    def advertise(self, t_ms: int) -> bytes | None:
        return FLAGS + ad(0xFF, b"\x06\x00\x01\x09\x20\x02" + t_ms.to_bytes(4, "little"))


def demo_branch() -> tuple[list, dict[bytes, bytes]]:
    """The demo's branch: its devices and the bind keys of the encrypted ones."""
    room_key = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
    button_key = bytes.fromhex("8f3e1c2b4a5d6e7f8091a2b3c4d5e6f7")
    devices = [
        BthomeSensor("lobby sensor", bytes.fromhex("5448e68f80a5"), key=room_key),
        BthomeSensor(
            "ATM 1 cabinet",
            bytes.fromhex("a4c138000101"),
            base_temperature=27.0,
            heating_per_min=1.5,
        ),
        Atc1441Thermometer("server closet", bytes.fromhex("a4c1380abcde")),
        PanicButton(
            "teller 2 button", bytes.fromhex("c0ffee0000b2"), button_key, presses_ms=(95_000,)
        ),
        VisitingWearable(
            "customer 0042 wearable",
            bytes.fromhex("c0ffee004200"),
            major=42,
            minor=1,
            arrive_ms=40_000,
            stay_ms=50_000,
        ),
        StrangerPhone("a passer-by's phone", bytes.fromhex("5a1122334455")),
    ]
    keys = {devices[0].mac: room_key, devices[3].mac: button_key}
    return devices, keys


def radio_stream(devices: list, seconds: int) -> list[tuple[int, bytes, int, bytes]]:
    """What a gateway hears: (t_ms, address, rssi, payload), every device once a second."""
    heard = []
    for second in range(seconds):
        for i, device in enumerate(devices):
            t = second * 1000 + i * 37  # devices are not synchronised
            payload = device.advertise(t)
            if payload is not None:
                rssi = device.rssi(t) if hasattr(device, "rssi") else -70
                heard.append((t, device.mac, rssi, payload))
    return heard
