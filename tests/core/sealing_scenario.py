"""Sealed batches on both interpreters: seal, open, rotate keys, refuse replays.

``tests/core/test_cose.py``, ``test_keyring.py`` and ``test_replay.py`` run these functions
on CPython and, from this same file installed as ``/lib/sealing_scenario.py``, under real
MicroPython with the ``cryptolib`` stand-in. Envelopes sealed by one interpreter are opened
by the other, and every result is compared with what the specifications predict.

Inputs and outputs are JSON-ready (hex for bytes). Common subset of CPython and
MicroPython: no f-strings, no annotations.
"""

import binascii

from bankiot_core import cose
from bankiot_core.errors import CoreError
from bankiot_core.keyring import KeyRing
from bankiot_core.replay import ReplayWindow

K1 = bytes(range(16))
K2 = bytes(range(16, 32))
K3 = bytes(range(32, 48))
GATEWAY = "gw-7"
TOPIC = "devices/gw-7/batches"


def unhex(text):
    return bytes(binascii.unhexlify(text))


def hexa(data):
    return binascii.hexlify(data).decode()


def seal_all(cases):
    """``[secret, gateway, version, seq, plaintext, aad]`` (hex for bytes) -> envelope hex."""
    out = []
    for secret, gateway, version, seq, plaintext, aad in cases:
        envelope = cose.seal(unhex(secret), gateway, version, seq, unhex(plaintext), aad)
        out.append(hexa(envelope))
    return out


def open_one(envelope, secret, gateway, version, aad):
    ring = KeyRing(gateway, version, unhex(secret))
    try:
        opened = cose.open_envelope(unhex(envelope), ring.lookup, aad)
    except CoreError as exc:
        return [type(exc).__name__]
    return [opened.gateway_id.decode(), opened.key_version, opened.seq, hexa(opened.plaintext)]


def open_all(items):
    """``[envelope, secret, gateway, version, aad]`` -> ``[gateway, version, seq, plaintext]``
    or ``[error class name]``."""
    return [open_one(*item) for item in items]


def rotation_story():
    """A gateway and the cloud through a key rollover, with replays and forgeries."""
    device = KeyRing(GATEWAY, 1, K1)
    cloud = KeyRing(GATEWAY, 1, K1)
    window = ReplayWindow(64)
    log = []

    def deliver(name, envelope, topic=TOPIC):
        try:
            window.check(cose.peek_envelope(envelope).seq)  # drop replays before any AES
            opened = cose.open_envelope(envelope, cloud.lookup, topic)
            window.accept(opened.seq)
        except CoreError as exc:
            log.append([name, type(exc).__name__])
            return
        log.append([name, "stored", opened.key_version, opened.seq, opened.plaintext.decode()])

    deliver("seq 0 under v1", cose.seal_with(device, 0, b"batch 0", TOPIC))
    queued = cose.seal_with(device, 1, b"batch 1", TOPIC)  # waits in the gateway's queue
    cloud.rotate(2, K2)  # the cloud starts the rollover; the gateway has not heard yet
    second = cose.seal_with(device, 2, b"batch 2", TOPIC)
    deliver("seq 2 under v1 after the cloud rotated", second)
    device.rotate(2, K2)
    third = cose.seal_with(device, 3, b"batch 3", TOPIC)
    deliver("seq 3 under v2", third)
    deliver("seq 1 under v1, late but inside the window", queued)
    deliver("seq 2 again", second)
    sixth = cose.seal_with(device, 6, b"batch 6", TOPIC)
    deliver("seq 6 on another gateway's topic", sixth, "devices/gw-8/batches")
    deliver("seq 10 forged under an unknown key", cose.seal(K3, GATEWAY, 2, 10, b"x", TOPIC))
    deliver("seq 11 for a version never issued", cose.seal(K3, GATEWAY, 9, 11, b"x", TOPIC))
    deliver("seq 6 on its own topic", sixth)  # the failed attempts did not burn seq 6
    retired = cloud.retire(1)
    deliver("seq 4 under retired v1", cose.seal(K1, GATEWAY, 1, 4, b"batch 4", TOPIC))
    deliver("seq 5 under v2", cose.seal_with(device, 5, b"batch 5", TOPIC))
    deliver("seq 100 under v2", cose.seal_with(device, 100, b"batch 100", TOPIC))
    deliver("seq 30 under v2, fallen out of the window", cose.seal_with(device, 30, b"x", TOPIC))
    try:
        device.rotate(3, K3)
        device.rotate(4, K1)
        rotate_twice = "allowed"
    except CoreError as exc:
        rotate_twice = type(exc).__name__
    return {
        "log": log,
        "retired": retired,
        "rotate twice without retiring": rotate_twice,
        "cloud": repr(cloud),
        "device": repr(device),
        "window": hexa(window.state()),
        "counters": window.counters(),
    }


def replay_story(seqs, size):
    """Accept ``seqs`` in order: each ``"ok"`` or the error's message; the final state."""
    window = ReplayWindow(size)
    results = []
    for seq in seqs:
        try:
            window.accept(seq)
            results.append("ok")
        except CoreError as exc:
            results.append("%s: %s" % (type(exc).__name__, exc))
    state = window.state()
    restored = ReplayWindow.from_state(state)
    return {
        "results": results,
        "state": hexa(state),
        "restored equal": restored.state() == state and restored.top == window.top,
        "counters": window.counters(),
    }
