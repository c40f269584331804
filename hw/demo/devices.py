"""The demo bank's simulated radios: what each branch's air holds, and the customers.

Branch devices come from ``hw.branch_devices`` (BTHome room and cabinet sensors, an
ATC1441 thermometer, a panic button, a stranger's phone); the customers' wearables are
``ButtonWearable``: BTHome v2, encrypted with the bind key the customer types when pairing,
a battery level and a button the customer presses at the kiosk to check in.

The partner shop: the virtual ESP32 sits in N01's back office, against the wall it shares
with the partner café, and hears the café's Eddystone beacon (``EddystoneBeacon``: a UID
frame and a TLM frame each second, from a fixed address) and the shopper
(``shopper()``), whose wearable comes and goes (``Visits``) once the demo lets her in.

Each customer is also one simulated bank customer (``Customer.simulated``: the index in
the population of ``cloud.analytics.simulation`` that ``hw.demo.statements`` turns into her
bank statements).

Everything is deterministic: the same branch gives the same addresses and keys, so a
resumed demo finds the devices it provisioned before.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bankiot_core.address import mac_from_str, mac_to_str
from bankiot_core.bthome import encrypt_bthome
from hw.branch_devices import (
    FLAGS,
    Atc1441Thermometer,
    BthomeSensor,
    PanicButton,
    StrangerPhone,
    ad,
    service_data,
)

NEAR_KIOSK_DBM = -55  # a customer standing at the kiosk
ROOM_DBM = -68  # the branch's own sensors, across the room


@dataclass
class ButtonWearable:
    """A customer's BTHome wearable: battery and a button, encrypted with ``key``; one
    frame a second (a new counter each), the button pressed every ``press_every_ms``."""

    name: str
    mac: bytes
    key: bytes
    battery: int = 87
    press_every_ms: int = 15_000
    first_press_ms: int = 4_000
    presses: bool = True  # False: nobody presses it (a shopper, who wants no call-back)

    def advertise(self, t_ms: int) -> bytes | None:
        n = t_ms // 1000
        objects = bytes([0x00, n & 0xFF, 0x01, self.battery])
        pressed_at = t_ms - self.first_press_ms
        if self.presses and pressed_at >= 0 and pressed_at % self.press_every_ms < 1000:
            objects += bytes([0x3A, 0x01])  # button: press
        return FLAGS + service_data(0xFCD2, encrypt_bthome(objects, self.mac, self.key, 5000 + n))


@dataclass
class EddystoneBeacon:
    """An Eddystone beacon (github.com/google/eddystone, big-endian fields): each second a
    UID frame (namespace, instance) and a TLM frame (battery, temperature, the advertising
    PDU count and the time since power-on), as installed beacons interleave them."""

    name: str
    mac: bytes
    namespace: str  # 20 hex digits
    instance: str  # 12 hex digits
    tx_power: int = -20  # dBm at 0 m
    battery_mv: int = 2950
    temperature: float = 21.5

    def advertisements(self, t_ms: int) -> list[bytes]:
        """The frames sent in the second of ``t_ms``: UID, then TLM."""
        uid = (
            bytes([0x00, self.tx_power & 0xFF])
            + bytes.fromhex(self.namespace)
            + bytes.fromhex(self.instance)
            + bytes(2)  # reserved
        )
        seconds = t_ms // 1000
        tlm = bytes([0x20, 0x00]) + struct.pack(
            ">HhII",
            self.battery_mv,
            round(self.temperature * 256),  # signed 8.8 fixed point
            2 * seconds + 2,  # both frames counted
            t_ms // 100,  # 0.1 s
        )
        listed = ad(0x03, (0xFEAA).to_bytes(2, "little"))  # the complete 16-bit UUID list
        return [FLAGS + listed + service_data(0xFEAA, frame) for frame in (uid, tlm)]

    def advertise(self, t_ms: int) -> bytes | None:
        """The UID frame (one payload per call, for callers that take one)."""
        return self.advertisements(t_ms)[0]


@dataclass
class Visits:
    """A wearable that comes and goes: from ``first_ms`` on (None: not yet) it is heard
    for ``stay_ms``, then silent for ``away_ms`` (longer than the gateways' presence
    timeout, so each visit is a new ``enter``), and so on."""

    wearable: ButtonWearable
    stay_ms: int = 40_000
    away_ms: int = 25_000
    first_ms: int | None = None

    @property
    def name(self) -> str:
        return self.wearable.name

    @property
    def mac(self) -> bytes:
        return self.wearable.mac

    def advertise(self, t_ms: int) -> bytes | None:
        if self.first_ms is None or t_ms < self.first_ms:
            return None
        if (t_ms - self.first_ms) % (self.stay_ms + self.away_ms) >= self.stay_ms:
            return None
        return self.wearable.advertise(t_ms)


@dataclass(frozen=True)
class Customer:
    """A demo customer: sign-up email and password, their wearable, and which simulated
    bank customer of ``hw.demo.statements``' population they are."""

    email: str
    password: str
    wearable: ButtonWearable
    simulated: int


