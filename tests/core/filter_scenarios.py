"""Behavioural scenarios for bankiot_core.filters, runnable under CPython and MicroPython.

Each scenario feeds a ``FilterPipeline`` a scripted stream (times passed in, nothing random)
and returns a JSON-ready result. ``tests/core/test_filters.py`` runs them on CPython, runs this
same file under real MicroPython (installed as ``/lib/filter_scenarios.py``), and compares both
results with each other and with the values the behaviour's specification predicts.

Written in the common subset: no f-strings, no annotations needing ``typing``, no ``%`` either.
"""

import binascii

from bankiot_core.filters import FilterPipeline
from bankiot_core.readings import Reading

EVENT = "event"

PAIRED = "AA:BB:CC:DD:EE:01"
UNPAIRED = "AA:BB:CC:DD:EE:02"
IDENTITY = "C0:00:00:00:00:01"
# Bluetooth Core spec vol 3 part H, D.7: ah(IRK, 0x708194) = 0x0dfbaa.
SPEC_IRK = "ec0234a357c8ad05341010a60a397d9b"
SPEC_RPA = "70:81:94:0D:FB:AA"
# Same prand, wrong hash: has the form of a private address but does not resolve.
FOREIGN_RPA = "70:81:94:0D:FB:AB"

# Settings that switch off every filter but the one a scenario looks at.
QUIET = {
    "presence": False,
    "rate_per_min": 0,
    "deadband": {},
    "deadband_default": 0,
    "heartbeat_ms": {},
    "heartbeat_default_ms": 0,
    "dedup_window_ms": 0,
}


def mac(text):
    return bytes(binascii.unhexlify(text.replace(":", "")))


def hexa(address):
    return binascii.hexlify(address).decode()


def config(**changes):
    out = dict(QUIET)
    out["paired"] = [PAIRED]
    for key in changes:
        out[key] = changes[key]
    return out


def event_json(event):
    return [event.kind, hexa(event.address), event.at_ms, event.rssi, event.confidence]


def output_json(out):
    if out is None:
        return None
    return [
        hexa(out.address),
        [[r.metric, r.value] for r in out.readings],
        [event_json(e) for e in out.events],
    ]


def counters(pipe, names):
    c = pipe.counters()
    return dict((name, c[name]) for name in names)


def allow_list(block_cipher=None):
    """Only paired devices pass: by address, by private address resolved with the IRK."""
    pipe = FilterPipeline(config(irks={IDENTITY: SPEC_IRK}), block_cipher)
    frames = [
        (PAIRED, 0, 1, [Reading("temperature", 21.5, "C")]),
        (SPEC_RPA, 10, 1, [Reading("heart_rate", 70, "bpm")]),
        (SPEC_RPA, 20, 2, [Reading("heart_rate", 71, "bpm")]),
        (UNPAIRED, 30, 1, [Reading("temperature", 30.0, "C")]),
        (FOREIGN_RPA, 40, 3, [Reading("heart_rate", 90, "bpm")]),
        (IDENTITY, 50, 3, [Reading("heart_rate", 72, "bpm")]),
    ]
    outputs = []
    for address, now, frame_id, readings in frames:
        outputs.append(output_json(pipe.process(mac(address), -60, now, frame_id, readings)))
    return {
        "outputs": outputs,
        "tracked": sorted(hexa(k) for k in pipe.tracked()),
        "counters": counters(pipe, ("frames_in", "frames_not_paired", "rpa_resolved")),
    }


def duplicates():
    """Frame ids heard again within the window are dropped; events go out once per id."""
    pipe = FilterPipeline(config(dedup_window_ms=1000, dedup_depth=2))
    press = Reading("button", "press", EVENT)
    frames = [
        (0, 1, [Reading("count", 1, ""), press]),
        (100, 1, [Reading("count", 1, ""), press]),
        (200, 2, [Reading("count", 2, "")]),
        (300, 1, [Reading("count", 1, ""), press]),
        (400, 3, [Reading("count", 3, "")]),
        (500, 1, [Reading("count", 1, ""), press]),
        (1600, 1, [Reading("count", 1, ""), press]),
        (1700, 1, [Reading("count", 1, ""), press]),
        (1750, None, [Reading("count", 1, "")]),
    ]
    outputs = []
    for now, frame_id, readings in frames:
        outputs.append(output_json(pipe.process(mac(PAIRED), -60, now, frame_id, readings)))
    return {
        "outputs": outputs,
        "counters": counters(
            pipe, ("frames_duplicate", "readings_repeated", "readings_unchanged", "readings_out")
        ),
    }


