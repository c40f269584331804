"""Replay what a gateway heard through the portable core, on either interpreter.

``replay(frames, config, keys)`` feeds ``[t_ms, address hex, rssi, payload hex]`` frames to a
``bankiot_core.intake.Intake`` (calling ``tick`` once a second) and returns what the gateway
would forward, as JSON-ready lists: ``[t_ms, "reading", address hex, metric, value, unit]``
and ``[t_ms, "enter"/"leave", address hex, rssi, confidence]``, plus the counters. The demo
runs it on CPython and, from this same file, under real MicroPython, and compares.

Common subset of CPython and MicroPython (it is copied onto the virtual board as-is).
"""

import binascii

from bankiot_core.bthome import BindKey
from bankiot_core.intake import Intake


def _hex(b):
    return binascii.hexlify(b).decode()


def replay(frames, config, keys):
    bind = {}
    for address in keys:
        bind[binascii.unhexlify(address)] = BindKey(keys[address])
    intake = Intake(config, keys=bind)
    out = []
    next_tick = 1000
    for t, address, rssi, payload in frames:
        while t >= next_tick:
            for event in intake.tick(next_tick):
                out.append(
                    [next_tick, event.kind, _hex(event.address), event.rssi, event.confidence]
                )
            next_tick += 1000
        result = intake.advertisement(
            binascii.unhexlify(address), rssi, binascii.unhexlify(payload), t
        )
        if result is None:
            continue
        for event in result.events:
            out.append([t, event.kind, _hex(event.address), event.rssi, event.confidence])
        for r in result.readings:
            value = r.value
            if isinstance(value, (bytes, bytearray)):
                value = _hex(value)
            out.append([t, "reading", _hex(result.address), r.metric, value, r.unit])
    counters = intake.counters()
    ordered = {}
    for name in sorted(counters):
        ordered[name] = counters[name]
    return {"forwarded": out, "counters": ordered}
