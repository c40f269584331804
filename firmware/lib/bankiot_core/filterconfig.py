"""The edge filters' configuration: one plain dict, checked against one table.

The cloud pushes this dict (JSON) to gateways; ``load_filter_config`` checks it and returns
the form the filters use. Every key is optional; a missing key takes its default. Unknown
keys, wrong types and values out of range raise ``ConfigError`` naming the key, what it must
be and what it got: a gateway never runs on a configuration it half understood.

========================  ===========  ==============================================
key                       default      meaning
========================  ===========  ==============================================
paired                    []           addresses (``"AA:BB:CC:DD:EE:FF"``) of paired
                                       devices: public or static random
irks                      {}           identity address -> Identity Resolving Key (32
                                       hex digits, most significant first as the Core
                                       spec writes it) for devices on private addresses
max_devices               64           devices tracked at once; the least recently
                                       heard is forgotten to make room (1..4096)
device_ttl_ms             600000       forget a device not heard for this long
rpa_cache_size            32           resolved private addresses remembered (1..1024)
dedup_window_ms           10000        a frame id heard again within this is dropped
dedup_depth               2            frame ids remembered per device (1..8)
deadband_default          0            forward a number when it moved by more than this
deadband                  see below    per metric deadband, overrides the default
heartbeat_default_ms      300000       forward a value anyway after this (0: never)
heartbeat_ms              see below    per metric heartbeat, overrides the default
event_metrics             []           metrics handled as events besides those with
                                       unit ``"event"``: never deadbanded, never repeated
max_metrics               12           metrics with deadband state per device (1..64)
rate_per_min              120          frames forwarded per device per minute (0: no
                                       limit), as a token bucket
rate_burst                20           bucket size in frames (1..1000)
presence                  true         emit presence enter/leave events
presence_devices          []           the devices whose presence is tracked (the
                                       wearables and beacons people carry); empty:
                                       every paired device
presence_enter_dbm        -70          enter when the smoothed RSSI reaches this
presence_leave_dbm        -80          leave when it falls below this (< enter)
presence_alpha_pct        25           weight of a new RSSI sample in the average (1..100)
presence_min_samples      2            samples needed before an enter (1..100)
presence_timeout_ms       20000        leave when not heard for this long
========================  ===========  ==============================================

Default deadbands: temperature 0.2, humidity 1, pressure 0.5, battery 1, voltage 0.05.
Default heartbeats: battery 3600000 (one hour). A ``deadband`` or ``heartbeat_ms`` map that
is given replaces the default map; metrics it does not name take the ``*_default`` value.
Durations are integer milliseconds from 0 (1 for the TTL and the presence timeout) to
``ticks.MAX_DURATION_MS`` (about 6.2 days).
"""

import binascii

from bankiot_core.address import mac_from_str
from bankiot_core.errors import ConfigError, DecodeError
from bankiot_core.ticks import MAX_DURATION_MS

# Kinds of value.
_INT = 0
_BOOL = 1
_NUMBER = 2
_NUMBER_MAP = 3
_DURATION_MAP = 4
_ADDRESSES = 5
_IRKS = 6
_NAMES = 7

# name: (kind, default, low, high) -- low/high only for _INT.
_SETTINGS = {
    "paired": (_ADDRESSES, (), 0, 0),
    "irks": (_IRKS, {}, 0, 0),
    "max_devices": (_INT, 64, 1, 4096),
    "device_ttl_ms": (_INT, 600000, 1, MAX_DURATION_MS),
    "rpa_cache_size": (_INT, 32, 1, 1024),
    "dedup_window_ms": (_INT, 10000, 0, MAX_DURATION_MS),
    "dedup_depth": (_INT, 2, 1, 8),
    "deadband_default": (_NUMBER, 0, 0, 0),
    "deadband": (
        _NUMBER_MAP,
        {"temperature": 0.2, "humidity": 1, "pressure": 0.5, "battery": 1, "voltage": 0.05},
        0,
        0,
    ),
    "heartbeat_default_ms": (_INT, 300000, 0, MAX_DURATION_MS),
    "heartbeat_ms": (_DURATION_MAP, {"battery": 3600000}, 0, 0),
    "event_metrics": (_NAMES, (), 0, 0),
    "max_metrics": (_INT, 12, 1, 64),
    "rate_per_min": (_INT, 120, 0, 60000),
    "rate_burst": (_INT, 20, 1, 1000),
    "presence": (_BOOL, True, 0, 0),
    "presence_devices": (_ADDRESSES, (), 0, 0),
    "presence_enter_dbm": (_INT, -70, -127, 20),
    "presence_leave_dbm": (_INT, -80, -127, 20),
    "presence_alpha_pct": (_INT, 25, 1, 100),
    "presence_min_samples": (_INT, 2, 1, 100),
    "presence_timeout_ms": (_INT, 20000, 1, MAX_DURATION_MS),
}


