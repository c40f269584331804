"""``edge.bindings_store``: the wearables' keys at rest, and the runtime that keeps them there.

The file must round-trip, open only for the gateway and identity that wrote it, refuse any
change, and never hold a key or an IRK in plaintext; the runtime stores a set the cloud sends
(KEYS) there, keeps it out of the engine state, and a gateway started again decodes the
wearable's encrypted frames at once.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from bankiot_core import downlink
from bankiot_core.keyring import KeyRing
from edge import runtime
from edge.bindings_store import BINDINGS_FILE, BindingsStore, BindingsUnreadable
from edge.uplink import uplink_aad

SECRET = bytes(range(100, 132))  # a test envelope secret, never a real key
UID = "gw-bind-1"
WEARABLE = bytes.fromhex("5448e68f80a5")  # bthome.io's encryption example
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")  # its bind key
IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")  # the Core spec's sample IRK
IDENTITY = bytes.fromhex("c00000000042")
SAVED = [3, [[WEARABLE, None, KEY], [IDENTITY, IRK, None]]]


def store(
    data_dir: Path, uid: str = UID, version: int = 1, secret: bytes = SECRET
) -> BindingsStore:
    return BindingsStore(data_dir / BINDINGS_FILE, uid, version, secret)


def test_round_trip_private_and_nothing_in_plaintext(tmp_path: Path) -> None:
    store(tmp_path).save(SAVED)
    path = tmp_path / BINDINGS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert KEY not in data and IRK not in data and WEARABLE not in data
    assert store(tmp_path).load() == SAVED
    store(tmp_path).save(None)  # nothing bound: no file
    assert not path.exists() and store(tmp_path).load() is None


@pytest.mark.parametrize(
    ("opener", "message"),
    [
        (lambda d: store(d, uid="gw-other"), "does not open for gateway gw-other"),
        (lambda d: store(d, secret=bytes(32)), "does not open for gateway gw-bind-1"),
        (lambda d: store(d, version=2), "envelope key version 1, this gateway holds 2"),
    ],
)
def test_another_gateway_or_identity_cannot_open_it(
    tmp_path: Path, opener: Any, message: str
) -> None:
    store(tmp_path).save(SAVED)
    with pytest.raises(BindingsUnreadable, match=message) as caught:
        opener(tmp_path).load()
    assert KEY.hex() not in caught.value.message


def test_every_changed_byte_is_refused(tmp_path: Path) -> None:
    store(tmp_path).save(SAVED)
    path = tmp_path / BINDINGS_FILE
    original = path.read_bytes()
    for index in range(len(original)):
        changed = bytearray(original)
        changed[index] ^= 0x01
        path.write_bytes(bytes(changed))
        with pytest.raises(BindingsUnreadable):
            store(tmp_path).load()
    path.write_bytes(original[:-1])
    with pytest.raises(BindingsUnreadable):
        store(tmp_path).load()
    path.write_bytes(b"not a bindings file at all, but long enough to look like one")
    with pytest.raises(BindingsUnreadable, match="not a wearable bindings file"):
        store(tmp_path).load()


def advert(counter: int) -> bytes:
    """The wearable's encrypted BTHome frame (25.06 °C), sealed with cryptography's AESCCM
    by bthome.io's recipe, as advertising data."""
    ctr = counter.to_bytes(4, "little")
    sealed = AESCCM(KEY, tag_length=4).encrypt(
        WEARABLE + b"\xd2\xfc\x41" + ctr, bytes.fromhex("02ca09"), None
    )
    body = b"\xd2\xfc\x41" + sealed[:-4] + ctr + sealed[-4:]
    return bytes.fromhex("020106") + bytes([len(body) + 1, 0x16]) + body


def start(data_dir: Path) -> runtime.GatewayRuntime:
    """The runtime as ``runtime.build`` wires its engine and store (no radio, no uplink)."""
    bindings = store(data_dir)
    engine = runtime.open_engine(
        data_dir,
        KeyRing(UID, 1, SECRET),
        uplink_aad(UID),
        "1.0.0",
        1 << 20,
        settings={"presence": False},
        bindings=bindings.load(),
    )
    gateway = runtime.GatewayRuntime(engine, data_dir / runtime.STATE_FILE, clock=lambda: 0)
    gateway.bindings = bindings
    return gateway


def test_the_runtime_keeps_the_keys_encrypted_and_decodes_after_a_restart(tmp_path: Path) -> None:
    gateway = start(tmp_path)
    engine = gateway.engine
    assert engine.advertisement(WEARABLE, -50, advert(1), 0) == 0
    assert engine.health_counters()["frames_not_paired"] == 1
    (message,) = downlink.encode_keys(1, [(WEARABLE, None, KEY), (IDENTITY, IRK, None)])
    cloud = KeyRing(UID, 1, SECRET)
    topic = downlink.downlink_topic(UID)
    gateway.on_downlink(downlink.seal_downlink(cloud, 0, message, topic), topic)
    assert engine.keys_revision == 1
    engine.advertisement(WEARABLE, -50, advert(2), 10)
    assert engine.health_counters()["readings_out"] == 1
    runtime.save_state(gateway.state_path, engine)
    engine.queue.close()
    # Nothing under the data folder holds a key or an IRK in plaintext.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert KEY not in data and IRK not in data, path.name
            assert KEY.hex().encode() not in data and IRK.hex().encode() not in data
    again = start(tmp_path)
    assert again.engine.keys_revision == 1
    again.engine.advertisement(WEARABLE, -50, advert(3), 0)
    assert again.engine.health_counters()["readings_out"] == 1
    # Unbound: the store holds the empty set, the next frame is a stranger's.
    (empty,) = downlink.encode_keys(2, [])
    again.on_downlink(downlink.seal_downlink(cloud, 1, empty, topic), topic)
    assert store(tmp_path).load() == [2, []]
    again.engine.advertisement(WEARABLE, -50, advert(4), 20)
    assert again.engine.health_counters()["readings_out"] == 1
    again.engine.queue.close()
