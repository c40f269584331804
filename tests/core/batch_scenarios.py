"""Scenarios for bankiot_core.batch, batcher and sequence, runnable under CPython and MicroPython.

``tests/core/test_batch.py``, ``test_batcher.py`` and ``test_sequence.py`` run these on
CPython and, from this same file installed as ``/lib/batch_scenarios.py``, under real
MicroPython, and compare both with each other and with what the wire contract and the
specifications predict. Inputs are fixed (times passed in, nothing random); results are
JSON-ready (bytes as hex).

Common subset of CPython and MicroPython: no f-strings, no annotations.
"""

import binascii

from bankiot_core.batch import (
    CLOCK_UNIX_MS,
    KIOSK_CHECKIN,
    KIOSK_PAIRING,
    KIOSK_TICKET,
    STATUS_ACCEPTED,
    STATUS_DONE,
    STATUS_REFUSED,
    BatchReading,
    CommandResult,
    Health,
    KioskEvent,
    Running,
    clip_detail,
    decode_batch,
    encode_batch,
)
from bankiot_core.batcher import Batcher
from bankiot_core.errors import CoreError
from bankiot_core.filters import Output
from bankiot_core.presence import PresenceEvent
from bankiot_core.readings import Reading
from bankiot_core.sequence import FileCounterStore, MemoryCounterStore, SequenceNumbers

A = "aabbccddee01"
B = "aabbccddee02"
C = "c0ffee000001"


def mac(text):
    return bytes(binascii.unhexlify(text))


def hexa(data):
    return binascii.hexlify(data).decode()


def value_json(value):
    if type(value) is bytes:
        return ["bytes", hexa(value)]
    if type(value) is list:
        return [value_json(item) for item in value]
    return value


def record_json(record):
    if type(record) is BatchReading:
        return ["reading", hexa(record[0]), record[1], record[2], value_json(record[3]), record[4]]
    if type(record) is PresenceEvent:
        return ["presence", record[0], hexa(record[1]), record[2], record[3], record[4]]
    if type(record) is Health:
        counters = record[1]
        return ["health", record[0], [[name, counters[name]] for name in sorted(counters)]]
    if type(record) is CommandResult:
        return ["result", record[0], record[1], record[2], record[3]]
    if type(record) is Running:
        return ["running", record[0], record[1], record[2]]
    if type(record) is KioskEvent:
        wearable = None if record[3] is None else hexa(record[3])
        return ["kiosk", record[0], record[1], record[2], wearable, record[4]]
    raise TypeError("not a record: %r" % (record,))


def batch_json(payload):
    batch = decode_batch(payload)
    return [batch[0], batch[1], [record_json(r) for r in batch[2]]]


def error_json(exc):
    return [type(exc).__name__, str(exc)]


# ---- batch: one sample batch holding every kind of key, value and record -----------------


def sample_records():
    """Readings of three devices, presence, an event and health, over 2.5 seconds."""
    a = mac(A)
    b = mac(B)
    c = mac(C)
    return [
        BatchReading(a, 1000, "temperature", 21.37, "°C"),  # exact decimal: 2137
        BatchReading(a, 1000, "humidity", 45.5, "%"),  # 4550
        BatchReading(a, 1000, "battery", 87, "%"),  # unscaled int
        PresenceEvent("enter", b, 1200, -58, 71),
        BatchReading(b, 1200, "heart_rate", 72, "bpm"),
        BatchReading(b, 1200, "rr_intervals", [781.25, 832.03125], "ms"),  # list: never scaled
        BatchReading(b, 1200, "sensor_contact", True, ""),
        Health(1500, {"frames_in": 120, "dropped_batches": 0, "lost_first": None, "x_y": -4}),
        BatchReading(a, 2000, "temperature", 21.0 / 256, "°C"),  # not a short decimal: a float
        BatchReading(a, 2000, "temperature_2", -3.5, "°C"),  # a BTHome repeated object
        BatchReading(a, 2000, "raw", b"\x00\xff", ""),
        BatchReading(c, 2500, "button", "press", "event"),
        BatchReading(c, 2500, "lux_sum", 12, "klx"),  # no row: spelled out
        PresenceEvent("leave", b, 3500, -90, 0),
    ]


