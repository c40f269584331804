"""BTHome v2 (service data UUID 0xFCD2), plain and encrypted: https://bthome.io/format/.

Service data layout (after the UUID): the device-info byte, then objects. Device info: bit 0
encrypted, bit 1 "MAC included" (six address bytes follow, reversed, as bthome-ble reads
it), bit 2 trigger based, bits 5-7 the version (must be 2). Each object is an id byte and a
fixed-length little-endian value; text (0x53) and raw (0x54) carry a length byte first, and
command (0x3B) a byte whose low 5 bits count the argument bytes after the opcode.

The catalogue ``OBJECTS`` is a table, id -> ``(metric, length, signed, mul, div, unit,
kind)``; the value is ``raw * mul / div`` (an int when both are 1). Adding an object adds a
row. Rows come from the bthome.io format page, checked against the tables of bthome-ble
3.25 (0x3B command, 0x60-0x65, 0x81 hold_release and the 0x5F factor 0.1 follow bthome-ble,
which is newer than the copy of the page we read). Metric names are BTHome's property names;
where BTHome gives a binary sensor and a measurement the same name, the binary one is renamed
(``battery_low``, ``power_on``, ``moisture_detected``, ``gas_detected``).

Decisions:

- An unknown object id stops decoding with DecodeError (its length is unknown). With
  ``partial_ok=True`` the readings before it are returned and ``FLAG_PARTIAL`` is set
  (BTHome's forward-compatibility rule: ids ascend, so older receivers keep the older ones).
- A truncated object, a binary sensor other than 0/1, text that is not UTF-8, an unknown
  button/dimmer/command event, a frame with no objects, or a version other than 2 raises
  DecodeError. Objects out of ascending order are accepted.
- A metric that occurs more than once in a frame gets ``_1``, ``_2`` ... in frame order (as
  bthome-ble names them); a ``None`` event (0x00) keeps its place in that count but produces
  no reading (``3A003A01`` is ``button_2: press``).
- Events are readings with unit ``EVENT_UNIT``: ``button`` -> ``"press"`` ...; ``dimmer`` ->
  ``"rotate_left"``/``"rotate_right"`` plus ``dimmer_steps`` (int); ``command`` -> the opcode
  name plus ``command_args`` (bytes, empty when there are none). The companion readings come
  in pairs so that repeated events keep matching numbers (``dimmer_2``, ``dimmer_steps_2``).
- Timestamp (0x50) is an int of seconds since the epoch; firmware version (0xF1, 0xF2) a
  str like ``"4.2.1.0"``; device type id (0xF0) an int.

Encryption (https://bthome.io/encryption/): AES-128-CCM with a 4-byte MIC and no associated
data over ``info, [mac], ciphertext, counter (4, LE), MIC (4)``; the nonce is the address in
display order (the included one if present), ``d2 fc``, the info byte and the counter bytes as
sent. Keys are per device (``BindKey``). A plaintext frame from a device that has a bind key
is an AuthenticationError (a downgrade), as is an encrypted frame from one without.

Replay protection (``BindKey``): the counter of an accepted frame must be greater than the
last accepted one. Equal means the device repeating its latest frame (or someone replaying
it): it is returned with ``FLAG_REPEAT`` so the duplicate filter drops it. Smaller is a
ReplayError, with one exception, the wrap: when the last counter is within ``WRAP_WINDOW``
of 2**32 and the new one is below ``WRAP_WINDOW``. A device that restarts its counter after a
battery change is rejected until an operator calls ``BindKey.reset()`` (re-pairing):
accepting any small counter, as bthome-ble does below 100, would let anyone replay a
device's first frames. The state only moves after the MIC has been checked, and a gateway
keeps it across reboots by saving ``last_counter`` and passing it back to ``BindKey``.
"""

import binascii

from bankiot_core._compat import const
from bankiot_core.address import mac_to_str
from bankiot_core.ccm import ccm_decrypt, ccm_encrypt
from bankiot_core.decoded import (
    EVENT_UNIT,
    FLAG_ENCRYPTED,
    FLAG_MAC_INCLUDED,
    FLAG_PARTIAL,
    FLAG_REPEAT,
    FLAG_TRIGGER_BASED,
    FORMAT_BTHOME,
    DecodedFrame,
)
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError, ReplayError
from bankiot_core.readings import Reading

