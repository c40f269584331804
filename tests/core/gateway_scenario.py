"""A gateway's day through ``bankiot_core.gateway``, runnable on both interpreters.

``tests/core/test_gateway.py`` runs ``story()`` on CPython and, from this same file
installed as ``/lib/gateway_scenario.py``, under real MicroPython, and checks both against
what the module's contract predicts. The cloud's side (opening batches, sealing acks,
configurations and commands) is played with the same core, as ``cloud.ingest`` does.

Common subset of CPython and MicroPython: no f-strings, no annotations. Output is
JSON-ready.
"""

import binascii

from bankiot_core import batch, cose, downlink
from bankiot_core.errors import CoreError
from bankiot_core.gateway import VITALS, Gateway
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers

SECRET = bytes(range(32))
GATEWAY = "gw-day"
UP = "devices/gw-day/up"
DOWN = "devices/gw-day/down"
SENSOR = bytes(binascii.unhexlify("a4c138000001"))
STRANGER = bytes(binascii.unhexlify("a4c138000009"))
# BTHome v2, unencrypted (0x40): temperature 0x02 = 0x09ca * 0.01 = 25.06 °C.
TEMPERATURE = bytes(binascii.unhexlify("020106" + "0716d2fc4002ca09"))
# BTHome v2: button 0x3a = 0x01, a press (an event: urgent).
PRESS = bytes(binascii.unhexlify("020106" + "0616d2fc403a01"))
SETTINGS = {"paired": ["A4:C1:38:00:00:01"], "presence": False, "batch_max_delay_ms": 1000}


def make(state=None):
    ring = KeyRing(GATEWAY, 1, SECRET)
    sequence = SequenceNumbers(MemoryCounterStore(), block=16)
    queue = Queue(MemoryStorage(), 1 << 16, resend_ms=5000, max_in_flight=16)
    return Gateway(ring, sequence, queue, UP, "1.0.0", SETTINGS, None, state=state)


def cloud_ring():
    return KeyRing(GATEWAY, 1, SECRET)


def sent(gateway, now):
    """What the gateway sends now, opened by the cloud: [seq, [records as text]]."""
    out = []
    while True:
        item = gateway.next_to_send(now)
        if item is None:
            return out
        seq, envelope = item
        opened = cose.open_envelope(envelope, cloud_ring().lookup, UP)
        records = []
        for record in batch.decode_batch(opened.plaintext).records:
            records.append(describe(record))
        out.append([seq, records])


def describe(record):
    if isinstance(record, batch.Running):
        return "running %s %s" % (record.software, record.config_revision)
    if isinstance(record, batch.CommandResult):
        return "result %d %s %s" % (record.id, batch.STATUS_NAMES[record.status], record.detail)
    if isinstance(record, batch.Health):
        c = record.counters
        return "health heard=%s in=%s refused=%s configs=%s/%s" % (
            c.get("frames_heard"),
            c.get("frames_in"),
            c.get("downlinks_refused"),
            c.get("configs_applied"),
            c.get("configs_refused"),
        )
    if isinstance(record, batch.KioskEvent):
        wearable = "-" if record.wearable is None else binascii.hexlify(record.wearable).decode()
        return "kiosk %s %d %s %s" % (
            batch.KIOSK_KINDS[record.kind],
            record.id,
            wearable,
            record.detail,
        )
    return "reading %s %s" % (record.metric, record.value)


def down(gateway, seq, message, now):
    """The cloud seals ``message`` as downlink number ``seq``; the gateway acts on it."""
    envelope = downlink.seal_downlink(cloud_ring(), seq, message, DOWN)
    try:
        actions = gateway.downlink(envelope, DOWN, now)
    except CoreError as exc:
        return [type(exc).__name__]
    return [[a.command_id, a.name] for a in actions]