_ADDRESSES_MUST = "a list of addresses like AA:BB:CC:DD:EE:FF"
_IRKS_MUST = "a map of identity address (like AA:BB:CC:DD:EE:FF) to a 32-hex-digit IRK"


def defaults():
    """Return the default configuration as a new JSON-ready dict (what the table above says)."""
    out = {}
    for name in _SETTINGS:
        value = _SETTINGS[name][1]
        if isinstance(value, dict):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def _error(name, must, value):
    return ConfigError("filter setting %r must be %s, got %r" % (name, must, value))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    # value - value is 0 only for finite numbers (inf - inf and nan - nan are nan).
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value - value == 0


def _address(name, text, must):
    try:
        return mac_from_str(text)
    except DecodeError:
        raise _error(name, must, text) from None


def _irk(name, address, text):
    # The key is a secret: errors name the device, never echo the key.
    where = "filter setting %r, device %s:" % (name, address)
    if not isinstance(text, str) or len(text) != 32:
        raise ConfigError("%s the IRK must be 32 hex digits (value not shown)" % where)
    try:
        key = bytes(binascii.unhexlify(text))
    except (ValueError, TypeError):
        raise ConfigError("%s the IRK must be 32 hex digits (value not shown)" % where) from None
    if key == bytes(16):
        raise ConfigError("%s the IRK is all zeros, which is no key" % where)
    return key


def _check(name, kind, low, high, value):
    """Return ``value`` checked and converted to the form the filters use."""
    if kind == _INT:
        if not _is_int(value) or value < low or value > high:
            raise _error(name, "an integer from %d to %d" % (low, high), value)
        return value
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise _error(name, "true or false", value)
        return value
    if kind == _NUMBER:
        if not _is_number(value) or value < 0:
            raise _error(name, "a number >= 0", value)
        return value
    if kind in (_NUMBER_MAP, _DURATION_MAP):
        if kind == _NUMBER_MAP:
            each = "a number >= 0"
        else:
            each = "milliseconds from 0 to %d" % MAX_DURATION_MS
        must = "a map of metric name to " + each
        if not isinstance(value, dict):
            raise _error(name, must, value)
        out = {}
        for metric in value:
            v = value[metric]
            if not isinstance(metric, str) or not metric:
                raise _error(name, must, value)
            if kind == _NUMBER_MAP:
                ok = _is_number(v) and v >= 0
            else:
                ok = _is_int(v) and 0 <= v <= MAX_DURATION_MS
            if not ok:
                raise _error("%s.%s" % (name, metric), each, v)
            out[metric] = v
        return out
    if kind == _ADDRESSES:
        if not isinstance(value, (list, tuple)):
            raise _error(name, _ADDRESSES_MUST, value)
        return tuple(_address(name, text, _ADDRESSES_MUST) for text in value)
    if kind == _IRKS:
        if not isinstance(value, dict):
            raise _error(name, _IRKS_MUST, value)
        return tuple(
            (_address(name, text, _IRKS_MUST), _irk(name, text, value[text])) for text in value
        )
    # _NAMES
    if not isinstance(value, (list, tuple)):
        raise _error(name, "a list of metric names", value)
    for metric in value:
        if not isinstance(metric, str) or not metric:
            raise _error(name, "a list of metric names", value)
    return tuple(value)


def load_filter_config(config=None):
    """Check a filter configuration and return it complete, in the filters' own form.

    ``config`` is a dict with any of the keys in the table above (None means all defaults).
    The result has every key: addresses become 6-byte ``bytes`` (``paired`` a tuple of them,
    ``irks`` a tuple of ``(identity address, 16-byte IRK)`` pairs), maps are new dicts, lists
    tuples. Raises ``ConfigError`` for unknown keys, wrong types and values out of range.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("filter configuration must be a map of settings, got %r" % (config,))
    for name in config:
        if name not in _SETTINGS:
            raise ConfigError(
                "unknown filter setting %r (known: %s)" % (name, ", ".join(sorted(_SETTINGS)))
            )
    out = {}
    for name in _SETTINGS:
        kind, default, low, high = _SETTINGS[name]
        out[name] = _check(name, kind, low, high, config.get(name, default))
    if out["presence_enter_dbm"] <= out["presence_leave_dbm"]:
        raise ConfigError(
            "filter setting 'presence_enter_dbm' (%d) must be above 'presence_leave_dbm' (%d):"
            " the gap is the hysteresis" % (out["presence_enter_dbm"], out["presence_leave_dbm"])
        )
    return out
