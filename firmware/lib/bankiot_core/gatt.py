"""Standard GATT characteristic values that wearables send (notifications or reads).

- Heart Rate Measurement (0x2A37), Bluetooth Heart Rate Service 1.0 / GATT Specification
  Supplement: flags byte (bit 0: rate is u16, else u8; bits 1-2: sensor contact, 2 = supported
  and not detected, 3 = supported and detected, 0/1 = not supported; bit 3: energy expended
  u16 in kJ present; bit 4: RR intervals present; bits 5-7 reserved, ignored), rate, [energy],
  [RR u16 ...], all little-endian.
  Readings: ``heart_rate`` (int, bpm); ``sensor_contact`` (bool, only when the sensor
  supports contact detection); ``energy_expended`` (int, kJ); ``rr_intervals`` (list of
  float milliseconds). RR intervals come in 1/1024 s; they are reported in ms as
  ``raw * 1000 / 1024`` (= ``raw * 125 / 128``), which is exact in binary floating point,
  even in the single precision of an ESP32, so no rounding hides beat-to-beat variation.
  An RR flag with no intervals yields no ``rr_intervals`` reading; an odd trailing byte, or
  any byte the flags do not account for, is a DecodeError.
- Battery Level (0x2A19): one byte, 0..100 % (``battery``); 101..255 are reserved and raise
  DecodeError.
"""

from bankiot_core._compat import const
from bankiot_core.advdata import uuid_from_str
from bankiot_core.decoded import FORMAT_BATTERY_LEVEL, FORMAT_HEART_RATE, DecodedFrame
from bankiot_core.errors import DecodeError
from bankiot_core.readings import Reading

HEART_RATE_MEASUREMENT = const(0x2A37)
BATTERY_LEVEL = const(0x2A19)

_HR_U16 = const(0x01)
_HR_CONTACT_SUPPORTED = const(0x04)
_HR_CONTACT_DETECTED = const(0x02)
_HR_ENERGY = const(0x08)
_HR_RR = const(0x10)


def _check_bytes(data):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("a GATT value must be bytes, got %r" % (type(data),))


def decode_heart_rate(data):
    """Decode a Heart Rate Measurement value into a tuple of Readings."""
    _check_bytes(data)
    n = len(data)
    if n < 2:
        raise DecodeError("heart rate measurement of %d bytes is too short" % n)
    flags = data[0]
    if flags & _HR_U16:
        if n < 3:
            raise DecodeError("heart rate measurement says u16 rate but has %d bytes" % n)
        rate = data[1] | (data[2] << 8)
        i = 3
    else:
        rate = data[1]
        i = 2
    out = [Reading("heart_rate", rate, "bpm")]
    if flags & _HR_CONTACT_SUPPORTED:
        out.append(Reading("sensor_contact", bool(flags & _HR_CONTACT_DETECTED), ""))
    if flags & _HR_ENERGY:
        if i + 2 > n:
            raise DecodeError("heart rate measurement says energy expended but it is missing")
        out.append(Reading("energy_expended", data[i] | (data[i + 1] << 8), "kJ"))
        i += 2
    if flags & _HR_RR:
        if (n - i) & 1:
            raise DecodeError("heart rate measurement has a partial RR interval")
        rr = []
        while i < n:
            rr.append((data[i] | (data[i + 1] << 8)) * 125 / 128)
            i += 2
        if rr:
            out.append(Reading("rr_intervals", rr, "ms"))
    elif i != n:
        raise DecodeError("heart rate measurement has %d bytes its flags do not explain" % (n - i))
    return tuple(out)


def decode_battery_level(data):
    """Decode a Battery Level value into a tuple of one Reading."""
    _check_bytes(data)
    if len(data) != 1:
        raise DecodeError("battery level is 1 byte, got %d" % len(data))
    level = data[0]
    if level > 100:
        raise DecodeError("battery level %d is out of range 0..100" % level)
    return (Reading("battery", level, "%"),)


_DECODERS = {
    HEART_RATE_MEASUREMENT: (FORMAT_HEART_RATE, decode_heart_rate),
    BATTERY_LEVEL: (FORMAT_BATTERY_LEVEL, decode_battery_level),
}


def decode_gatt(uuid, data, address=None):
    """Decode the value of characteristic ``uuid`` (int like 0x2A37, or a UUID string) read
    from or notified by the device at ``address``; return a DecodedFrame."""
    key = uuid_from_str(uuid) if isinstance(uuid, str) else uuid
    entry = _DECODERS.get(key) if isinstance(key, int) else None
    if entry is None:
        raise DecodeError("no decoder for GATT characteristic %r" % (uuid,))
    return DecodedFrame(address, entry[0], entry[1](data), None, None, 0)
