"""Batches: the CBOR payload (RFC 8949) a gateway seals and sends. This docstring is the wire
contract; the cloud opens batches with this same module.

Format version 1, in CDDL (RFC 8610)::

    batch   = [version: 1, clock: 0 / 1, base: uint, + group]
    group   = device / gateway
    device  = [address: bstr .size 6, + record]      ; a device's identity address, once
    gateway = [null, + (health / result / running / kiosk)]  ; the gateway's own records
    record  = [dt: uint, + (key, value)]             ; one frame's readings, dt ms after base
    health  = [dt: uint, + (counter, count: int / null)]
    result  = [dt: uint, -3, id: uint .le 1099511627775, status: 0..3,
               detail: tstr .size (0..200)]          ; a downlink command's outcome
    running = [dt: uint, -4, software: tstr .size (1..32),
               config: uint .le 1099511627775 / null] ; what the gateway runs
    kiosk   = [dt: uint, -5, kind: 0..6, id: uint .le 1099511627775,
               wearable: bstr .size 6 / null, detail: tstr .size (0..64)]
                                     ; a customer's action at a branch kiosk
    key     = uint                  ; METRICS[key]: (metric, unit)
            / [uint, uint]          ; METRICS[code] with "_n" appended: [2, 1] is "temperature_1"
            / [tstr, tstr]          ; any other metric and unit, spelled out
            / -1 / -2               ; a presence "enter" / "leave"; value [rssi: int, confidence]
    counter = uint / tstr           ; COUNTER_NAMES[counter], or the name spelled out
    value   = int / float / tstr / bstr / bool / null / [* scalar]
    scalar  = int / float / tstr / bstr / bool / null

- ``clock`` says what times are: 0 (``CLOCK_TICKS``) the gateway's millisecond ticks, which
  only order and space the records of one boot, and ``base`` is such a tick; 1
  (``CLOCK_UNIX_MS``) time since the Unix epoch (UTC), once the gateway knows it, and
  ``base`` is in whole seconds (five bytes where milliseconds would take nine). A record
  happened ``dt`` ms after the base: at ``base + dt`` ms (clock 0) or ``base * 1000 + dt``
  ms since the epoch (clock 1). ``dt`` is at most ``MAX_DURATION_MS`` (``ticks``).
- Groups: each device address appears in one group only, the gateway group (null) at most
  once; each group has at least one record and a batch at least one group. A group's records
  keep the order they were added in (the order they happened, from a ``batcher``).
- ``METRICS`` rows are ``(metric, unit, decimals)``; rows are only ever appended, never
  reordered or changed, so every gateway and the cloud agree on a code. The first 24 codes
  take one byte on the wire: they are the readings a branch sends most. A metric whose row
  has ``decimals`` d > 0 carries an exact decimal as an int mantissa: the value is
  ``mantissa / 10**d`` (21.37 °C is 2137, three bytes where a double takes nine). A float
  that is not such an exact decimal goes as a float, which always means itself; an int of
  such a metric goes as ``int * 10**d`` and comes back a float. Numbers in a list, and the
  values of metrics without a row, are never scaled. Floats use the shortest of half, single
  and double precision that holds them exactly (``cbor``).
- Ints are within CBOR's 64-bit ranges (no bignums); a list holds scalars only; maps and
  tags appear nowhere. ``rssi`` is -127..20 dBm and ``confidence`` 0..100, as
  ``presence.PresenceEvent`` defines them.
- The gateway's group tells its records apart by the second element: a counter (uint or
  tstr) starts a health record, -3 a result, -4 a running record (a negative number was
  never a counter, so a decoder that predates them refuses them: no old data changes
  meaning). ``result`` reports what became of downlink command ``id`` (``downlink``):
  ``status`` is ``STATUS_DONE`` (0), ``STATUS_FAILED`` (1), ``STATUS_REFUSED`` (2: unknown
  command or bad arguments) or ``STATUS_ACCEPTED`` (3: under way, such as an update
  downloading; a later result follows under the same id), ``detail`` a short UTF-8 text
  (``clip_detail`` cuts one to size). ``running`` says what the gateway runs: its
  ``software`` version and the revision of the downlink CONFIG it runs (null: none yet),
  sent at start and after every change. ``kiosk`` is what a customer did at the
  gateway's kiosk screen (``edge.kiosk``): ``kind`` ``KIOSK_CHECKIN`` (0, checked in with
  the paired ``wearable``, its identity address), ``KIOSK_TICKET`` (1, took queue ticket
  ``detail`` such as "A042", for the checked-in wearable or null for a walk-in) or
  ``KIOSK_REQUEST`` (2, asked for service ``detail``) or ``KIOSK_PAIRING`` (3, showed the
  wearable pairing code ``detail``, 8 characters of Crockford base32 such as "7KQ2M9XD", to
  a customer who asked; no ``wearable``: the customer enters the code on the bank's
  customer page, signed in, with the wearable's details), or what became of an offer
  (``downlink`` OFFERS) the checked-in ``wearable``'s customer asked to see:
  ``KIOSK_OFFER_SHOWN`` (4, on screen), ``KIOSK_OFFER_ACCEPTED`` (5) or
  ``KIOSK_OFFER_DECLINED`` (6), ``detail`` the offer's id in decimal ("17"); ``id``
  numbers the kiosk's events (unique per gateway, never reused), so the cloud can tell one
  event from another however often a batch is resent.

``decode_batch`` accepts exactly this and raises ``DecodeError`` (with a one-line message)
for anything else, including trailing bytes and unknown versions. ``encode_batch`` builds a
batch from the records ``decode_batch`` returns; ``BatchBuilder`` is the incremental form the
two-lane ``batcher`` fills, and knows the exact encoded size as it grows.

Decoded records, in group order then record order (a record's readings and presence events
in wire order): ``BatchReading(address, at_ms, metric, value, unit)``,
``presence.PresenceEvent(kind, address, at_ms, rssi, confidence)``,
``Health(at_ms, counters)`` (a dict of name -> int or None),
``CommandResult(at_ms, id, status, detail)``, ``Running(at_ms, software,
config_revision)`` and ``KioskEvent(at_ms, kind, id, wearable, detail)`` (the gateway's
records, in their group's order).
"""