UUID = const(0xFCD2)
WRAP_WINDOW = const(0x10000)

_INFO_ENCRYPTED = const(0x01)
_INFO_MAC_INCLUDED = const(0x02)
_INFO_TRIGGER_BASED = const(0x04)
_VERSION = const(2)
_MIC_LEN = const(4)
_COUNTER_LEN = const(4)
_MAX_COUNTER = const(0xFFFFFFFF)

# Object kinds (the last column of a row). The first three are integers.
KIND_NUMBER = const(0)
KIND_BINARY = const(1)
KIND_PACKET_ID = const(2)
KIND_TEXT = const(3)
KIND_RAW = const(4)
KIND_BUTTON = const(5)
KIND_DIMMER = const(6)
KIND_COMMAND = const(7)
KIND_FIRMWARE = const(8)

_N = KIND_NUMBER
_B = KIND_BINARY

# id: (metric, length, signed, mul, div, unit, kind). Length 0 = a length byte follows.
OBJECTS = {
    0x00: ("packet_id", 1, False, 1, 1, "", KIND_PACKET_ID),
    0x01: ("battery", 1, False, 1, 1, "%", _N),
    0x02: ("temperature", 2, True, 1, 100, "°C", _N),
    0x03: ("humidity", 2, False, 1, 100, "%", _N),
    0x04: ("pressure", 3, False, 1, 100, "hPa", _N),
    0x05: ("illuminance", 3, False, 1, 100, "lx", _N),
    0x06: ("mass", 2, False, 1, 100, "kg", _N),
    0x07: ("mass", 2, False, 1, 100, "lb", _N),
    0x08: ("dewpoint", 2, True, 1, 100, "°C", _N),
    0x09: ("count", 1, False, 1, 1, "", _N),
    0x0A: ("energy", 3, False, 1, 1000, "kWh", _N),
    0x0B: ("power", 3, False, 1, 100, "W", _N),
    0x0C: ("voltage", 2, False, 1, 1000, "V", _N),
    0x0D: ("pm25", 2, False, 1, 1, "µg/m³", _N),
    0x0E: ("pm10", 2, False, 1, 1, "µg/m³", _N),
    0x0F: ("generic_boolean", 1, False, 1, 1, "", _B),
    0x10: ("power_on", 1, False, 1, 1, "", _B),
    0x11: ("opening", 1, False, 1, 1, "", _B),
    0x12: ("co2", 2, False, 1, 1, "ppm", _N),
    0x13: ("tvoc", 2, False, 1, 1, "µg/m³", _N),
    0x14: ("moisture", 2, False, 1, 100, "%", _N),
    0x15: ("battery_low", 1, False, 1, 1, "", _B),
    0x16: ("battery_charging", 1, False, 1, 1, "", _B),
    0x17: ("carbon_monoxide", 1, False, 1, 1, "", _B),
    0x18: ("cold", 1, False, 1, 1, "", _B),
    0x19: ("connectivity", 1, False, 1, 1, "", _B),
    0x1A: ("door", 1, False, 1, 1, "", _B),
    0x1B: ("garage_door", 1, False, 1, 1, "", _B),
    0x1C: ("gas_detected", 1, False, 1, 1, "", _B),
    0x1D: ("heat", 1, False, 1, 1, "", _B),
    0x1E: ("light", 1, False, 1, 1, "", _B),
    0x1F: ("lock", 1, False, 1, 1, "", _B),
    0x20: ("moisture_detected", 1, False, 1, 1, "", _B),
    0x21: ("motion", 1, False, 1, 1, "", _B),
    0x22: ("moving", 1, False, 1, 1, "", _B),
    0x23: ("occupancy", 1, False, 1, 1, "", _B),
    0x24: ("plug", 1, False, 1, 1, "", _B),
    0x25: ("presence", 1, False, 1, 1, "", _B),
    0x26: ("problem", 1, False, 1, 1, "", _B),
    0x27: ("running", 1, False, 1, 1, "", _B),
    0x28: ("safety", 1, False, 1, 1, "", _B),
    0x29: ("smoke", 1, False, 1, 1, "", _B),
    0x2A: ("sound", 1, False, 1, 1, "", _B),
    0x2B: ("tamper", 1, False, 1, 1, "", _B),
    0x2C: ("vibration", 1, False, 1, 1, "", _B),
    0x2D: ("window", 1, False, 1, 1, "", _B),
    0x2E: ("humidity", 1, False, 1, 1, "%", _N),
    0x2F: ("moisture", 1, False, 1, 1, "%", _N),
    0x3A: ("button", 1, False, 1, 1, EVENT_UNIT, KIND_BUTTON),
    0x3B: ("command", 0, False, 1, 1, EVENT_UNIT, KIND_COMMAND),
    0x3C: ("dimmer", 2, False, 1, 1, EVENT_UNIT, KIND_DIMMER),
    0x3D: ("count", 2, False, 1, 1, "", _N),
    0x3E: ("count", 4, False, 1, 1, "", _N),
    0x3F: ("rotation", 2, True, 1, 10, "°", _N),
    0x40: ("distance", 2, False, 1, 1, "mm", _N),
    0x41: ("distance", 2, False, 1, 10, "m", _N),
    0x42: ("duration", 3, False, 1, 1000, "s", _N),
    0x43: ("current", 2, False, 1, 1000, "A", _N),
    0x44: ("speed", 2, False, 1, 100, "m/s", _N),
    0x45: ("temperature", 2, True, 1, 10, "°C", _N),
    0x46: ("uv_index", 1, False, 1, 10, "", _N),
    0x47: ("volume", 2, False, 1, 10, "L", _N),
    0x48: ("volume", 2, False, 1, 1, "mL", _N),
    0x49: ("volume_flow_rate", 2, False, 1, 1000, "m³/h", _N),
    0x4A: ("voltage", 2, False, 1, 10, "V", _N),
    0x4B: ("gas", 3, False, 1, 1000, "m³", _N),
    0x4C: ("gas", 4, False, 1, 1000, "m³", _N),
    0x4D: ("energy", 4, False, 1, 1000, "kWh", _N),
    0x4E: ("volume", 4, False, 1, 1000, "L", _N),
    0x4F: ("water", 4, False, 1, 1000, "L", _N),
    0x50: ("timestamp", 4, False, 1, 1, "s", _N),
    0x51: ("acceleration", 2, False, 1, 1000, "m/s²", _N),
    0x52: ("gyroscope", 2, False, 1, 1000, "°/s", _N),
    0x53: ("text", 0, False, 1, 1, "", KIND_TEXT),
    0x54: ("raw", 0, False, 1, 1, "", KIND_RAW),
    0x55: ("volume_storage", 4, False, 1, 1000, "L", _N),
    0x56: ("conductivity", 2, False, 1, 1, "µS/cm", _N),
    0x57: ("temperature", 1, True, 1, 1, "°C", _N),
    0x58: ("temperature", 1, True, 35, 100, "°C", _N),
    0x59: ("count", 1, True, 1, 1, "", _N),
    0x5A: ("count", 2, True, 1, 1, "", _N),
    0x5B: ("count", 4, True, 1, 1, "", _N),
    0x5C: ("power", 4, True, 1, 100, "W", _N),
    0x5D: ("current", 2, True, 1, 1000, "A", _N),
    0x5E: ("direction", 2, False, 1, 100, "°", _N),
    0x5F: ("precipitation", 2, False, 1, 10, "mm", _N),
    0x60: ("channel", 1, False, 1, 1, "", _N),
    0x61: ("rotational_speed", 2, False, 1, 1, "rpm", _N),
    0x62: ("speed", 4, True, 1, 1000000, "m/s", _N),
    0x63: ("acceleration", 4, True, 1, 1000000, "m/s²", _N),
    0x64: ("light_level", 1, False, 1, 1, "", _N),
    0x65: ("settings_revision", 1, False, 1, 1, "", _N),
    0xF0: ("device_type_id", 2, False, 1, 1, "", _N),
    0xF1: ("firmware_version", 4, False, 1, 1, "", KIND_FIRMWARE),
    0xF2: ("firmware_version", 3, False, 1, 1, "", KIND_FIRMWARE),
}

