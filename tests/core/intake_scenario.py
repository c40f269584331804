"""A branch's radio traffic through ``bankiot_core.intake``, runnable on both interpreters.

``tests/core/test_intake.py`` runs ``run(frames)`` on CPython and, from this same file
installed as ``/lib/intake_scenario.py``, under real MicroPython, and checks both against the
outcome the specifications predict. ``frames`` is a list of ``[name, address hex, rssi,
payload hex, t_ms]``; the result maps each name to what came out, plus the counters.

Common subset of CPython and MicroPython: no f-strings, no annotations.
"""

import binascii

from bankiot_core.bthome import BindKey
from bankiot_core.intake import Intake

# bthome.io's encryption example: this MAC and bind key.
SENSOR = "5448e68f80a5"
SENSOR_KEY = "231d39c1d7cc1ab1aee224cd096db932"
BEACON = "c0ffee000001"


def _mac(text):
    return bytes(binascii.unhexlify(text))


def run(frames, repeat_cache=0):
    """Feed ``frames`` to an Intake; return ``{name: readings or None, "order": [...],
    "counters": {...}}``."""
    intake = Intake(
        {
            "paired": ["54:48:E6:8F:80:A5", "C0:FF:EE:00:00:01"],
            "presence": False,
            "dedup_window_ms": 10000,
        },
        keys={_mac(SENSOR): BindKey(SENSOR_KEY)},
        repeat_cache=repeat_cache,
    )
    order = []
    outcome = {}
    outcome["order"] = order
    for name, address, rssi, payload, now in frames:
        order.append(name)
        out = intake.advertisement(_mac(address), rssi, binascii.unhexlify(payload), now)
        if out is None:
            outcome[name] = None
        else:
            readings = {}
            for r in out.readings:
                readings[r.metric] = r.value
            outcome[name] = readings
    counters = intake.counters()
    ordered = {}
    for key in sorted(counters):
        ordered[key] = counters[key]
    outcome["counters"] = ordered
    return outcome