def story():
    """The transcript: each step's name and what came of it."""
    log = []
    gw = make()
    gw.poll(0)  # what it runs, and its health, leave at once
    log.append(["start", gw.due_in(0), sent(gw, 0)])
    gw.advertisement(SENSOR, -60, TEMPERATURE, 10)
    gw.advertisement(STRANGER, -60, TEMPERATURE, 20)  # not paired: dropped, counted
    gw.advertisement(SENSOR, -60, PRESS, 30)  # urgent: leaves at once
    log.append(["press", sent(gw, 30)])
    gw.poll(1000)  # the temperature's batch opened at 10: not due before 1010
    log.append(["not yet", sent(gw, 1000)])
    gw.poll(1010)
    log.append(["routine", sent(gw, 1010)])
    acked = [item[0] for item in sent(gw, 1010)]  # nothing more to send (all in flight)
    log.append(["nothing more", acked])
    log.append(["ack", down(gw, 0, downlink.encode_ack(2), 1011), len(gw.queue)])
    log.append(["replayed ack", down(gw, 0, downlink.encode_ack(2), 1012)])
    forged = downlink.seal_downlink(KeyRing(GATEWAY, 1, bytes(32)), 7, downlink.encode_ack(1), DOWN)
    try:
        gw.downlink(forged, DOWN, 1003)
        log.append(["forged", "accepted"])
    except CoreError as exc:
        log.append(["forged", type(exc).__name__])
    new = {"paired": ["A4:C1:38:00:00:01"], "presence": False, "batch_max_delay_ms": 500}
    log.append(["config 1", down(gw, 1, downlink.encode_config(1, new), 1100)])
    log.append(["options", gw.options["batch_max_delay_ms"], gw.config_revision])
    log.append(["config 1 again", down(gw, 2, downlink.encode_config(1, SETTINGS), 1101)])
    bad = {"paired": ["not an address"]}
    log.append(["bad config 2", down(gw, 3, downlink.encode_config(2, bad), 1102)])
    counters = gw.health_counters()
    log.append(
        [
            "still",
            gw.config_revision,
            gw.options["batch_max_delay_ms"],
            counters["configs_applied"],
            counters["configs_refused"],
            counters["downlinks_refused"],
        ]
    )
    log.append(["reboot", down(gw, 4, downlink.encode_command(5, "reboot"), 1200)])
    log.append(["reboot resent", down(gw, 5, downlink.encode_command(5, "reboot"), 1201)])
    log.append(["dance", down(gw, 6, downlink.encode_command(6, "dance"), 1202)])
    gw.report(5, batch.STATUS_DONE, "back", 1300)
    gw.poll(1700)
    log.append(["after", sent(gw, 1700)])
    again = make(gw.state())
    log.append(
        [
            "restored",
            again.config_revision,
            again.options["batch_max_delay_ms"],
            again.commands.seen(5),
            down(again, 6, downlink.encode_command(7, "rescan"), 2000),  # number 6 was used
            down(again, 7, downlink.encode_command(7, "rescan"), 2001),
        ]
    )
    return log


def vitals_story(max_bytes=512):
    """Health in every batch (``health_in_every_batch``): every batch the gateway sends,
    opened by the cloud, as [plaintext bytes, kind of each health record ("vitals": just
    ``VITALS``, "full": every counter), its ``uptime_s``, readings]."""
    ring = KeyRing(GATEWAY, 1, SECRET)
    sequence = SequenceNumbers(MemoryCounterStore(), block=16)
    queue = Queue(MemoryStorage(), 1 << 16, resend_ms=5000, max_in_flight=64)
    settings = dict(SETTINGS)
    settings["batch_max_bytes"] = max_bytes
    settings["batch_max_delay_ms"] = 60000
    gw = Gateway(ring, sequence, queue, UP, "1.0.0", settings, health_in_every_batch=True)
    gw.set_health("heap_free", 81234)
    gw.set_health("reset_cause", 1)
    gw.set_health("wifi_rssi", None)  # WiFi down
    gw.set_health("uptime_s", 0)
    gw.poll(0)  # running and a full health record: that batch carries no second one
    for i in range(60):  # 0.5 °C apart, 0.6 s apart: past the deadband and the rate limit
        gw.set_health("uptime_s", i)
        centi = 2000 + 50 * i
        frame = bytes(binascii.unhexlify("020106" + "0916d2fc4000%02x02" % i))
        frame += bytes([centi & 0xFF, centi >> 8])
        gw.advertisement(SENSOR, -60, frame, 100 + 600 * i)
    gw.advertisement(SENSOR, -60, PRESS, 36000)  # urgent: a batch of its own, with vitals
    gw.report(9, batch.STATUS_DONE, "x" * 200, 36010)
    gw.flush()
    vitals = sorted(VITALS)
    out = []
    while True:
        item = gw.next_to_send(40000)
        if item is None:
            return out
        opened = cose.open_envelope(item[1], cloud_ring().lookup, UP)
        kinds = []
        uptime = None
        readings = 0
        for record in batch.decode_batch(opened.plaintext).records:
            if isinstance(record, batch.Health):
                kinds.append("vitals" if sorted(record.counters) == vitals else "full")
                uptime = record.counters.get("uptime_s")
            elif isinstance(record, batch.BatchReading) and record.metric == "temperature":
                readings += 1
        out.append([len(opened.plaintext), kinds, uptime, readings])


def kiosk_story():
    """A kiosk beside the gateway: it sees what the filters pass, its events leave urgent."""
    log = []
    gw = make()
    gw.poll(0)
    sent(gw, 0)
    seen = []

    def observer(address, readings, events):
        names = [r[0] for r in readings] + [e[0] for e in events]
        seen.append([binascii.hexlify(address).decode(), names])

    gw.observer = observer  # pyright: ignore[reportAttributeAccessIssue]  (None until set)
    gw.advertisement(STRANGER, -60, PRESS, 10)  # not paired: the kiosk never hears of it
    gw.advertisement(SENSOR, -60, PRESS, 20)
    log.append(["observed", seen])
    gw.kiosk(batch.KIOSK_CHECKIN, 1, SENSOR, "", 30)
    gw.kiosk(batch.KIOSK_TICKET, 2, None, "A001", 40)
    try:
        gw.kiosk(batch.KIOSK_REQUEST, 3, None, "x" * 65, 50)
        log.append(["too long", "accepted"])
    except CoreError as exc:
        log.append(["too long", type(exc).__name__])
    log.append(["sent", sent(gw, 50)])
    return log