def deadband():
    """Numbers go out beyond their deadband or on heartbeat; other values when changed."""
    pipe = FilterPipeline(
        config(deadband={"temperature": 0.5}, heartbeat_ms={"temperature": 60000})
    )
    press = Reading("button", "press", EVENT)
    frames = [
        (0, [Reading("temperature", 20.0, "C"), Reading("state", "idle", "")]),
        (1000, [Reading("temperature", 20.5, "C"), Reading("state", "idle", "")]),
        (2000, [Reading("temperature", 20.75, "C"), Reading("state", "busy", "")]),
        (3000, [Reading("temperature", 20.25, "C")]),
        (61999, [Reading("temperature", 20.25, "C")]),
        (62000, [Reading("temperature", 20.25, "C")]),
        (62001, [Reading("state", "busy", "")]),
        (63000, [Reading("battery", 90, "%"), press]),
        (63100, [Reading("battery", 90, "%"), press]),
        (63200, [Reading("battery", 91, "%")]),
    ]
    outputs = []
    for n, frame in enumerate(frames):
        out = pipe.process(mac(PAIRED), -60, frame[0], n, frame[1])
        outputs.append(output_json(out))
    return {
        "outputs": outputs,
        "counters": counters(pipe, ("readings_unchanged", "readings_out")),
    }


def rate_limit():
    """A token bucket of 3, refilled at one a second; refused frames commit nothing."""
    pipe = FilterPipeline(config(rate_per_min=60, rate_burst=3, dedup_window_ms=10000))
    frames = [
        (0, 1, 1),
        (1, 2, 2),
        (2, 3, 3),
        (3, 4, 4),
        (999, 10, 5),
        (1000, 10, 5),
        (1001, 11, 6),
        (181000, 12, 7),
        (181001, 13, 8),
        (181002, 14, 9),
        (181003, 15, 10),
    ]
    passed = []
    for now, frame_id, value in frames:
        out = pipe.process(mac(PAIRED), -60, now, frame_id, [Reading("count", value, "")])
        passed.append(out is not None)
    return {"passed": passed, "counters": counters(pipe, ("frames_rate_limited",))}


def presence_thresholds():
    """Hysteresis exactly at the thresholds, minimum samples, timeout by tick and by frame."""
    pipe = FilterPipeline(
        config(
            presence=True,
            presence_alpha_pct=100,
            presence_enter_dbm=-70,
            presence_leave_dbm=-80,
            presence_min_samples=2,
            presence_timeout_ms=5000,
        )
    )
    steps = [
        ("frame", 0, -75),
        ("frame", 100, -70),
        ("frame", 200, -60),
        ("frame", 300, -80),
        ("frame", 400, -81),
        ("frame", 500, -71),
        ("frame", 600, -70),
        ("frame", 700, -50),
        ("tick", 5699, None),
        ("tick", 5700, None),
        ("frame", 5800, -60),
        ("frame", 5900, -60),
        ("frame", 20000, -60),
        ("frame", 20100, -60),
        ("frame", 20200, None),
    ]
    events = []
    present = []
    for kind, now, rssi in steps:
        if kind == "tick":
            found = pipe.tick(now)
        else:
            out = pipe.process(mac(PAIRED), rssi, now, now, [])
            found = out.events if out is not None else ()
        for event in found:
            events.append(event_json(event))
        present.append(len(pipe.present()))
    return {"events": events, "present": present}


def presence_smoothing():
    """The fixed-point average: alpha 50 % takes -80 then -60 dBm to exactly -70 dBm."""
    pipe = FilterPipeline(config(presence=True, presence_alpha_pct=50, presence_min_samples=2))
    events = []
    for now, rssi in ((0, -80), (100, -60), (200, -60)):
        out = pipe.process(mac(PAIRED), rssi, now, None, [])
        if out is not None:
            for event in out.events:
                events.append(event_json(event))
    return {"events": events}


def _noise(seed):
    # A small linear congruential generator: the same numbers under both interpreters.
    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
    return seed, (seed >> 16) % 17 - 8