BUTTON_EVENTS = {
    0x00: None,
    0x01: "press",
    0x02: "double_press",
    0x03: "triple_press",
    0x04: "long_press",
    0x05: "long_double_press",
    0x06: "long_triple_press",
    0x80: "hold_press",
    0x81: "hold_release",
}
DIMMER_EVENTS = {0x00: None, 0x01: "rotate_left", 0x02: "rotate_right"}
COMMAND_EVENTS = {0x00: "off", 0x01: "on", 0x02: "toggle", 0x03: "step_up", 0x04: "step_down"}


def _build_index():
    """The catalogue as a 256-entry list for the hot path: (metric, length, sign bit, mul,
    div, unit, kind), the sign bit being 0 for unsigned values."""
    index = [None] * 256  # type: list
    for oid, row in OBJECTS.items():
        metric, length, signed, mul, div, unit, kind = row
        sign_bit = (1 << (8 * length - 1)) if (signed and length) else 0
        index[oid] = (metric, length, sign_bit, mul, div, unit, kind)
    return index


_INDEX = _build_index()


class BindKey:
    """A device's 16-byte BTHome bind key and the replay state that goes with it.

    ``key`` is bytes or 32 hex digits. ``last_counter`` is the counter of the last accepted
    frame (None before the first); save it to keep replay protection across reboots.
    """

    def __init__(self, key, last_counter=None):
        if isinstance(key, str):
            try:
                key = binascii.unhexlify(key)
            except ValueError:
                # Never put key material into a message: messages end up in logs.
                raise ConfigError("a BTHome bind key given as text must be 32 hex digits") from None
        if not isinstance(key, (bytes, bytearray)) or len(key) != 16:
            raise ConfigError("a BTHome bind key is 16 bytes (32 hex digits)")
        if last_counter is not None and (
            not isinstance(last_counter, int) or last_counter < 0 or last_counter > _MAX_COUNTER
        ):
            raise ConfigError("last_counter %r is not a 32-bit counter" % (last_counter,))
        self.key = bytes(key)
        self.last_counter = last_counter

    def check(self, counter):
        """Return False if ``counter`` may follow the last one, True if it repeats it; raise
        ReplayError if it is older (see the module's wrap policy)."""
        last = self.last_counter
        if last is None or counter > last:
            return False
        if counter == last:
            return True
        if last >= _MAX_COUNTER - WRAP_WINDOW + 1 and counter < WRAP_WINDOW:
            return False
        raise ReplayError(
            "BTHome counter %d is older than the last accepted %d: replayed frame" % (counter, last)
        )

    def accept(self, counter):
        """Record ``counter`` as accepted (call only after its MIC checked out)."""
        self.last_counter = counter

    def reset(self):
        """Forget the counter: the next authentic frame is accepted whatever its counter."""
        self.last_counter = None


