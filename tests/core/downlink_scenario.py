"""Downlink messages on both interpreters: seal, open, refuse, release, configure, command.

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
    command = downlink.encode_command(5, "set_led", {"on": True})
    dl23 = downlink.seal_downlink(cloud, 23, command, TOPIC)
    dl24 = downlink.seal_downlink(cloud, 24, command, TOPIC)  # the cloud resends command 5
    older = downlink.encode_config(6, {"deadband": {"temperature": 0.5}})
    newer = downlink.encode_config(8, {"paired": [OTHER], "deadband": {"temperature": 0.2}})
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
        ["dl 20: config 7", dl20],
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
    out.append(["deliver", "dl 23: command 5", hexa(dl23), TOPIC])
    out.append(["deliver", "dl 24: command 5 resent", hexa(dl24), TOPIC])
    out.append(["deliver", "dl 23 again", hexa(dl23), TOPIC])
    out.append(["deliver", "dl 25: config 6, older", hexa(seal(cloud, 25, older)), TOPIC])
    out.append(["deliver", "dl 26: config 8", hexa(seal(cloud, 26, newer)), TOPIC])
    return out


def seal(ring, seq, message):
    return downlink.seal_downlink(ring, seq, message, TOPIC)


def story(deliveries):
    """The gateway: its queue (room for 13 batches: the oldest 13 of ``ENQUEUED`` are dropped
    and counted), its ring mid-rollover and its downlink window; then ``deliveries``."""
    queue = Queue(MemoryStorage(), CAPACITY)
    for seq in ENQUEUED:
        queue.enqueue(seq, bytes(BATCH_BYTES))
    ring = rollover_ring()
    window = ReplayWindow(WINDOW)
    commands = downlink.CommandLog(4)
    running = None  # the config revision the gateway runs
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
        message = opened.message
        if opened.kind == downlink.KIND_CONFIG:
            # Settings as deterministic CBOR: floats compare exactly across interpreters.
            settings = hexa(cbor.dumps(message.settings, True))
            if running is None or message.revision > running:
                running = message.revision
                log.append([name, "config", message.revision, "applied", settings])
            else:
                log.append([name, "config", message.revision, "ignored", running])
            continue
        if opened.kind == downlink.KIND_COMMAND:
            if commands.seen(message.id):
                log.append([name, "command", message.id, message.name, "already run"])
            else:
                commands.record(message.id)
                log.append([name, "command", message.id, message.name, "run", message.args])
            continue
        released = downlink.apply_ack(queue, message)
        again = downlink.apply_ack(queue, message)  # idempotent
        log.append([name, "released", released, again, opened.key_version, queue.seqs()])
    counters = queue.counters()
    return {
        "start": start,
        "log": log,
        "acked": counters["acked"],
        "acks_stale": counters["acks_stale"],
        "window": window.counters(),
        "window state": hexa(window.state()),
        "commands": commands.state(),
        "running": running,
    }


# ---- configuration and commands ------------------------------------------------------------


def encode_messages(cases):
    """``["config", revision, settings]`` or ``["command", id, name, args]`` -> the
    message's hex, or the error's class name."""
    out = []
    for case in cases:
        try:
            if case[0] == "config":
                out.append(hexa(downlink.encode_config(case[1], case[2])))
            else:
                out.append(hexa(downlink.encode_command(case[1], case[2], case[3])))
        except CoreError as exc:
            out.append(type(exc).__name__)
    return out


def decode_messages(items):
    """Message hex -> ``["ack", through, ranges]``, ``["config", revision, settings as
    deterministic CBOR hex]``, ``["command", id, name, args as CBOR hex]`` or ``[error]``."""
    out = []
    for text in items:
        try:
            message = downlink.decode_message(unhex(text))
        except CoreError as exc:
            out.append([type(exc).__name__])
            continue
        if isinstance(message, downlink.Ack):
            out.append(["ack", message.through, [list(r) for r in message.ranges]])
        elif isinstance(message, downlink.Config):
            out.append(["config", message.revision, hexa(cbor.dumps(message.settings, True))])
        elif isinstance(message, downlink.Command):
            args = hexa(cbor.dumps(message.args, True))
            out.append(["command", message.id, message.name, args])
    return out


def command_log(steps, size):
    """Steps ``["record", id]`` / ``["seen", id]`` / ``["reboot"]`` (a new log from the
    saved state) on a ``CommandLog`` of ``size``: what each answered, and the states."""
    log = downlink.CommandLog(size)
    out = []
    for step in steps:
        if step[0] == "record":
            log.record(step[1])
            out.append(log.state())
        elif step[0] == "seen":
            out.append(log.seen(step[1]))
        else:
            log = downlink.CommandLog(size, log.state())
            out.append("rebooted")
    return out