from collections import namedtuple

from bankiot_core._compat import const
from bankiot_core.cbor import dumps, loads
from bankiot_core.errors import DecodeError, LocalError
from bankiot_core.presence import ENTER, LEAVE, PresenceEvent
from bankiot_core.ticks import MAX_DURATION_MS

FORMAT_VERSION = const(1)
CLOCK_TICKS = const(0)
CLOCK_UNIX_MS = const(1)
KEY_ENTER = const(-1)
KEY_LEAVE = const(-2)
KEY_RESULT = const(-3)
KEY_RUNNING = const(-4)
KEY_KIOSK = const(-5)

STATUS_DONE = const(0)
STATUS_FAILED = const(1)
STATUS_REFUSED = const(2)
STATUS_ACCEPTED = const(3)
STATUS_NAMES = ("done", "failed", "refused", "accepted")  # by code
MAX_DETAIL_BYTES = const(200)
MAX_KIOSK_DETAIL_BYTES = const(64)
MAX_SOFTWARE_BYTES = const(32)
MAX_ID = 0xFFFFFFFFFF  # 2**40 - 1, downlink.MAX_SEQ (not const(): no small int on boards)

BatchReading = namedtuple("BatchReading", ("address", "at_ms", "metric", "value", "unit"))
"""One reading of a device at ``at_ms`` (the batch's clock)."""

Health = namedtuple("Health", ("at_ms", "counters"))
"""The gateway's counters at ``at_ms``: a dict of name -> int (or None: not applicable)."""

CommandResult = namedtuple("CommandResult", ("at_ms", "id", "status", "detail"))
"""What became of downlink command ``id`` at ``at_ms``: ``status`` (a ``STATUS_*`` code)
and ``detail`` (text, at most ``MAX_DETAIL_BYTES`` of UTF-8)."""

Running = namedtuple("Running", ("at_ms", "software", "config_revision"))
"""What the gateway runs at ``at_ms``: its ``software`` version (text) and the downlink
CONFIG revision (int, or None before its first configuration)."""

KIOSK_CHECKIN = const(0)
KIOSK_TICKET = const(1)
KIOSK_REQUEST = const(2)
KIOSK_PAIRING = const(3)
KIOSK_OFFER_SHOWN = const(4)
KIOSK_OFFER_ACCEPTED = const(5)
KIOSK_OFFER_DECLINED = const(6)
KIOSK_KINDS = (
    "checkin",
    "ticket",
    "request",
    "pairing",
    "offer_shown",
    "offer_accepted",
    "offer_declined",
)

KioskEvent = namedtuple("KioskEvent", ("at_ms", "kind", "id", "wearable", "detail"))
"""A customer's action at the gateway's kiosk at ``at_ms``: ``kind`` (a ``KIOSK_*`` code),
the kiosk's event number ``id``, the ``wearable`` it concerns (6-byte identity address, or
None) and ``detail`` (the ticket, the service, the pairing code or the offer's id: text of at most
``MAX_KIOSK_DETAIL_BYTES``)."""