def _firmware(data, i, length):
    if length == 4:
        return "%d.%d.%d.%d" % (data[i + 3], data[i + 2], data[i + 1], data[i])
    return "%d.%d.%d" % (data[i + 2], data[i + 1], data[i])


def _decode_objects(data, i, end, partial_ok):
    """Decode the objects in ``data[i:end]``: (list of Readings, packet id or None, partial?,
    object count). A value of None marks a None event (dropped by ``_readings``)."""
    out = []
    packet_id = None
    count = 0
    while i < end:
        oid = data[i]
        row = _INDEX[oid]
        if row is None:
            if partial_ok:
                return out, packet_id, True, count
            raise DecodeError("unknown BTHome object id 0x%02x at offset %d" % (oid, i))
        metric, length, sign_bit, mul, div, unit, kind = row
        i += 1
        if length == 0:
            if i >= end:
                raise DecodeError("BTHome %s object at offset %d has no length byte" % (metric, i))
            length = data[i]
            if kind == KIND_COMMAND:
                length = (length & 0x1F) + 1
            i += 1
        j = i + length
        if j > end:
            raise DecodeError(
                "BTHome %s object at offset %d needs %d bytes, %d left"
                % (metric, i - 1, length, end - i)
            )
        count += 1
        if kind <= KIND_PACKET_ID:
            if length == 1:
                v = data[i]
            elif length == 2:
                v = data[i] | (data[i + 1] << 8)
            elif length == 3:
                v = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16)
            else:
                v = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
            if sign_bit and v >= sign_bit:
                v -= sign_bit << 1
            if kind == KIND_BINARY:
                if v > 1:
                    raise DecodeError("BTHome %s value %d is not 0 or 1" % (metric, v))
                value = v == 1
            elif div == 1:
                value = v * mul if mul != 1 else v
                if kind == KIND_PACKET_ID:
                    packet_id = v
            else:
                value = v * mul / div if mul != 1 else v / div
            out.append(Reading(metric, value, unit))
        elif kind == KIND_BUTTON:
            event = data[i]
            if event not in BUTTON_EVENTS:
                raise DecodeError("unknown BTHome button event 0x%02x" % event)
            out.append(Reading(metric, BUTTON_EVENTS[event], unit))
        elif kind == KIND_DIMMER:
            event = data[i]
            if event not in DIMMER_EVENTS:
                raise DecodeError("unknown BTHome dimmer event 0x%02x" % event)
            name = DIMMER_EVENTS[event]
            out.append(Reading(metric, name, unit))
            out.append(Reading("dimmer_steps", None if name is None else data[i + 1], unit))
        elif kind == KIND_TEXT:
            try:
                out.append(Reading(metric, str(data[i:j], "utf-8"), unit))
            except UnicodeError:
                raise DecodeError("BTHome text object at offset %d is not UTF-8" % i) from None
        elif kind == KIND_RAW:
            out.append(Reading(metric, data[i:j], unit))
        elif kind == KIND_COMMAND:
            opcode = data[i]
            if opcode not in COMMAND_EVENTS:
                raise DecodeError("unknown BTHome command opcode 0x%02x" % opcode)
            out.append(Reading(metric, COMMAND_EVENTS[opcode], unit))
            out.append(Reading("command_args", data[i + 1 : j], unit))
        else:  # KIND_FIRMWARE
            out.append(Reading(metric, _firmware(data, i, length), unit))
        i = j
    return out, packet_id, False, count


