"""A gateway's whole configuration: the settings a CONFIG downlink message carries.

The cloud keeps a desired configuration per gateway (``cloud.fleet``) and pushes it as one
flat map (``downlink.encode_config``); the gateway applies all of it or none of it. The
cloud checks a configuration with this same function before accepting it, so an operator
learns at once what a gateway would refuse.

The map holds the filter settings, named as in ``filterconfig`` (``paired``, ``irks``,
``deadband``, ...), and the gateway's own settings below. Every key is optional; a missing
key takes its default. Unknown keys, wrong types and out-of-range values raise
``ConfigError`` naming the key.

======================  ========  ====================================================
key                     default   meaning
======================  ========  ====================================================
uplink                  "mqtt"    the preferred uplink, ``"mqtt"`` or ``"coap"``; the
                                  gateway falls back to the other when it is down
batch_max_readings      64        a batch is sent when it holds this many (1..4096)
batch_max_bytes         960       ... or reaches this many bytes (32..65536)
batch_max_delay_ms      30000     ... or its oldest reading is this old
health_interval_ms      60000     a health record at least this often (1000..)
scan_interval_ms        100       BLE scan interval (2.5..10240 ms in the spec; 3..10240)
scan_window_ms          50        BLE scan window, at most the interval (the radio is
                                  shared with WiFi on an ESP32: keep it below it)
opening_hours           null      when the branch is open: a list of ``[weekday,
                                  open_min, close_min]`` in local time, weekday 0
                                  (Monday) to 6 (Sunday), minutes 0..1440 from
                                  midnight, open before close (a day may have several
                                  periods; one past midnight is two). Outside them
                                  a board scans with its idle window. null: always open
utc_offset_min          0         local time minus UTC in minutes (-720..840) for
                                  ``opening_hours``; the cloud sends a new
                                  configuration when daylight saving time changes it
health_in_every_batch   null      true: every batch carries the gateway's vital signs
                                  (``gateway.VITALS``: free heap, uptime, reset cause,
                                  queue depth, WiFi RSSI, and the loss and security
                                  counters the cloud follows) in a health record;
                                  null: the gateway's kind decides (boards yes, the
                                  Raspberry Pi no). Unless false, batch_max_bytes
                                  must be at least 512 (room for both)
======================  ========  ====================================================

``is_open(gateway, unix_s)`` says whether a time falls in the opening hours of the
gateway settings ``load_gateway_config`` returned (``opening_hours`` there is a tuple of
``(weekday, open_min, close_min)``, or None).
"""

from bankiot_core import batcher
from bankiot_core.errors import ConfigError
from bankiot_core.filterconfig import defaults, load_filter_config
from bankiot_core.ticks import MAX_DURATION_MS

UPLINKS = ("mqtt", "coap")
_FILTER_SETTINGS = tuple(defaults())
_OTHER_SETTINGS = ("uplink", "opening_hours", "health_in_every_batch")
_MAX_PERIODS = 28  # four a day
_DAY_MIN = 1440
_DAY_S = 86400
VITALS_MIN_BATCH_BYTES = 512  # batch_max_bytes with health_in_every_batch: room for both

# name: (default, low, high) for integer settings.
_INTS = {
    "batch_max_readings": (batcher.DEFAULT_MAX_READINGS, 1, 4096),
    "batch_max_bytes": (batcher.DEFAULT_MAX_BYTES, 32, 0x10000),
    "batch_max_delay_ms": (batcher.DEFAULT_MAX_DELAY_MS, 0, MAX_DURATION_MS - 1000),
    "health_interval_ms": (60000, 1000, MAX_DURATION_MS),
    "scan_interval_ms": (100, 3, 10240),
    "scan_window_ms": (50, 3, 10240),
    "utc_offset_min": (0, -720, 840),
}