Batch = namedtuple("Batch", ("clock", "base_ms", "records"))
"""What ``decode_batch`` returns: the clock of the times, the time base in ms (for clock 1,
``base * 1000``) and the records, whose ``at_ms`` are ``base_ms + dt``."""

# (metric, unit, decimals). Append only: a code is its index, forever.
METRICS = (
    # 0..23: one byte on the wire.
    ("temperature", "°C", 2),
    ("humidity", "%", 2),
    ("battery", "%", 0),
    ("voltage", "V", 3),
    ("heart_rate", "bpm", 0),
    ("rr_intervals", "ms", 0),
    ("sensor_contact", "", 0),
    ("energy_expended", "kJ", 0),
    ("button", "event", 0),
    ("pressure", "hPa", 2),
    ("illuminance", "lx", 2),
    ("co2", "ppm", 0),
    ("packet_id", "", 0),
    ("motion", "", 0),
    ("occupancy", "", 0),
    ("uuid", "", 0),
    ("major", "", 0),
    ("minor", "", 0),
    ("measured_power", "dBm", 0),
    ("tx_power", "dBm", 0),
    ("namespace", "", 0),
    ("instance", "", 0),
    ("advertisement_count", "", 0),
    ("uptime", "s", 1),
    # 24..: the rest of BTHome v2 (bthome.OBJECTS), in object id order.
    ("mass", "kg", 2),
    ("mass", "lb", 2),
    ("dewpoint", "°C", 2),
    ("count", "", 0),
    ("energy", "kWh", 3),
    ("power", "W", 2),
    ("pm25", "µg/m³", 0),
    ("pm10", "µg/m³", 0),
    ("generic_boolean", "", 0),
    ("power_on", "", 0),
    ("opening", "", 0),
    ("tvoc", "µg/m³", 0),
    ("moisture", "%", 2),
    ("battery_low", "", 0),
    ("battery_charging", "", 0),
    ("carbon_monoxide", "", 0),
    ("cold", "", 0),
    ("connectivity", "", 0),
    ("door", "", 0),
    ("garage_door", "", 0),
    ("gas_detected", "", 0),
    ("heat", "", 0),
    ("light", "", 0),
    ("lock", "", 0),
    ("moisture_detected", "", 0),
    ("moving", "", 0),
    ("plug", "", 0),
    ("presence", "", 0),
    ("problem", "", 0),
    ("running", "", 0),
    ("safety", "", 0),
    ("smoke", "", 0),
    ("sound", "", 0),
    ("tamper", "", 0),
    ("vibration", "", 0),
    ("window", "", 0),
    ("command", "event", 0),
    ("command_args", "event", 0),
    ("dimmer", "event", 0),
    ("dimmer_steps", "event", 0),
    ("rotation", "°", 1),
    ("distance", "mm", 0),
    ("distance", "m", 1),
    ("duration", "s", 3),
    ("current", "A", 3),
    ("speed", "m/s", 2),
    ("uv_index", "", 1),
    ("volume", "L", 3),
    ("volume", "mL", 0),
    ("volume_flow_rate", "m³/h", 3),
    ("gas", "m³", 3),
    ("water", "L", 3),
    ("timestamp", "s", 0),
    ("acceleration", "m/s²", 3),
    ("gyroscope", "°/s", 3),
    ("text", "", 0),
    ("raw", "", 0),
    ("volume_storage", "L", 3),
    ("conductivity", "µS/cm", 0),
    ("direction", "°", 2),
    ("precipitation", "mm", 1),
    ("channel", "", 0),
    ("rotational_speed", "rpm", 0),
    ("light_level", "", 0),
    ("settings_revision", "", 0),
    ("device_type_id", "", 0),
    ("firmware_version", "", 0),
)

# The counters gateways report (intake, filters, batcher, queue). Append only, like METRICS.
COUNTER_NAMES = (
    "frames_heard",
    "frames_unsupported",
    "frames_malformed",
    "frames_unauthenticated",
    "frames_replayed",
    "frames_repeated",
    "frames_in",
    "frames_not_paired",
    "frames_duplicate",
    "frames_rate_limited",
    "readings_unchanged",
    "readings_repeated",
    "readings_out",
    "events_out",
    "devices_evicted",
    "devices_expired",
    "devices_unpaired",
    "rpa_resolved",
    "batches_urgent",
    "batches_routine",
    "entries_too_large",
    "depth",
    "bytes",
    "in_flight",
    "sent",
    "resent",
    "acked",
    "acks_stale",
    "dropped_batches",
    "dropped_bytes",
    "lost_first",
    "lost_last",
)