def _readings(decoded):
    """Number repeated metrics (``_1``, ``_2`` ...) and drop None events; return a tuple."""
    n = len(decoded)
    if n == 1:
        tidy = decoded[0][1] is not None
    elif n == 2:
        a = decoded[0]
        b = decoded[1]
        tidy = a[0] != b[0] and a[1] is not None and b[1] is not None
    else:
        tidy = True
        for i in range(n):
            reading = decoded[i]
            if reading[1] is None:
                tidy = False
                break
            name = reading[0]
            for j in range(i + 1, n):
                if decoded[j][0] == name:
                    tidy = False
                    break
            if not tidy:
                break
    if tidy:
        return tuple(decoded)
    totals = {}
    for reading in decoded:
        totals[reading[0]] = totals.get(reading[0], 0) + 1
    seen = {}
    out = []
    for metric, value, unit in decoded:
        if totals[metric] > 1:
            k = seen.get(metric, 0) + 1
            seen[metric] = k
            if value is not None:
                out.append(Reading("%s_%d" % (metric, k), value, unit))
        elif value is not None:
            out.append(Reading(metric, value, unit))
    return tuple(out)


def _nonce(mac, info, counter_bytes):
    return mac + b"\xd2\xfc" + bytes((info,)) + counter_bytes


def decode_bthome(data, address=None, keys=None, partial_ok=False):
    """Decode BTHome v2 service data (from the device-info byte on) into a DecodedFrame.

    ``address`` is the advertiser's 6-byte address (display order), or None when unknown
    (then an encrypted frame must include its MAC). ``keys`` maps addresses to ``BindKey``
    (a dict, or anything with ``get``); the included MAC, if any, is the one looked up.
    """
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise DecodeError("BTHome service data must be bytes, got %r" % (type(data),))
        data = bytes(data)
    n = len(data)
    if n < 1:
        raise DecodeError("BTHome service data is empty")
    info = data[0]
    if info >> 5 != _VERSION:
        raise DecodeError("BTHome version %d is not supported (only 2)" % (info >> 5))
    flags = FLAG_TRIGGER_BASED if info & _INFO_TRIGGER_BASED else 0
    pos = 1
    if info & _INFO_MAC_INCLUDED:
        if n < 7:
            raise DecodeError("BTHome frame says it includes the MAC but has %d bytes" % n)
        mac = bytes((data[6], data[5], data[4], data[3], data[2], data[1]))
        flags |= FLAG_MAC_INCLUDED
        pos = 7
    elif address is None:
        mac = None
    elif isinstance(address, (bytes, bytearray, memoryview)) and len(address) == 6:
        mac = bytes(address)
    else:
        raise DecodeError("an address is 6 bytes in display order, got %r" % (address,))
    key = keys.get(mac) if (keys is not None and mac is not None) else None
    counter = None
    if info & _INFO_ENCRYPTED:
        if mac is None:
            raise DecodeError("an encrypted BTHome frame needs the device address for its nonce")
        if key is None:
            raise AuthenticationError(
                "encrypted BTHome frame from %s but no bind key for it" % mac_to_str(mac)
            )
        if n - pos < _COUNTER_LEN + _MIC_LEN + 2:
            raise DecodeError("encrypted BTHome frame of %d bytes is too short" % n)
        ctr_at = n - _COUNTER_LEN - _MIC_LEN
        counter_bytes = data[ctr_at : n - _MIC_LEN]
        counter = (
            counter_bytes[0]
            | (counter_bytes[1] << 8)
            | (counter_bytes[2] << 16)
            | (counter_bytes[3] << 24)
        )
        if key.check(counter):
            flags |= FLAG_REPEAT
        sealed = data[pos:ctr_at] + data[n - _MIC_LEN :]
        objects = ccm_decrypt(key.key, _nonce(mac, info, counter_bytes), sealed, b"", _MIC_LEN)
        key.accept(counter)
        flags |= FLAG_ENCRYPTED
        start = 0
        end = len(objects)
    else:
        if key is not None:
            raise AuthenticationError(
                "plaintext BTHome frame from %s, which has a bind key: dropped as a downgrade"
                % mac_to_str(mac)
            )
        objects = data
        start = pos
        end = n
    decoded, packet_id, partial, count = _decode_objects(objects, start, end, partial_ok)
    if partial:
        flags |= FLAG_PARTIAL
    elif count == 0:
        raise DecodeError("BTHome frame carries no objects")
    return DecodedFrame(mac, FORMAT_BTHOME, _readings(decoded), packet_id, counter, flags)