def _int_setting(name, value):
    low = _INTS[name][1]
    high = _INTS[name][2]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(
            "gateway setting %r must be an integer from %d to %d, got %r" % (name, low, high, value)
        )
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _opening_hours(value):
    """``opening_hours`` checked: a tuple of ``(weekday, open_min, close_min)``, or None."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not 0 < len(value) <= _MAX_PERIODS:
        raise ConfigError(
            "gateway setting 'opening_hours' must be a list of 1 to %d [weekday, open_min, "
            "close_min] periods (or null: always open), got %r" % (_MAX_PERIODS, value)
        )
    periods = []
    for period in value:
        if (
            not isinstance(period, (list, tuple))
            or len(period) != 3
            or not _is_int(period[0])
            or not _is_int(period[1])
            or not _is_int(period[2])
            or not 0 <= period[0] <= 6
            or not 0 <= period[1] < period[2] <= _DAY_MIN
        ):
            raise ConfigError(
                "gateway setting 'opening_hours': a period is [weekday 0-6, open_min, "
                "close_min] with 0 <= open_min < close_min <= 1440, got %r" % (period,)
            )
        periods.append((period[0], period[1], period[2]))
    return tuple(periods)


def is_open(gateway, unix_s):
    """True if Unix time ``unix_s`` (seconds, UTC) falls within the opening hours of
    ``gateway`` (the settings ``load_gateway_config`` returned); True when it has none."""
    periods = gateway["opening_hours"]
    if periods is None:
        return True
    local = unix_s + gateway["utc_offset_min"] * 60
    day = local // _DAY_S
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday (Monday is 0)
    minute = (local - day * _DAY_S) // 60
    return any(p[0] == weekday and p[1] <= minute < p[2] for p in periods)


def known_settings():
    """Every key a gateway configuration may hold, sorted."""
    names = list(_INTS) + list(_FILTER_SETTINGS) + list(_OTHER_SETTINGS)
    names.sort()
    return names


def load_gateway_config(settings=None):
    """Check a gateway configuration; return ``(gateway, filters)``: the gateway's own
    settings complete (a dict) and the filter configuration as ``load_filter_config``
    returns it. Raises ``ConfigError`` for unknown keys, wrong types and values out of range.
    """
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ConfigError("a gateway configuration must be a map of settings, got %r" % (settings,))
    filters = {}
    gateway = {}
    for name in settings:
        if name in _FILTER_SETTINGS:
            filters[name] = settings[name]
        elif name not in _INTS and name not in _OTHER_SETTINGS:
            raise ConfigError(
                "unknown gateway setting %r (known: %s)" % (name, ", ".join(known_settings()))
            )
    uplink = settings.get("uplink", "mqtt")
    if uplink not in UPLINKS:
        raise ConfigError("gateway setting 'uplink' must be 'mqtt' or 'coap', got %r" % (uplink,))
    gateway["uplink"] = uplink
    for name in _INTS:
        gateway[name] = _int_setting(name, settings.get(name, _INTS[name][0]))
    if gateway["scan_window_ms"] > gateway["scan_interval_ms"]:
        raise ConfigError(
            "gateway setting 'scan_window_ms' (%d) must not exceed 'scan_interval_ms' (%d)"
            % (gateway["scan_window_ms"], gateway["scan_interval_ms"])
        )
    gateway["opening_hours"] = _opening_hours(settings.get("opening_hours"))
    vitals = settings.get("health_in_every_batch")
    if vitals is not None and not isinstance(vitals, bool):
        raise ConfigError(
            "gateway setting 'health_in_every_batch' must be true, false or null, got %r"
            % (vitals,)
        )
    if vitals is not False and gateway["batch_max_bytes"] < VITALS_MIN_BATCH_BYTES:
        raise ConfigError(
            "gateway setting 'batch_max_bytes' must be at least %d unless "
            "'health_in_every_batch' is false, got %d"
            % (VITALS_MIN_BATCH_BYTES, gateway["batch_max_bytes"])
        )
    gateway["health_in_every_batch"] = vitals
    return gateway, load_filter_config(filters)