_POW10 = (1, 10, 100, 1000)
_U64 = 1 << 64  # not const(): larger than a small int on the boards
_MAX_SCALED = 1e15  # a mantissa beyond this is no reading: send the float
_DIGITS = "0123456789"


def _metric_index():
    """``{name: first code}`` and, for names with several units, ``{name: (codes ...)}``."""
    first = {}
    more = {}
    for code in range(len(METRICS)):
        name = METRICS[code][0]
        if name in first:
            more[name] = more.get(name, (first[name],)) + (code,)  # noqa: RUF005 (MicroPython)
        else:
            first[name] = code
    return first, more


def _positions(names):
    """``{name: index}``."""
    out = {}
    for i in range(len(names)):
        out[names[i]] = i
    return out


_METRIC_CODES, _METRIC_UNITS = _metric_index()
_COUNTER_CODES = _positions(COUNTER_NAMES)


def _row(metric, unit):
    """The METRICS code of ``(metric, unit)``, or -1."""
    code = _METRIC_CODES.get(metric)
    if code is None:
        return -1
    if METRICS[code][1] == unit:
        return code
    for code in _METRIC_UNITS.get(metric, ()):  # mass in kg and lb, distance, volume
        if METRICS[code][1] == unit:
            return code
    return -1


def _suffix(digits):
    """The n of a ``_n`` suffix written the way ``"%d" % n`` writes it, or -1."""
    if not digits or len(digits) > 9 or digits[0] == "0":
        return -1
    for c in digits:
        if c not in _DIGITS:
            return -1
    return int(digits)


def metric_key(metric, unit):
    """The wire key of a reading and the scale of its values: ``(key, 10**decimals)``."""
    if type(metric) is not str or type(unit) is not str:
        raise LocalError("a metric and its unit are text, got %r and %r" % (metric, unit))
    code = _row(metric, unit)
    if code >= 0:
        return code, _POW10[METRICS[code][2]]
    base, sep, digits = metric.rpartition("_")
    if sep:
        n = _suffix(digits)
        if n > 0:
            code = _row(base, unit)
            if code >= 0:
                return [code, n], _POW10[METRICS[code][2]]
    return [metric, unit], 1


def _scalar(value):
    """``value`` as the wire holds it when it is in a list, or LocalError."""
    t = type(value)
    if t is int:
        if not -_U64 <= value < _U64:
            raise LocalError("int %d is beyond CBOR's 64-bit range" % value)
        return value
    if t is float or t is str or t is bytes or t is bool or value is None:
        return value
    if t is bytearray or t is memoryview:
        return bytes(value)
    raise LocalError("cannot put a %s in a batch" % t.__name__)


def wire_value(value, scale):
    """``value`` as the wire holds it for a key of ``scale`` (see the module docstring)."""
    t = type(value)
    if t is float:
        if scale != 1:
            x = value * scale
            if -_MAX_SCALED < x < _MAX_SCALED:
                m = round(x)
                # Exact only: the receiver computes m / scale and must get the same float.
                # Zero keeps its sign as a float (-0.0 is not 0).
                if m / scale == value and (m or str(value)[0] != "-"):
                    return m
        return value
    if t is int:
        return _scalar(value * scale)
    if t is list or t is tuple:
        return [_scalar(item) for item in value]
    return _scalar(value)


def reading_pairs(readings, out):
    """Append the ``key, value`` pairs of ``readings`` (``Reading``-shaped) to ``out``."""
    for reading in readings:
        key, scale = metric_key(reading[0], reading[2])
        out.append(key)
        out.append(wire_value(reading[1], scale))
    return out


def event_pair(event, out):
    """Append the ``key, value`` pair of a ``PresenceEvent`` to ``out``."""
    kind = event[0]
    if kind == ENTER:
        out.append(KEY_ENTER)
    elif kind == LEAVE:
        out.append(KEY_LEAVE)
    else:
        raise LocalError("a presence event is enter or leave, got %r" % (kind,))
    out.append([event[3], event[4]])
    return out


def counter_pairs(counters, out):
    """Append the ``counter, count`` pairs of a dict of counters to ``out``, by name (the
    same bytes on both interpreters: MicroPython's dicts have no order)."""
    for name in counters:
        if type(name) is not str:
            raise LocalError("a counter name is text, got %r" % (name,))
    for name in sorted(counters):
        count = counters[name]
        if count is not None and type(count) is not int:
            raise LocalError("counter %s is an int or None, got %r" % (name, count))
        code = _COUNTER_CODES.get(name)
        out.append(name if code is None else code)
        out.append(count if count is None else _scalar(count))
    return out


