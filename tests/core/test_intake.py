"""Intake: decode then filter, with every kind of bad frame dropped and counted.

The stream is built independently of the core: the bthome.io encryption example as
published, and further frames sealed with ``cryptography``'s AESCCM under the nonce rule of
bthome.io (MAC + d2 fc + device info + counter).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core.bthome import BindKey
from hw.micropython_runner import MicroPythonRunner
from tests.core import intake_scenario

MAC = bytes.fromhex(intake_scenario.SENSOR)
KEY = bytes.fromhex(intake_scenario.SENSOR_KEY)
PUBLISHED = "41e445f3c9962b332211006c7c4519"  # bthome.io: 25.06 °C, 50.55 %, counter 0x00112233


def advert(service_data_hex: str) -> str:
    body = "d2fc" + service_data_hex
    return "020106" + "%02x16" % (len(body) // 2 + 1) + body


def sealed(
    objects: bytes, counter: int, mac: bytes = MAC, key: bytes = KEY, include_mac: bool = False
) -> str:
    info = 0x43 if include_mac else 0x41  # version 2, encrypted, [MAC included]
    ctr = counter.to_bytes(4, "little")
    nonce = mac + b"\xd2\xfc" + bytes([info]) + ctr
    out = AESCCM(key, tag_length=4).encrypt(nonce, objects, None)
    included = mac[::-1] if include_mac else b""
    return (bytes([info]) + included + out[:-4] + ctr + out[-4:]).hex()


def stream() -> list[list]:
    tampered = PUBLISHED[:-2] + "%02x" % (int(PUBLISHED[-2:], 16) ^ 1)
    ms_phone = "0201060aff0600010920022a5ba1"  # Microsoft Swift Pair-like data: not ours
    beacon = "1aff4c000215e2c56db5dffb48d2b060d0f5a71096e000010002c5"
    sensor = intake_scenario.SENSOR
    return [
        ["first", sensor, -60, advert(PUBLISHED), 1000],
        ["repeat", sensor, -61, advert(PUBLISHED), 1500],
        ["tampered", sensor, -60, advert(tampered), 1600],
        ["older", sensor, -60, advert(sealed(bytes.fromhex("02ca09"), 0x00112232)), 1700],
        ["newer", sensor, -60, advert(sealed(bytes.fromhex("02f409"), 0x00112234)), 1800],
        ["stranger", "112233445566", -50, advert(sealed(b"\x02\xca\x09", 7, b"\x11" * 6)), 1900],
        ["malformed", intake_scenario.BEACON, -60, advert("40"), 2000],
        ["downgrade", sensor, -60, advert("4002ca09"), 2050],
        ["phone", "a1b2c3d4e5f6", -40, ms_phone, 2100],
        ["beacon", intake_scenario.BEACON, -70, beacon, 2200],
        ["beacon vendor data", intake_scenario.BEACON, -70, "0201060aff0600010920022a5ba1", 2250],
        ["beacon again", intake_scenario.BEACON, -71, beacon, 2300],
    ]


# What the specifications predict, frame by frame.
EXPECTED = {
    "first": {"temperature": 25.06, "humidity": 50.55},
    "repeat": None,  # same authenticated counter: a duplicate
    "tampered": None,  # MIC fails
    "older": None,  # counter below the last accepted: replay
    "newer": {"temperature": 25.48},  # 0x09f4 = 2548 -> 25.48 °C; humidity not re-sent
    "stranger": None,  # not paired: only counted
    "malformed": None,  # BTHome frame without objects
    "downgrade": None,  # plaintext from a device that has a bind key
    "phone": None,  # not paired (and no supported format either)
    "beacon vendor data": None,  # a paired device, but no supported format
    "beacon": {
        "uuid": "e2c56db5-dffb-48d2-b060-d0f5a71096e0",
        "major": 1,
        "minor": 2,
        "measured_power": -59,
    },
    "beacon again": None,  # same beacon frame within the window
}


def check(outcome: dict) -> None:
    counters = outcome.pop("counters")
    outcome.pop("order")
    assert outcome == EXPECTED
    assert counters["frames_heard"] == 12
    assert counters["frames_unauthenticated"] == 2  # tampered, downgrade
    assert counters["frames_replayed"] == 1
    assert counters["frames_malformed"] == 1
    assert counters["frames_unsupported"] == 1
    assert counters["frames_not_paired"] == 2  # stranger, phone
    assert counters["frames_duplicate"] == 2  # the sensor's repeat and the beacon's
    assert counters["frames_repeated"] == 1


def test_a_repeated_counter_is_never_forwarded_even_after_the_window() -> None:
    late = intake_scenario.run(
        [
            ["first", intake_scenario.SENSOR, -60, advert(PUBLISHED), 1000],
            ["replayed an hour later", intake_scenario.SENSOR, -60, advert(PUBLISHED), 3601000],
        ]
    )
    assert late["first"] == EXPECTED["first"]
    assert late["replayed an hour later"] is None
    assert late["counters"]["frames_repeated"] == 1


@pytest.mark.parametrize("repeat_cache", [0, 8])
def test_branch_stream_on_cpython(repeat_cache: int) -> None:
    check(intake_scenario.run(stream(), repeat_cache))


def test_same_stream_under_micropython(micropython: MicroPythonRunner) -> None:
    source = Path(intake_scenario.__file__).read_text()
    run = micropython.run(
        "import json, intake_scenario\n"
        "print(json.dumps(intake_scenario.run(%s, 8)))" % json.dumps(stream()),
        files={"/lib/intake_scenario.py": source},
        fakes=("cryptolib",),
    ).check()
    check(json.loads(run.stdout))


def test_counters_reveal_nothing_about_strangers() -> None:
    # A stranger sending garbage, tampered or replayed frames only ever moves one counter.
    frames = [
        ["a", "112233445566", -50, advert("40"), 1],
        ["b", "112233445566", -50, advert(PUBLISHED), 2],
        ["c", "112233445566", -50, advert("41" + "00" * 9), 3],
    ]
    counters = intake_scenario.run(frames)["counters"]
    assert counters["frames_not_paired"] == 3
    assert counters["frames_malformed"] == 0
    assert counters["frames_unauthenticated"] == 0


def test_wearable_heart_rate_notifications() -> None:
    from bankiot_core.intake import Intake

    wearable = bytes.fromhex("c0ffee000002")
    intake = Intake({"paired": ["C0:FF:EE:00:00:02"], "presence": False})
    # GATT Heart Rate Measurement: flags 0x00 (u8 rate, no contact support), rate.
    first = intake.gatt(wearable, 0x2A37, bytes([0x00, 72]), 1000)
    same = intake.gatt(wearable, 0x2A37, bytes([0x00, 72]), 2000)
    faster = intake.gatt(wearable, 0x2A37, bytes([0x00, 75]), 3000)
    stranger = intake.gatt(b"\x01" * 6, 0x2A37, bytes([0x00, 90]), 3000)
    broken = intake.gatt(wearable, 0x2A37, bytes([0x01, 72]), 4000)  # u16 flag, one byte
    assert first is not None and [(r.metric, r.value) for r in first.readings] == [
        ("heart_rate", 72)
    ]
    assert same is None
    assert faster is not None and faster.readings[0].value == 75
    assert stranger is None and broken is None
    counters = intake.counters()
    assert counters["frames_not_paired"] == 1
    assert counters["frames_malformed"] == 1


def _pool() -> list[tuple[str, str]]:
    """Frames a branch could hear: sensor frames with rising and falling counters,
    tampered and plaintext ones, a beacon, a stranger."""
    sensor, beacon = intake_scenario.SENSOR, intake_scenario.BEACON
    frames = [
        (sensor, advert(sealed(bytes([0x02, t, 0x09]), c)))
        for t, c in [(0xCA, 5), (0xCA, 6), (0xF4, 7), (0x10, 3)]
    ]
    frames += [
        (sensor, advert(PUBLISHED)),
        (sensor, advert(PUBLISHED[:-2] + "00")),
        (sensor, advert("4002ca09")),
        (beacon, advert("4002ca09")),
        (beacon, advert("4002cb09")),
        (beacon, advert("40")),
        ("112233445566", advert("4002ca09")),
        # The sensor on a random address, carrying its MAC: moves its counter on.
        ("4a0000000001", advert(sealed(b"\x02\xcc\x09", 9, include_mac=True))),
    ]
    return frames


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 30000)), max_size=40))
def test_repeat_cache_changes_nothing_but_speed(picks: list[tuple[int, int]]) -> None:
    pool = _pool()
    frames, now = [], 0
    for i, (which, gap) in enumerate(picks):
        now += gap
        address, payload = pool[which]
        frames.append([str(i), address, -60, payload, now])
    assert intake_scenario.run(frames, 4) == intake_scenario.run(frames, 0)


def test_packet_id_identifies_the_frame_and_is_not_forwarded() -> None:
    from bankiot_core.intake import Intake

    beacon = bytes.fromhex(intake_scenario.BEACON)
    intake = Intake({"paired": ["C0:FF:EE:00:00:01"], "presence": False})
    first = intake.advertisement(beacon, -60, bytes.fromhex(advert("40000902ca09")), 0)
    again = intake.advertisement(beacon, -60, bytes.fromhex(advert("40000902ca09")), 500)
    assert first is not None
    assert [(r.metric, r.value) for r in first.readings] == [("temperature", 25.06)]
    assert again is None
    assert intake.counters()["frames_duplicate"] == 1


def test_presence_only_for_people_and_never_for_buttons() -> None:
    from bankiot_core.intake import Intake

    wearable, sensor, button = (
        bytes.fromhex(h) for h in ("c0ffee000042", "a4c138000001", "c0ffee0000b2")
    )
    button_key = bytes(range(16))
    intake = Intake(
        {
            "paired": ["C0:FF:EE:00:00:42", "A4:C1:38:00:00:01", "C0:FF:EE:00:00:B2"],
            "presence_devices": ["C0:FF:EE:00:00:42", "C0:FF:EE:00:00:B2"],
            "presence_min_samples": 1,
        },
        keys={button: BindKey(button_key)},
    )
    ibeacon = bytes.fromhex("0201061aff4c000215" + "00" * 16 + "0001000201")
    kinds = []
    for t in range(0, 5000, 1000):
        for address in (wearable, sensor):
            out = intake.advertisement(address, -50, ibeacon, t)
            kinds += [(e.kind, e.address) for e in out.events] if out else []
        # A trigger-based (info bit 2) encrypted button press, heard loud and clear.
        press = bytes.fromhex(advert(sealed_button(b"\x3a\x01", t + 1, button, button_key)))
        out = intake.advertisement(button, -40, press, t)
        kinds += [(e.kind, e.address) for e in out.events] if out else []
    assert kinds == [("enter", wearable)]


def sealed_button(objects: bytes, counter: int, mac: bytes, key: bytes) -> str:
    info = 0x45  # version 2, trigger based, encrypted
    ctr = counter.to_bytes(4, "little")
    out = AESCCM(key, tag_length=4).encrypt(mac + b"\xd2\xfc" + bytes([info]) + ctr, objects, None)
    return (bytes([info]) + out[:-4] + ctr + out[-4:]).hex()