@dataclass(frozen=True)
class Placed:
    """A device in a branch's air: the model, its RSSI at the gateway, and whether the bank
    owns it (its address goes into the gateways' configuration) and its bind key, if any."""

    model: object
    rssi: int
    bank_owned: bool
    key: bytes | None = None

    @property
    def address(self) -> str:
        return mac_to_str(self.model.mac)  # type: ignore[attr-defined]

    @property
    def name(self) -> str:
        return self.model.name  # type: ignore[attr-defined]


def _key(branch: int, n: int) -> bytes:
    return bytes([0x5A, branch, n] + [(branch * 31 + n * 7 + i) & 0xFF for i in range(13)])


# Population indices (``cloud.analytics.simulation``, seed ``statements.SEED``) chosen for
# what their statements show on the dashboards: customer 11 moved house (a planted life
# event the detectors find, with a new relationship), 12 changed jobs, 21 had a child, 22
# had a quiet year, and the shopper is short of money before payday.
SIMULATED = {(1, 1): 11, (1, 2): 1, (2, 1): 29, (2, 2): 4}
SHOPPER_SIMULATED = 15
CAFE_BEACON = {
    "namespace": "edd1ebeac04e5defa017",
    "instance": "00000000c0fe",
    "address": "C3:AF:E0:4E:00:01",  # static random: the two top bits set
}


def customers(branch: int) -> list[Customer]:
    """The customers who use ``branch`` (1 or 2): two per branch."""
    out = []
    for n in (1, 2):
        mac = bytes([0xC0, 0xFF, 0xEE, 0x00, branch, n])
        wearable = ButtonWearable(
            "customer %d%d wearable" % (branch, n),
            mac,
            _key(branch, 10 + n),
            battery=80 + 5 * n,
            first_press_ms=4_000 + 2_500 * n,
        )
        out.append(
            Customer(
                "customer%d%d@demo.bankiot" % (branch, n),
                "demo customer %d%d pass" % (branch, n),
                wearable,
                SIMULATED[(branch, n)],
            )
        )
    return out


def shopper() -> Customer:
    """The customer who pairs at N01's kiosk and then goes shopping at the partner café
    next door (she never presses her wearable's button)."""
    mac = bytes([0xC0, 0xFF, 0xEE, 0x00, 1, 3])
    wearable = ButtonWearable("customer 13 wearable", mac, _key(1, 13), battery=91, presses=False)
    return Customer("customer13@demo.bankiot", "demo customer 13 pass", wearable, SHOPPER_SIMULATED)


def everyone() -> list[Customer]:
    """Every demo customer: the branches' and the shopper."""
    return [*customers(1), shopper(), *customers(2)]