def _utf8_len(text):
    try:
        return len(text.encode("utf-8"))
    except UnicodeError:
        raise LocalError("text %r cannot be UTF-8 (a lone surrogate?)" % (text,)) from None


def result_fields(command_id, status, detail, out):
    """Append a result's ``-3, id, status, detail`` to ``out`` (a wire record ``[dt]``).
    LocalError for an id beyond 2**40-1, an unknown status or a detail over 200 bytes."""
    if type(command_id) is not int or not 0 <= command_id <= MAX_ID:
        raise LocalError("a command id is an int in 0..2**40-1, got %r" % (command_id,))
    if type(status) is not int or not 0 <= status < len(STATUS_NAMES):
        raise LocalError("a result status is 0..%d, got %r" % (len(STATUS_NAMES) - 1, status))
    if type(detail) is not str or _utf8_len(detail) > MAX_DETAIL_BYTES:
        raise LocalError("a result detail is text of at most %d bytes" % MAX_DETAIL_BYTES)
    out.append(KEY_RESULT)
    out.append(command_id)
    out.append(status)
    out.append(detail)
    return out


def running_fields(software, config_revision, out):
    """Append a running record's ``-4, software, config`` to ``out`` (a wire record
    ``[dt]``). LocalError for software not 1..32 bytes of text, or a revision that is
    neither None nor an int in 0..2**40-1."""
    if type(software) is not str or not 0 < _utf8_len(software) <= MAX_SOFTWARE_BYTES:
        raise LocalError(
            "a software version is text of 1 to %d bytes, got %r" % (MAX_SOFTWARE_BYTES, software)
        )
    if config_revision is not None and (
        type(config_revision) is not int or not 0 <= config_revision <= MAX_ID
    ):
        raise LocalError("a config revision is None or 0..2**40-1, got %r" % (config_revision,))
    out.append(KEY_RUNNING)
    out.append(software)
    out.append(config_revision)
    return out


def kiosk_fields(kind, event_id, wearable, detail, out):
    """Append a kiosk record's ``-5, kind, id, wearable, detail`` to ``out`` (a wire record
    ``[dt]``). LocalError for an unknown kind, an id beyond 2**40-1, a wearable that is
    neither None nor 6 bytes, or a detail over 64 bytes."""
    if type(kind) is not int or not 0 <= kind < len(KIOSK_KINDS):
        raise LocalError("a kiosk event kind is 0..%d, got %r" % (len(KIOSK_KINDS) - 1, kind))
    if type(event_id) is not int or not 0 <= event_id <= MAX_ID:
        raise LocalError("a kiosk event id is an int in 0..2**40-1, got %r" % (event_id,))
    if wearable is not None and (type(wearable) is not bytes or len(wearable) != 6):
        raise LocalError("a kiosk event's wearable is None or 6 bytes, got %r" % (wearable,))
    if type(detail) is not str or _utf8_len(detail) > MAX_KIOSK_DETAIL_BYTES:
        limit = MAX_KIOSK_DETAIL_BYTES
        raise LocalError("a kiosk event detail is text of at most %d bytes" % limit)
    out.append(KEY_KIOSK)
    out.append(kind)
    out.append(event_id)
    out.append(wearable)
    out.append(detail)
    return out


def clip_detail(text):
    """``text`` cut to at most ``MAX_DETAIL_BYTES`` of UTF-8 on a character boundary: for
    a result's detail taken from an error message of unknown length."""
    if type(text) is not str:
        raise LocalError("a detail is text, got %r" % (text,))
    raw = text.encode("utf-8")
    if len(raw) <= MAX_DETAIL_BYTES:
        return text
    end = MAX_DETAIL_BYTES
    while raw[end] & 0xC0 == 0x80:  # a continuation byte: the character started earlier
        end -= 1
    return raw[:end].decode("utf-8")


def _head_len(n):
    """Bytes of a CBOR head whose argument is ``n`` (RFC 8949 3: 1, 2, 3, 5 or 9)."""
    if n < 24:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    if n < 0x100000000:
        return 5
    return 9


def record_size(record):
    """Encoded size of a wire record (a list)."""
    return len(dumps(record))