def encrypt_bthome(objects, mac, key, counter, trigger_based=False, mac_included=False):
    """Return encrypted BTHome v2 service data (from the info byte on) for ``objects``.

    The inverse of decryption, for virtual devices and tests: ``objects`` is the plaintext
    object bytes, ``mac`` the device's 6-byte address, ``key`` 16 bytes or a ``BindKey``,
    ``counter`` the 32-bit frame counter.
    """
    if isinstance(key, BindKey):
        key = key.key
    if len(mac) != 6:
        raise ConfigError("a device address is 6 bytes")
    if not isinstance(counter, int) or counter < 0 or counter > _MAX_COUNTER:
        raise ConfigError("counter %r is not a 32-bit unsigned int" % (counter,))
    info = (_VERSION << 5) | _INFO_ENCRYPTED
    if trigger_based:
        info |= _INFO_TRIGGER_BASED
    if mac_included:
        info |= _INFO_MAC_INCLUDED
    counter_bytes = bytes(
        (counter & 0xFF, (counter >> 8) & 0xFF, (counter >> 16) & 0xFF, counter >> 24)
    )
    sealed = ccm_encrypt(key, _nonce(bytes(mac), info, counter_bytes), objects, b"", _MIC_LEN)
    head = bytes((info,))
    if mac_included:
        head += bytes(reversed(mac))
    return head + sealed[:-_MIC_LEN] + counter_bytes + sealed[-_MIC_LEN:]