def gateway_records():
    """The gateway's own records (health, command results, what it runs) among a reading."""
    return [
        Running(5000, "bankiot-fw 1.4.2", None),
        CommandResult(5100, 41, STATUS_ACCEPTED, "downloading 2/7"),
        BatchReading(mac(A), 5150, "battery", 90, "%"),
        Health(5200, {"frames_in": 3}),
        CommandResult(5300, 0xFFFFFFFFFF, STATUS_REFUSED, clip_detail("r\u00e9" * 150)),
        CommandResult(5400, 41, STATUS_DONE, ""),
        Running(5400, "bankiot-fw 1.5.0", 0xFFFFFFFFFF),
        KioskEvent(5500, KIOSK_CHECKIN, 7, mac(B), ""),
        KioskEvent(5600, KIOSK_TICKET, 0xFFFFFFFFFF, None, "A042"),
        KioskEvent(5700, KIOSK_PAIRING, 8, None, "7KQ2M9XD"),
    ]


def encode_sample():
    """The sample batches as hex, and decoded again."""
    payload = encode_batch(sample_records())
    unix = encode_batch([BatchReading(mac(A), 1700000000123, "co2", 612, "ppm")], CLOCK_UNIX_MS)
    gateway = encode_batch(gateway_records())
    return {
        "payload": hexa(payload),
        "decoded": batch_json(payload),
        "unix": hexa(unix),
        "unix_decoded": batch_json(unix),
        "gateway": hexa(gateway),
        "gateway_decoded": batch_json(gateway),
    }


def decode_each(payloads):
    """Decode each hex payload: its decoded form, or the error's class name and message."""
    out = []
    for text in payloads:
        try:
            out.append(["ok", batch_json(mac(text))])
        except CoreError as exc:
            out.append(error_json(exc))
    return out


# ---- batcher: two lanes, one sequence space ------------------------------------------------


def _ready_json(ready):
    return [[r[0], r[1], batch_json(r[2])] for r in ready]


def batcher_lanes():
    """Routine waits (delay, count), urgent leaves at once; numbers shared in order."""
    store = MemoryCounterStore()
    batcher = Batcher(SequenceNumbers(store, block=4), max_readings=4, max_delay_ms=1000)
    a = mac(A)
    b = mac(B)
    steps = []

    def step(name, ready):
        steps.append([name, _ready_json(ready)])

    step("t0 temperature", batcher.add(Output(a, (Reading("temperature", 21.5, "°C"),), ()), 0))
    steps.append(["t10 due_in", batcher.due_in(10)])
    step("t10 button", batcher.add(Output(b, (Reading("button", "press", "event"),), ()), 10))
    step("t20 humidity", batcher.add(Output(a, (Reading("humidity", 40, "%"),), ()), 20))
    step("t999 poll", batcher.poll(999))
    step("t1000 poll", batcher.poll(1000))
    four = (
        Reading("temperature", 22.0, "°C"),
        Reading("humidity", 41, "%"),
        Reading("battery", 90, "%"),
        Reading("voltage", 2.981, "V"),
    )
    step("t1100 four readings", batcher.add(Output(b, four, ()), 1100))
    enter = PresenceEvent("enter", b, 1200, -55, 80)
    step("t1200 presence from tick", batcher.add_events([enter], 1200))
    step("t1300 smoke cleared", batcher.add(Output(a, (Reading("smoke", False, ""),), ()), 1300))
    step("t1310 smoke raised", batcher.add(Output(a, (Reading("smoke", True, ""),), ()), 1310))
    step("t1400 health", batcher.add_health({"frames_in": 9}, 1400))
    steps.append(["pending", batcher.pending(), batcher.due_in(1400)])
    step("flush", batcher.flush())
    steps.append(["counters", sorted(batcher.counters().items()), store.value, store.saves])
    return steps