def health_bound(names):
    """The largest encoded size of a health record holding the counters ``names`` (each
    an int within 64 bits, or None) at any ``dt`` up to ``MAX_DURATION_MS``: the room a
    batch keeps for one."""
    size = _head_len(1 + 2 * len(names)) + _head_len(MAX_DURATION_MS)
    for name in names:
        code = _COUNTER_CODES.get(name)
        size += len(dumps(name if code is None else code)) + 9  # a value's head: 9 at most
    return size


class BatchBuilder:
    """One batch being filled: groups in order of first appearance, and its exact size.

    ``clock`` is ``CLOCK_TICKS`` or ``CLOCK_UNIX_MS``, ``base_ms`` the time records count
    from (for ``CLOCK_UNIX_MS`` a whole second: a multiple of 1000).
    ``add(address, record, size, entries)`` appends a wire record (``[dt, key, value ...]``,
    built with ``reading_pairs``/``event_pair``/``counter_pairs``, or ``[dt, -3, ...]`` and
    ``[dt, -4, ...]`` built with ``result_fields``/``running_fields``) to the group of
    ``address`` (6 bytes, or None for the gateway's own records); ``size`` is its
    ``record_size``; ``entries`` what it counts towards a batch's limit. ``cost`` says how
    many bytes adding it would take; ``size`` is always ``len(payload())``.
    """

    def __init__(self, clock, base_ms):
        if clock != CLOCK_TICKS and clock != CLOCK_UNIX_MS:
            raise LocalError("clock is 0 (ticks) or 1 (Unix ms), got %r" % (clock,))
        if type(base_ms) is not int or not 0 <= base_ms < _U64:
            raise LocalError("a batch's base time is an int in 0..2**64-1, got %r" % (base_ms,))
        base = base_ms
        if clock == CLOCK_UNIX_MS:
            if base_ms % 1000:
                raise LocalError("a Unix base time is a whole second, got %d ms" % base_ms)
            base = base_ms // 1000
        self.clock = clock
        self.base_ms = base_ms
        self.entries = 0
        self.size = 3 + _head_len(base)  # array head (1), version, clock, base
        self._base = base
        self._groups = []
        self._by_address = {}

    def cost(self, address, size):
        """Bytes that adding a record of ``size`` bytes to ``address``'s group would add."""
        group = self._by_address.get(address)
        if group is None:
            n = len(self._groups) + 3
            # The batch array grows by one; the new group: its head, the address, the record.
            return _head_len(n + 1) - _head_len(n) + 1 + (1 if address is None else 7) + size
        n = len(group)
        return _head_len(n + 1) - _head_len(n) + size

    def add(self, address, record, size, entries):
        """Append ``record`` to the group of ``address``."""
        if address is not None and (type(address) is not bytes or len(address) != 6):
            raise LocalError("a device address is 6 bytes, got %r" % (address,))
        self.size += self.cost(address, size)
        self.entries += entries
        group = self._by_address.get(address)
        if group is None:
            group = [address]
            self._by_address[address] = group
            self._groups.append(group)
        group.append(record)

    def payload(self):
        """The batch's CBOR bytes."""
        if not self._groups:
            raise LocalError("an empty batch has no payload")
        top = [FORMAT_VERSION, self.clock, self._base]
        top.extend(self._groups)
        return dumps(top)


def encode_batch(records, clock=CLOCK_TICKS, base_ms=None):
    """Encode ``BatchReading``, ``PresenceEvent``, ``Health``, ``CommandResult``,
    ``Running`` and ``KioskEvent`` records as a batch (bytes).

    ``base_ms`` defaults to the earliest ``at_ms`` (for ``CLOCK_UNIX_MS``, rounded down to a
    whole second); every record must be within ``MAX_DURATION_MS`` after it. Readings and
    presence events of one device at one time share a wire record when they follow each other
    in that device's records; each gateway record (health, result, running) is a record of
    its own. ``decode_batch`` gives the records back grouped by device (in order of first
    appearance, the gateway's records where the first of them appears).
    """
    if not records:
        raise LocalError("a batch needs at least one record")
    if base_ms is None:
        base_ms = min(_time_of(record) for record in records)
        if clock == CLOCK_UNIX_MS:
            base_ms -= base_ms % 1000
    builder = BatchBuilder(clock, base_ms)
    last = {}  # address -> [at_ms, wire record]: the device's latest, still open for merging
    pending = []  # (address, wire record, entries) in order
    for record in records:
        at = _time_of(record)
        dt = at - base_ms
        if not 0 <= dt <= MAX_DURATION_MS:
            raise LocalError(
                "record at %d is not within %d ms after the base %d"
                % (at, MAX_DURATION_MS, base_ms)
            )
        t = type(record)
        if t is Health:
            if not record[1]:
                raise LocalError("a health record needs at least one counter")
            pending.append((None, counter_pairs(record[1], [dt]), 1))
            continue
        if t is CommandResult:
            pending.append((None, result_fields(record[1], record[2], record[3], [dt]), 1))
            continue
        if t is Running:
            pending.append((None, running_fields(record[1], record[2], [dt]), 1))
            continue
        if t is KioskEvent:
            fields = kiosk_fields(record[1], record[2], record[3], record[4], [dt])
            pending.append((None, fields, 1))
            continue
        address = record[0] if t is BatchReading else record[1]
        open_record = last.get(address)
        if open_record is not None and open_record[0] == at:
            wire = open_record[1]
        else:
            wire = [dt]
            last[address] = [at, wire]
            pending.append((address, wire, 1))
        if t is BatchReading:
            key, scale = metric_key(record[2], record[4])
            wire.append(key)
            wire.append(wire_value(record[3], scale))
        else:
            event_pair(record, wire)
    for address, wire, entries in pending:
        builder.add(address, wire, record_size(wire), entries)
    return builder.payload()


