"""bankiot_core.keyring: two key versions during a rollover, explicit retirement, no key shown.

The rollover story (``sealing_scenario.rotation_story``) runs on CPython and under real
MicroPython: a gateway and the cloud rotate at different moments, old batches still open,
replays and forgeries are refused, the retired version stops opening. Its expected outcome
is derived by hand below from the rules in the module docstrings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bankiot_core import ccm, cose
from bankiot_core.errors import ConfigError, CoreError, LocalError
from bankiot_core.keyring import KeyRing, lookup_in
from tests.core import sealing_scenario as scenario

SCENARIO_SOURCE = Path(scenario.__file__).read_text()

K1, K2, K3 = scenario.K1, scenario.K2, scenario.K3

ROTATION_EXPECTED = {
    "log": [
        ["seq 0 under v1", "stored", 1, 0, "batch 0"],
        # the cloud holds v2 and v1: the gateway's v1 batches still open
        ["seq 2 under v1 after the cloud rotated", "stored", 1, 2, "batch 2"],
        ["seq 3 under v2", "stored", 2, 3, "batch 3"],
        # below the top, inside the window, never seen: stored late, not lost
        ["seq 1 under v1, late but inside the window", "stored", 1, 1, "batch 1"],
        ["seq 2 again", "ReplayError"],
        # the topic is bound in as external AAD
        ["seq 6 on another gateway's topic", "AuthenticationError"],
        ["seq 10 forged under an unknown key", "AuthenticationError"],
        ["seq 11 for a version never issued", "AuthenticationError"],
        # failed attempts neither moved the window nor burnt the number
        ["seq 6 on its own topic", "stored", 2, 6, "batch 6"],
        ["seq 4 under retired v1", "AuthenticationError"],
        ["seq 5 under v2", "stored", 2, 5, "batch 5"],
        ["seq 100 under v2", "stored", 2, 100, "batch 100"],
        ["seq 30 under v2, fallen out of the window", "ReplayError"],
    ],
    "retired": 1,
    # the gateway never retired v1, so it may not start another rollover
    "rotate twice without retiring": "LocalError",
    "cloud": "KeyRing(gateway=b'gw-7', current=2, previous=None)",
    "device": "KeyRing(gateway=b'gw-7', current=2, previous=1)",
    # top 100, and nothing else accepted within 37..100
    "window": "0000000000000064" + "0000000000000001",
    "counters": {"accepted": 7, "replayed": 1, "too_old": 1},
}


def test_rotation_story_on_cpython() -> None:
    assert scenario.rotation_story() == ROTATION_EXPECTED


@pytest.mark.micropython
def test_rotation_story_under_micropython(micropython) -> None:
    run = micropython.run(
        "import json, sealing_scenario as s\nprint(json.dumps(s.rotation_story()))",
        fakes=("cryptolib",),
        files={"/lib/sealing_scenario.py": SCENARIO_SOURCE},
    ).check()
    assert json.loads(run.stdout) == ROTATION_EXPECTED


def test_sealing_uses_the_current_version_opening_accepts_both() -> None:
    ring = KeyRing("gw-1", 4, K1)
    assert ring.gateway_id == b"gw-1"
    assert ring.sealing_key() == (4, K1)
    assert ring.versions() == (4,)
    ring.rotate(5, K2)
    assert ring.sealing_key() == (5, K2)
    assert ring.versions() == (5, 4)
    assert (ring.current_version, ring.previous_version) == (5, 4)
    assert ring.opening_key(4) == K1
    assert ring.opening_key(5) == K2
    assert ring.opening_key(6) is None
    assert ring.lookup(b"gw-1", 4) == K1
    assert ring.lookup(bytearray(b"gw-1"), 5) == K2
    assert ring.lookup(b"gw-2", 5) is None
    envelope = cose.seal_with(ring, 9, b"batch", "t")
    assert cose.peek_envelope(envelope) == (b"gw-1", 5, 9)


def test_retiring_is_explicit_and_final() -> None:
    ring = KeyRing(b"gw-1", 1, K1)
    with pytest.raises(LocalError, match="no previous key version"):
        ring.retire()
    ring.rotate(2, K2)
    old = cose.seal(K1, b"gw-1", 1, 0, b"old", "t")
    assert cose.open_envelope(old, ring.lookup, "t").plaintext == b"old"
    with pytest.raises(ConfigError, match="cannot retire version 2: the previous version is 1"):
        ring.retire(2)
    assert ring._previous is not None
    held = ring._previous[1]  # the ring's own copy of the old key
    assert ring.retire(1) == 1
    assert held == bytearray(16)  # overwritten
    assert ring.opening_key(1) is None
    assert ring.versions() == (2,)
    with pytest.raises(CoreError, match="no key for gateway gw-1 version 1"):
        cose.open_envelope(old, ring.lookup, "t")
    ring.rotate(3, K3)  # retired: the next rollover may start
    assert ring.versions() == (3, 2)


def test_retiring_drops_cached_derivations() -> None:
    ring = KeyRing(b"gw-1", 1, K1)
    ring.rotate(2, K2)
    cose.seal(K1, b"gw-1", 1, 0, b"x", "t")
    cose.seal(K2, b"gw-1", 2, 0, b"x", "t")
    assert {k[0] for k in cose._derived} >= {K1, K2}
    ccm.cipher_for_key(bytes(16))
    ring.retire()
    assert K1 not in {k[0] for k in cose._derived}
    assert K2 in {k[0] for k in cose._derived}
    assert ccm._ciphers == {}


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda r: r.rotate(1, K2), ConfigError, "must be higher than current 1"),
        (lambda r: r.rotate(0, K2), ConfigError, "must be higher than current 1"),
        (lambda r: r.rotate(2, K1), ConfigError, "repeats the current key"),
        (lambda r: r.rotate(2, bytes(15)), ConfigError, "16 to 64 bytes, not 15"),
        (lambda r: r.rotate(2, "k" * 16), ConfigError, "must be bytes"),
        (lambda r: r.rotate(65536, K2), ConfigError, "out of range 0..65535"),
        (lambda r: r.rotate(2.0, K2), ConfigError, "must be an int"),
        (lambda r: (r.rotate(2, K2), r.rotate(3, K3)), LocalError, "retire it before"),
    ],
)
def test_bad_rotations(make: Any, error: type, message: str) -> None:
    ring = KeyRing(b"gw-1", 1, K1)
    with pytest.raises(error, match=message):
        make(ring)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((b"", 1, K1), "gateway id must be 1 to 64"),
        ((b"g", -1, K1), "out of range"),
        ((b"g", 1, bytes(65)), "16 to 64 bytes, not 65"),
        ((b"g", 1, K1, (1, K2)), "previous key version 1 must be lower than current 1"),
        ((b"g", 1, K1, (True, K2)), "must be an int"),
        ((b"g", 2, K1, (1, b"short")), "16 to 64 bytes, not 5"),
    ],
)
def test_bad_construction(args: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KeyRing(*args)


def test_a_ring_restored_mid_rollover() -> None:
    ring = KeyRing("gw-1", 7, K2, previous=(6, bytearray(K1)))
    assert ring.versions() == (7, 6)
    assert ring.opening_key(6) == K1
    assert isinstance(ring.opening_key(6), bytes)


def test_keys_never_appear_in_reprs_or_errors() -> None:
    secret = bytes.fromhex("5ec2e75ec2e75ec2e75ec2e75ec2e75e")
    ring = KeyRing("gw-1", 1, secret)
    ring.rotate(2, bytes(reversed(secret)))
    shown = [repr(ring), str(ring)]
    attempts = [
        lambda: ring.rotate(3, K3),
        lambda: ring.retire(5),
        lambda: KeyRing("gw-1", 1, secret[:10]),
        lambda: KeyRing("gw-1", 1, secret, (1, secret)),
        lambda: cose.open_envelope(cose.seal(K3, "gw-1", 2, 0, b"", "t"), ring.lookup, "t"),
    ]
    for attempt in attempts:
        with pytest.raises(CoreError) as excinfo:
            attempt()
        shown.append(str(excinfo.value))
        shown.append(repr(excinfo.value))
    for key in (secret, bytes(reversed(secret)), secret[:10]):
        for text in shown:
            assert key.hex() not in text.lower()
            assert repr(key)[2:-1] not in text
    assert shown[0] == "KeyRing(gateway=b'gw-1', current=2, previous=1)"


def test_lookup_in_many_rings() -> None:
    rings = {b"gw-1": KeyRing("gw-1", 1, K1), b"gw-2": KeyRing("gw-2", 3, K2)}
    lookup = lookup_in(rings)
    assert lookup(b"gw-1", 1) == K1
    assert lookup(b"gw-2", 3) == K2
    assert lookup(b"gw-2", 1) is None
    assert lookup(b"gw-3", 1) is None
    envelope = cose.seal(K2, "gw-2", 3, 11, b"batch", "t")
    assert cose.open_envelope(envelope, lookup, "t") == (b"gw-2", 3, 11, b"batch")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["rotate", "retire"]), max_size=20))
def test_never_more_than_two_versions_and_the_newest_seals(ops: list[str]) -> None:
    ring = KeyRing("gw-1", 0, bytes(16))
    issued = [0]
    for op in ops:
        try:
            if op == "rotate":
                version = issued[-1] + 1
                ring.rotate(version, bytes([version]) * 16)
                issued.append(version)
            else:
                ring.retire()
        except LocalError:
            pass
        versions = ring.versions()
        assert 1 <= len(versions) <= 2
        assert versions[0] == issued[-1] == ring.sealing_key()[0]
        assert ring.sealing_key()[1] == bytes([issued[-1]]) * 16 if issued[-1] else bytes(16)
        assert all(ring.opening_key(v) is not None for v in versions)
        assert all(ring.opening_key(v) is None for v in issued if v not in versions)
