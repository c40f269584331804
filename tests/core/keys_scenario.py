"""Wearable bindings (KEYS) through ``bankiot_core.gateway``, runnable on both interpreters.

``tests/core/test_keys.py`` runs ``story()`` on CPython and, from this same file installed
as ``/lib/keys_scenario.py``, under real MicroPython, and checks both against what the
``gateway`` and ``downlink`` contracts predict. The cloud's side (sealing KEYS pages, opening
batches) is played with the same core; the frames are bthome.io's encryption example and
frames the caller seals independently (``cryptography``'s AESCCM) and passes in.

Common subset of CPython and MicroPython: no f-strings, no annotations. Output is
JSON-ready.
"""

import binascii

from bankiot_core import batch, cbor, cose, downlink
from bankiot_core.errors import CoreError
from bankiot_core.gateway import Gateway
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers

SECRET = bytes(range(32, 64))
GATEWAY = "gw-keys"
UP = "devices/gw-keys/up"
DOWN = "devices/gw-keys/down"
SENSOR = bytes(binascii.unhexlify("a4c138000001"))  # paired by the configuration
WEARABLE = bytes(binascii.unhexlify("5448e68f80a5"))  # bthome.io's encryption example
KEY = bytes(binascii.unhexlify("231d39c1d7cc1ab1aee224cd096db932"))  # its bind key
# The Core spec's sample (vol 3 part H, D.7): this IRK resolves 70:81:94:0D:FB:AA.
IRK = bytes(binascii.unhexlify("ec0234a357c8ad05341010a60a397d9b"))
IDENTITY = bytes(binascii.unhexlify("c00000000042"))  # the phone's static identity address
RPA = bytes(binascii.unhexlify("7081940dfbaa"))
SETTINGS = {"paired": ["A4:C1:38:00:00:01"], "presence": False, "batch_max_delay_ms": 1000}
# BTHome v2, unencrypted: temperature 25.06 °C (what the configured sensor and the phone send).
PLAIN = bytes(binascii.unhexlify("020106" + "0716d2fc4002ca09"))


def advert(service_data):
    """AD structures: flags, then BTHome service data (``d2 fc`` + ``service_data``)."""
    body = b"\xd2\xfc" + service_data
    return bytes(binascii.unhexlify("020106")) + bytes((len(body) + 1, 0x16)) + body


def make(state=None, bindings=None):
    ring = KeyRing(GATEWAY, 1, SECRET)
    sequence = SequenceNumbers(MemoryCounterStore(), block=16)
    queue = Queue(MemoryStorage(), 1 << 16, resend_ms=5000, max_in_flight=64)
    return Gateway(
        ring, sequence, queue, UP, "1.0.0", SETTINGS, None, state=state, bindings=bindings
    )


def sent(gateway, now):
    """Records the gateway sends now, as text, in sequence order."""
    found = []
    while True:
        item = gateway.next_to_send(now)
        if item is None:
            break
        opened = cose.open_envelope(item[1], KeyRing(GATEWAY, 1, SECRET).lookup, UP)
        for record in batch.decode_batch(opened.plaintext).records:
            found.append((item[0], describe(record)))
    found.sort()
    return [text for _, text in found]


def describe(record):
    if isinstance(record, batch.Health):
        c = record.counters
        return "health keys=%s applied=%s refused=%s" % (
            c.get("keys_revision"),
            c.get("keys_applied"),
            c.get("keys_refused"),
        )
    if isinstance(record, batch.Running):
        return "running %s" % record.config_revision
    return "reading %s %s %s" % (
        binascii.hexlify(record.address).decode(),
        record.metric,
        record.value,
    )


class Cloud:
    """The cloud's side: KEYS pages sealed with increasing downlink numbers."""

    def __init__(self):
        self.seq = 0

    def send(self, gateway, message, now):
        envelope = downlink.seal_downlink(KeyRing(GATEWAY, 1, SECRET), self.seq, message, DOWN)
        self.seq += 1
        try:
            return gateway.downlink(envelope, DOWN, now)
        except CoreError as exc:
            return type(exc).__name__


def story(frames):
    """The transcript. ``frames``: service data (hex, from the info byte on) of the
    wearable's frames sealed independently with ``KEY``: counters 0x00112234 and up."""
    frames = [bytes(binascii.unhexlify(f)) for f in frames]
    published = bytes(binascii.unhexlify("41e445f3c9962b332211006c7c4519"))
    log = []
    cloud = Cloud()
    gw = make()
    gw.poll(0)
    sent(gw, 0)
    # Not bound yet: the wearable is a stranger; its frame is only counted.
    gw.advertisement(WEARABLE, -60, advert(published), 10)
    gw.advertisement(RPA, -60, PLAIN, 11)
    gw.flush()
    log.append(["stranger", sent(gw, 20), gw.health_counters()["frames_not_paired"]])
    # Bound (revision 1): the key and the IRK; the set is applied at once, a health record
    # with its revision leaves at once, and the next frames decode.
    bindings = [(WEARABLE, None, KEY), (IDENTITY, IRK, None)]
    (message,) = downlink.encode_keys(1, bindings)
    log.append(["bind", cloud.send(gw, message, 100), sent(gw, 100)])
    gw.advertisement(WEARABLE, -60, advert(published), 110)
    gw.advertisement(RPA, -60, PLAIN, 111)
    gw.flush()
    log.append(["decoded", sent(gw, 120)])
    # The same revision again (a resend), and an older one late: nothing changes.
    (again,) = downlink.encode_keys(1, bindings)
    (older,) = downlink.encode_keys(0, [])
    log.append(["resend", cloud.send(gw, again, 130), cloud.send(gw, older, 131), sent(gw, 131)])
    # state() holds no secret; bindings_state() holds them, for the shell to encrypt.
    saved = cbor.dumps(gw.state(), True)
    vault = gw.bindings_state()
    log.append(
        [
            "state",
            KEY in saved or IRK in saved,
            vault == [1, [[WEARABLE, None, KEY], [IDENTITY, IRK, None]]],
        ]
    )
    # A reboot: state and bindings back; the wearable still decodes.
    gw = make(gw.state(), vault)
    gw.poll(200)
    log.append(["rebooted", gw.keys_revision, sent(gw, 200)])
    gw.advertisement(WEARABLE, -60, advert(frames[0]), 210)
    gw.flush()
    log.append(["after reboot", sent(gw, 220)])
    # Unbound (revision 2, the empty set): its next frame is a stranger's at once.
    (empty,) = downlink.encode_keys(2, [])
    log.append(["unbind", cloud.send(gw, empty, 300), sent(gw, 300)])
    gw.advertisement(WEARABLE, -60, advert(frames[1]), 310)
    gw.advertisement(RPA, -60, PLAIN, 311)
    gw.advertisement(SENSOR, -60, PLAIN, 312)  # the configuration's own sensor stays
    gw.flush()
    log.append(["gone", sent(gw, 320), gw.health_counters()["frames_not_paired"]])
    # Two pages of revision 3: nothing until both are in, in any order.
    many = [(bytes((0xC0, 0, 0, 0, i >> 8, i & 255)), None, KEY) for i in range(100)]
    many.append((WEARABLE, None, KEY))
    pages = downlink.encode_keys(3, many)
    log.append(["page 2 of 2", len(pages), cloud.send(gw, pages[1], 400), gw.keys_revision])
    log.append(["page 1 of 2", cloud.send(gw, pages[0], 401), gw.keys_revision, len(gw.bindings)])
    gw.advertisement(WEARABLE, -60, advert(frames[2]), 410)
    gw.flush()
    log.append(["101 bound", sent(gw, 420)])
    return log