def _time_of(record):
    t = type(record)
    if t is BatchReading:
        return record[1]
    if t is PresenceEvent:
        return record[2]
    if t is Health or t is CommandResult or t is Running or t is KioskEvent:
        return record[0]
    raise LocalError("cannot batch a %s" % t.__name__)


# ---- decoding --------------------------------------------------------------------------


def _error(what, where):
    """A DecodeError for ``what`` at ``where``: a group index, or (group, record)."""
    if type(where) is int:
        return DecodeError("batch %s (group %d)" % (what, where))
    return DecodeError("batch %s (group %d record %d)" % (what, where[0], where[1]))


def _uint(value, limit):
    return type(value) is int and 0 <= value <= limit


def _decode_scalar(value, where):
    t = type(value)
    if t is int:
        if not -_U64 <= value < _U64:
            raise _error("int beyond 64 bits", where)
        return value
    if t is float or t is str or t is bytes or t is bool or value is None:
        return value
    raise _error("value of type %s" % t.__name__, where)


def _decode_value(value, scale, where):
    if type(value) is list:
        return [_decode_scalar(item, where) for item in value]
    value = _decode_scalar(value, where)
    if scale != 1 and type(value) is int:
        return value / scale
    return value


def _decode_key(key, where):
    """``(metric, unit, scale)`` of a reading key; None for a presence key."""
    if type(key) is int:
        if KEY_LEAVE <= key <= KEY_ENTER:
            return None
        if 0 <= key < len(METRICS):
            row = METRICS[key]
            return row[0], row[1], _POW10[row[2]]
    elif type(key) is list and len(key) == 2:
        a = key[0]
        b = key[1]
        if type(a) is str and type(b) is str:
            return a, b, 1
        if type(a) is int and 0 <= a < len(METRICS) and _uint(b, 999999999) and b > 0:
            row = METRICS[a]
            return "%s_%d" % (row[0], b), row[1], _POW10[row[2]]
    raise _error("has an unknown key %r" % (key,), where)


def _decode_presence(key, value, address, at, where):
    if type(value) is not list or len(value) != 2:
        raise _error("presence value is not [rssi, confidence]", where)
    rssi = value[0]
    confidence = value[1]
    if type(rssi) is not int or not -127 <= rssi <= 20:
        raise _error("presence rssi %r is not -127..20" % (rssi,), where)
    if not _uint(confidence, 100):
        raise _error("presence confidence %r is not 0..100" % (confidence,), where)
    kind = ENTER if key == KEY_ENTER else LEAVE
    return PresenceEvent(kind, address, at, rssi, confidence)


def _decode_health(record, at, where):
    counters = {}
    for i in range(1, len(record), 2):
        name = record[i]
        if type(name) is int:
            if not 0 <= name < len(COUNTER_NAMES):
                raise _error("has an unknown counter code %d" % name, where)
            name = COUNTER_NAMES[name]
        elif type(name) is not str:
            raise _error("counter name of type %s" % type(name).__name__, where)
        if name in counters:
            raise _error("has counter %s twice" % name, where)
        count = record[i + 1]
        if count is not None:
            if type(count) is not int:
                raise _error("counter %s is not an int" % name, where)
            count = _decode_scalar(count, where)
        counters[name] = count
    return Health(at, counters)