def branch_air(branch: int) -> list[Placed]:
    """Every radio ``branch`` (1 or 2) hears: the bank's devices, the customers' wearables
    and a passer-by's phone."""
    room_key = _key(branch, 1)
    button_key = _key(branch, 2)
    b = branch
    placed = [
        Placed(
            BthomeSensor(
                "lobby sensor %d" % b,
                bytes([0x54, 0x48, 0xE6, 0, b, 1]),
                key=room_key,
                period_ms=5_000,
            ),
            ROOM_DBM,
            True,
            room_key,
        ),
        Placed(
            Atc1441Thermometer(
                "server closet %d" % b,
                bytes([0xA4, 0xC1, 0x38, 0, b, 2]),
                temperature=19.5 + b,
                period_ms=5_000,
            ),
            ROOM_DBM,
            True,
        ),
        Placed(
            PanicButton(
                "teller %d button" % b,
                bytes([0xC0, 0xFF, 0xEE, 0xB0, b, 3]),
                button_key,
                presses_ms=(12_000, 70_000),
            ),
            ROOM_DBM,
            True,
            button_key,
        ),
        Placed(
            StrangerPhone("a passer-by's phone %d" % b, bytes([0x5A, 0x11, 0x22, 0x33, b, 4])),
            -85,
            False,
        ),
    ]
    if branch == 1:  # the ATM whose fan failed: its cabinet is past 30 degrees and warming
        cabinet = BthomeSensor(
            "ATM 1 cabinet",
            bytes([0xA4, 0xC1, 0x38, 0, b, 5]),
            period_ms=5_000,
            base_temperature=30.4,
            heating_per_min=1.0,
        )
        placed.append(Placed(cabinet, ROOM_DBM, True))
    placed += [Placed(c.wearable, NEAR_KIOSK_DBM, False, c.wearable.key) for c in customers(branch)]
    return placed


def heard_by_cloud(branch: int) -> dict[str, str]:
    """Address (``AA:BB:..``, as ingest stores devices) -> name, of every device of
    ``branch`` whose readings must reach the cloud (all but the passer-by's phone)."""
    return {p.address: p.name for p in branch_air(branch) if not isinstance(p.model, StrangerPhone)}


def frames(air: list[Placed], t_ms: int) -> list[tuple[str, bytes, int]]:
    """What ``air`` sends at ``t_ms``: (address, payload, rssi) of each frame of each device
    not silent (a device with ``advertisements`` may send several)."""
    out = []
    for placed in air:
        several = getattr(placed.model, "advertisements", None)
        one = placed.model.advertise  # type: ignore[attr-defined]  # every model has it
        payloads = several(t_ms) if several is not None else [one(t_ms)]
        out += [(placed.address, p, placed.rssi) for p in payloads if p is not None]
    return out


def cafe_beacon() -> EddystoneBeacon:
    """The partner café's Eddystone beacon, registered with its address (``hw.demo.bank``)."""
    return EddystoneBeacon(
        "Café Nord beacon",
        mac_from_str(CAFE_BEACON["address"]),
        CAFE_BEACON["namespace"],
        CAFE_BEACON["instance"],
    )


def esp32_air() -> list[Placed]:
    """What the virtual ESP32 in branch 1's back office hears: the second ATM's cabinet,
    and through the wall the partner café's beacon and the shopper's wearable when she is
    there (``Visits``: silent until the demo sets ``first_ms``)."""
    return [
        Placed(
            Atc1441Thermometer(
                "ATM 2 cabinet",
                bytes([0xA4, 0xC1, 0x38, 0, 1, 6]),
                temperature=24.0,
                period_ms=5_000,
            ),
            ROOM_DBM,
            True,
        ),
        Placed(cafe_beacon(), ROOM_DBM, False),  # the merchant's, not the bank's
        Placed(Visits(shopper().wearable), NEAR_KIOSK_DBM, False, shopper().wearable.key),
    ]


def visits_in(air: list[Placed]) -> Visits | None:
    """The shopper's ``Visits`` in ``air``, if it holds one."""
    return next((p.model for p in air if isinstance(p.model, Visits)), None)