def batcher_gateway_records():
    """Results leave urgent, running and health travel routine; bad values change nothing."""
    batcher = Batcher(SequenceNumbers(MemoryCounterStore()), max_delay_ms=100)
    steps = []
    steps.append(["t0 health", _ready_json(batcher.add_health({"frames_in": 1}, 0))])
    steps.append(["t10 running", _ready_json(batcher.add_running("fw 1.0", 7, 10))])
    steps.append(["t20 result", _ready_json(batcher.add_result(41, 0, "rebooted", 20))])
    steps.append(["t30 kiosk", _ready_json(batcher.add_kiosk(0, 9, mac(A), "", 30))])
    for name, call in (
        ("status 9", lambda: batcher.add_result(1, 9, "", 30)),
        ("detail of 201 bytes", lambda: batcher.add_result(1, 0, "x" * 201, 30)),
        ("software empty", lambda: batcher.add_running("", None, 30)),
        ("kiosk kind 7", lambda: batcher.add_kiosk(7, 1, None, "", 30)),
        ("kiosk wearable of 5 bytes", lambda: batcher.add_kiosk(0, 1, b"12345", "", 30)),
        ("kiosk detail of 65 bytes", lambda: batcher.add_kiosk(1, 1, None, "x" * 65, 30)),
    ):
        try:
            call()
            steps.append([name, "accepted"])
        except CoreError as exc:
            steps.append([name, type(exc).__name__, batcher.pending()])
    steps.append(["t100 poll", _ready_json(batcher.poll(100))])
    small = Batcher(SequenceNumbers(MemoryCounterStore()), max_bytes=32)
    steps.append(["too large", _ready_json(small.add_result(1, 1, "x" * 100, 0))])
    steps.append(["counters", small.counters()["entries_too_large"]])
    return steps


# ---- sequence: no number twice, whatever the crash ------------------------------------------


class CrashingStore(MemoryCounterStore):
    """Cuts the power at save number ``at``: before the value is stored, or just after."""

    def __init__(self, at, after):
        MemoryCounterStore.__init__(self)
        self.at = at
        self.after = after

    def save(self, value):
        if self.saves == self.at:
            self.at = -1
            if self.after:
                MemoryCounterStore.save(self, value)
            else:
                self.saves += 1
            raise OSError(5, "power cut")
        MemoryCounterStore.save(self, value)


def sequence_crashes(block=3, takes=10):
    """For every save a crash can hit, before or after the write: the numbers handed out."""
    out = []
    for at in range(4):
        for after in (False, True):
            store = CrashingStore(at, after)
            numbers = []
            seq = SequenceNumbers(store, block=block)
            for _ in range(takes):
                try:
                    numbers.append(seq.take())
                except OSError:
                    seq = SequenceNumbers(store, block=block)  # reboot: memory lost
            out.append([at, after, numbers, store.value])
    return out


def file_sequence(path, takes, block=10):
    """Take ``takes`` numbers from the counter file at ``path``; what was taken and stored."""
    seq = SequenceNumbers(FileCounterStore(path), block=block)
    first = seq.first
    numbers = [seq.take() for _ in range(takes)]
    with open(path, "rb") as f:
        stored = f.read().decode()
    return [first, numbers, stored]


class CutBeforeRename(FileCounterStore):
    """A file store whose power fails on save number ``cut_at`` (from 0), after the temp file
    is written and before the rename."""

    def __init__(self, path, cut_at):
        FileCounterStore.__init__(self, path)
        self.cut_at = cut_at
        self.saves = 0

    def _rename(self, source, target):
        self.saves += 1
        if self.saves - 1 == self.cut_at:
            raise OSError(5, "power cut before rename")
        FileCounterStore._rename(self, source, target)


def file_sequence_cut(path, takes, block=10, cut_at=1):
    """Take numbers until the power fails on a block reservation: the numbers taken, and the
    error (None if ``takes`` numbers came without one)."""
    seq = SequenceNumbers(CutBeforeRename(path, cut_at), block=block)
    numbers = []
    try:
        for _ in range(takes):
            numbers.append(seq.take())
    except OSError as exc:
        return [numbers, exc.args[1]]
    return [numbers, None]


def run_all():
    """Every scenario that needs no file system, by name."""
    return {
        "encode_sample": encode_sample(),
        "batcher_lanes": batcher_lanes(),
        "sequence_crashes": sequence_crashes(),
    }
