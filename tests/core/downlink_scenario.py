"""Downlink acknowledgements on both interpreters: seal, open, refuse, release.

``tests/core/test_downlink.py`` runs these functions on CPython and, from this same file
installed as ``/lib/downlink_scenario.py``, under real MicroPython with the ``cryptolib``
stand-in. Envelopes built by one interpreter are opened by the other.

Inputs and outputs are JSON-ready (hex for bytes). Common subset of CPython and
MicroPython: no f-strings, no annotations.
"""

import binascii

from bankiot_core import cbor, cose, downlink
from bankiot_core.errors import CoreError
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.replay import ReplayWindow

K1 = bytes(range(16))
K2 = bytes(range(16, 32))
K3 = bytes(range(32, 48))
K_OTHER = bytes(range(48, 64))
GATEWAY = "gw-7"
OTHER = "gw-8"
TOPIC = "devices/gw-7/down"
UPLINK_TOPIC = "devices/gw-7/batches"
WINDOW = 8
BATCH_BYTES = 10
CAPACITY = 13 * BATCH_BYTES
# Batches the gateway seals: 20..29 were skipped by a reboot (sequence reservation).
ENQUEUED = list(range(20)) + list(range(30, 36))


def unhex(text):
    return bytes(binascii.unhexlify(text))


def hexa(data):
    return binascii.hexlify(data).decode()


def rollover_ring():
    """Both ends mid-rollover: version 2 current, version 1 still valid."""
    return KeyRing(GATEWAY, 2, K2, previous=(1, K1))


def encode_acks(cases):
    """``[through or None, seqs]`` -> the ACK message's hex, or the error's class name."""
    out = []
    for through, seqs in cases:
        try:
            out.append(hexa(downlink.encode_ack(through, seqs)))
        except CoreError as exc:
            out.append(type(exc).__name__)
    return out


def seal_acks(cases):
    """``[secret, gateway, version, seq, through, seqs, aad]`` -> envelope hex."""
    out = []
    for secret, gateway, version, seq, through, seqs, aad in cases:
        ring = KeyRing(gateway, version, unhex(secret))
        message = downlink.encode_ack(through, seqs)
        out.append(hexa(downlink.seal_downlink(ring, seq, message, aad)))
    return out


def open_all(items):
    """``[envelope, secret, gateway, version, aad]`` -> ``[seq, version, through, ranges]``
    or ``[error class name]``, each with a fresh window."""
    out = []
    for envelope, secret, gateway, version, aad in items:
        ring = KeyRing(gateway, version, unhex(secret))
        try:
            opened = downlink.open_downlink(unhex(envelope), ring, ReplayWindow(), aad)
        except CoreError as exc:
            out.append([type(exc).__name__])
            continue
        ack = opened.message
        out.append([opened.seq, opened.key_version, ack.through, [list(r) for r in ack.ranges]])
    return out


def build_deliveries():
    """What reaches the gateway, in order: ``["deliver", name, envelope hex, aad]`` and
    ``["retire", version]``. Genuine acks come from the cloud's ring and its downlink
    counter; the rest are forged, altered, replayed, late or misdirected."""
    cloud = rollover_ring()
    gateway_side = rollover_ring()
    other = KeyRing(OTHER, 2, K_OTHER)
    committed = set(range(6)) | {13, 14, 15, 16, 18}
    # The gateway reported batches up to 12 lost (its queue dropped the oldest): the
    # cumulative point leaps over them and runs on through 16.
    through = downlink.advance_through(5, committed, 12)

    def ack(seq, through=None, seqs=(), aad=TOPIC, version=None):
        message = downlink.encode_ack(through, seqs)
        return downlink.seal_downlink(cloud, seq, message, aad, version)

    def forged(key, gateway, version, seq, through=None, seqs=(), direction=cose.DOWNLINK):
        message = downlink.encode_ack(through, seqs)
        return cose.seal(key, gateway, version, seq, message, TOPIC, direction)

    dl1 = ack(1, through, [18])
    dl4 = ack(4, None, [19, 34, 35])
    flipped = bytearray(dl4)
    flipped[-1] ^= 0x01
    dl20 = downlink.seal_downlink(cloud, 20, cbor.dumps([2, 7, {"deadband": 5}], True), TOPIC)
    steps = [
        ["dl 0 under v1: through 5, already dropped", ack(0, 5, version=1)],
        ["dl 1: through %d across the lost gap, and 18" % through, dl1],
        ["dl 1 again", dl1],
        ["dl 3: 30, 31, 33", ack(3, None, [30, 31, 33])],
        ["dl 2 late, inside the window: 17", ack(2, None, [17])],
        ["sealed with a wrong key", forged(K3, GATEWAY, 2, 4, None, [19])],
        ["sealed with gw-8's key for gw-7", forged(K_OTHER, GATEWAY, 2, 4, None, [19])],
        ["addressed to gw-8", downlink.seal_downlink(other, 4, downlink.encode_ack(40), TOPIC)],
        ["the uplink key", forged(K2, GATEWAY, 2, 4, None, [19], cose.UPLINK)],
        ["own batch reflected", cose.seal_with(gateway_side, 4, b"batch", UPLINK_TOPIC)],
        ["a key version not in the ring", forged(K3, GATEWAY, 3, 4, 40)],
        ["one bit flipped in the tag", bytes(flipped)],
        ["truncated", dl4[:-1]],
        ["dl 4: 19, 34, 35", dl4],
        ["dl 20: a config message (reserved)", dl20],
        ["dl 20 again", dl20],
        ["dl 12 late, older than the window: 32", ack(12, None, [32])],
        ["dl 13 late, inside the window: 32", ack(13, None, [32])],
        ["dl 21: through 40 on an empty queue", ack(21, 40)],
    ]
    out = []
    for name, envelope in steps:
        out.append(["deliver", name, hexa(envelope), TOPIC])
    # Genuine, but on another gateway's topic (external AAD), then after v1 retires.
    out.insert(13, ["deliver", "dl 4 on gw-8's topic", hexa(dl4), "devices/gw-8/down"])
    out.append(["retire", 1])
    out.append(["deliver", "dl 22 under retired v1: 40", hexa(ack(22, 40, version=1)), TOPIC])
    return out


def story(deliveries):
    """The gateway: its queue (room for 13 batches: the oldest 13 of ``ENQUEUED`` are dropped
    and counted), its ring mid-rollover and its downlink window; then ``deliveries``."""
    queue = Queue(MemoryStorage(), CAPACITY)
    for seq in ENQUEUED:
        queue.enqueue(seq, bytes(BATCH_BYTES))
    ring = rollover_ring()
    window = ReplayWindow(WINDOW)
    log = []
    start = {"queued": queue.seqs(), "loss": list(queue.loss())}
    for step in deliveries:
        if step[0] == "retire":
            log.append(["retire", ring.retire(step[1])])
            continue
        _, name, envelope, aad = step
        before = queue.seqs()
        try:
            opened = downlink.open_downlink(unhex(envelope), ring, window, aad)
        except CoreError as exc:
            log.append([name, type(exc).__name__, queue.seqs() == before])
            continue
        released = downlink.apply_ack(queue, opened.message)
        again = downlink.apply_ack(queue, opened.message)  # idempotent
        log.append([name, "released", released, again, opened.key_version, queue.seqs()])
    counters = queue.counters()
    return {
        "start": start,
        "log": log,
        "acked": counters["acked"],
        "acks_stale": counters["acks_stale"],
        "window": window.counters(),
        "window state": hexa(window.state()),
    }