def _text(value, low, high, what, where):
    if type(value) is not str:
        raise _error("%s is not text" % what, where)
    size = len(value.encode("utf-8"))  # valid UTF-8: the CBOR decoder checked it
    if not low <= size <= high:
        raise _error("%s is not %d..%d bytes" % (what, low, high), where)
    return value


def _decode_gateway(record, at, where):
    """A gateway record: health, or by its negative second element a result, running or
    kiosk record."""
    key = record[1]
    if type(key) is not int or key >= 0:
        if not len(record) & 1:
            raise _error("record is not [dt, + (counter, count)]", where)
        return _decode_health(record, at, where)
    if key == KEY_RESULT:
        if len(record) != 5:
            raise _error("result is not [dt, -3, id, status, detail]", where)
        if not _uint(record[2], MAX_ID):
            raise _error("result id %r is not 0..2**40-1" % (record[2],), where)
        if not _uint(record[3], len(STATUS_NAMES) - 1):
            raise _error("result status %r is unknown" % (record[3],), where)
        detail = _text(record[4], 0, MAX_DETAIL_BYTES, "result detail", where)
        return CommandResult(at, record[2], record[3], detail)
    if key == KEY_RUNNING:
        if len(record) != 4:
            raise _error("running is not [dt, -4, software, config]", where)
        software = _text(record[2], 1, MAX_SOFTWARE_BYTES, "running software", where)
        revision = record[3]
        if revision is not None and not _uint(revision, MAX_ID):
            raise _error("running config %r is not 0..2**40-1 or null" % (revision,), where)
        return Running(at, software, revision)
    if key == KEY_KIOSK:
        if len(record) != 6:
            raise _error("kiosk is not [dt, -5, kind, id, wearable, detail]", where)
        if not _uint(record[2], len(KIOSK_KINDS) - 1):
            raise _error("kiosk kind %r is unknown" % (record[2],), where)
        if not _uint(record[3], MAX_ID):
            raise _error("kiosk id %r is not 0..2**40-1" % (record[3],), where)
        wearable = record[4]
        if wearable is not None and (type(wearable) is not bytes or len(wearable) != 6):
            raise _error("kiosk wearable is not 6 bytes or null", where)
        detail = _text(record[5], 0, MAX_KIOSK_DETAIL_BYTES, "kiosk detail", where)
        return KioskEvent(at, record[2], record[3], wearable, detail)
    raise _error("has an unknown gateway record %d" % key, where)


def decode_batch(data):
    """Decode and validate a batch; return ``Batch(clock, base_ms, records)``.

    Raises DecodeError for anything that is not exactly the format above.
    """
    top = loads(data)
    if type(top) is not list or len(top) < 4:
        raise DecodeError("a batch is an array of version, clock, base and at least one group")
    if type(top[0]) is not int or top[0] != FORMAT_VERSION:
        raise DecodeError("batch format version %r is not supported" % (top[0],))
    clock = top[1]
    if type(clock) is not int or (clock != CLOCK_TICKS and clock != CLOCK_UNIX_MS):
        raise DecodeError("batch clock %r is not 0 or 1" % (clock,))
    base = top[2]
    if not _uint(base, _U64 - 1):
        raise DecodeError("batch base time %r is not a uint" % (base,))
    if clock == CLOCK_UNIX_MS:
        base *= 1000
    records = []
    seen = {}
    for g in range(3, len(top)):
        group = top[g]
        where = g - 3
        if type(group) is not list or len(group) < 2:
            raise _error("group is not an array of an address and records", where)
        address = group[0]
        if address is not None and (type(address) is not bytes or len(address) != 6):
            raise _error("address is not 6 bytes or null", where)
        if address in seen:
            raise _error("repeats an address", where)
        seen[address] = True
        for r in range(1, len(group)):
            record = group[r]
            where = (g - 3, r - 1)
            if type(record) is not list or len(record) < 3:
                raise _error("record is not [dt, + (key, value)]", where)
            if address is not None and not len(record) & 1:
                raise _error("record is not [dt, + (key, value)]", where)
            dt = record[0]
            if not _uint(dt, MAX_DURATION_MS):
                raise _error("dt %r is not 0..%d" % (dt, MAX_DURATION_MS), where)
            at = base + dt
            if address is None:
                records.append(_decode_gateway(record, at, where))
                continue
            for i in range(1, len(record), 2):
                key = record[i]
                meaning = _decode_key(key, where)
                if meaning is None:
                    records.append(_decode_presence(key, record[i + 1], address, at, where))
                else:
                    value = _decode_value(record[i + 1], meaning[2], where)
                    records.append(BatchReading(address, at, meaning[0], value, meaning[1]))
    return Batch(clock, base, records)