def kiosk():
    """A customer walks up to a kiosk, stands for two minutes, walks away: one visit.

    Frames every 100 ms with +-8 dB of noise: approach from -95 to -55 dBm over 10 s, stand at
    -55 for 120 s, walk away to -95 over 10 s, then silence; ``tick`` every second.
    """
    pipe = FilterPipeline(config(presence=True))
    seed = 7
    events = []
    now = 0
    while now <= 200000:
        if now < 10000:
            level = -95 + 40 * now // 10000
        elif now < 130000:
            level = -55
        elif now < 140000:
            level = -55 - 40 * (now - 130000) // 10000
        else:
            level = None
        if level is not None:
            seed, noise = _noise(seed)
            out = pipe.process(mac(PAIRED), level + noise, now, None, [])
            if out is not None:
                for event in out.events:
                    events.append([event.kind, event.at_ms])
        if now % 1000 == 0:
            for event in pipe.tick(now):
                events.append([event.kind, event.at_ms])
        now += 100
    return {"events": events}


def eviction():
    """A full table forgets the least recently heard device; silent devices expire."""
    devices = ["AA:BB:CC:DD:EE:0A", "AA:BB:CC:DD:EE:0B", "AA:BB:CC:DD:EE:0C"]
    pipe = FilterPipeline(
        config(
            paired=devices,
            max_devices=2,
            device_ttl_ms=1000,
            presence=True,
            presence_alpha_pct=100,
            presence_min_samples=1,
        )
    )
    events = []
    for address, now in ((0, 0), (1, 10), (0, 20), (2, 30)):
        out = pipe.process(mac(devices[address]), -50, now, None, [])
        if out is not None:
            for event in out.events:
                events.append(event_json(event))
    tracked_before = sorted(hexa(k) for k in pipe.tracked())
    for event in pipe.tick(1029):
        events.append(event_json(event))
    return {
        "events": events,
        "tracked_before": tracked_before,
        "tracked_after": sorted(hexa(k) for k in pipe.tracked()),
        "counters": counters(pipe, ("devices_evicted", "devices_expired")),
    }


def reconfigure():
    """A configuration pushed from the cloud: still-paired devices keep their state."""
    devices = ["AA:BB:CC:DD:EE:0A", "AA:BB:CC:DD:EE:0C"]
    before = config(
        paired=devices,
        presence=True,
        presence_alpha_pct=100,
        presence_min_samples=1,
        dedup_window_ms=5000,
    )
    pipe = FilterPipeline(before)
    outputs = []
    for address in devices:
        out = pipe.process(mac(address), -50, 0, 1, [Reading("temperature", 20.0, "C")])
        outputs.append(output_json(out))
    after = dict(before)
    after["paired"] = devices[:1]
    after["dedup_depth"] = 3
    after["rate_per_min"] = 60
    after["rate_burst"] = 1
    events = [event_json(e) for e in pipe.reconfigure(after, 100)]
    frames = [
        (devices[0], 200, 1, 20.0),
        (devices[0], 300, 2, 20.0),
        (devices[0], 400, 3, 21.0),
        (devices[0], 500, 4, 22.0),
        (devices[1], 600, 5, 23.0),
    ]
    for address, now, frame_id, value in frames:
        readings = [Reading("temperature", value, "C")]
        outputs.append(output_json(pipe.process(mac(address), -50, now, frame_id, readings)))
    return {
        "outputs": outputs,
        "events": events,
        "tracked": [hexa(k) for k in pipe.tracked()],
        "record_length": len(pipe._devices[mac(devices[0])]),
        "counters": counters(
            pipe,
            ("devices_unpaired", "frames_duplicate", "frames_rate_limited", "frames_not_paired"),
        ),
    }


SCENARIOS = (
    ("allow_list", allow_list),
    ("duplicates", duplicates),
    ("deadband", deadband),
    ("rate_limit", rate_limit),
    ("presence_thresholds", presence_thresholds),
    ("presence_smoothing", presence_smoothing),
    ("kiosk", kiosk),
    ("eviction", eviction),
    ("reconfigure", reconfigure),
)


def run_all():
    """Every scenario's result, by name."""
    results = {}
    for name, scenario in SCENARIOS:
        results[name] = scenario()
    return results
