"""Beacons for presence: iBeacon and Eddystone UID / TLM.

- iBeacon: manufacturer data of Apple (company 0x004C) starting ``02 15``, then a 16-byte
  proximity UUID, major and minor (u16 big-endian) and the measured power at 1 m (int8 dBm):
  23 bytes after the company id. Readings: ``uuid`` (canonical lower-case str), ``major``,
  ``minor``, ``measured_power`` (dBm at 1 m).
- Eddystone (service data 0xFEAA, https://github.com/google/eddystone), big-endian fields:
  - UID (frame type 0x00): TX power at 0 m (int8 dBm), 10-byte namespace, 6-byte instance,
    and 2 reserved bytes that some beacons leave out (18 or 20 bytes). Readings:
    ``tx_power`` (dBm at 0 m), ``namespace`` and ``instance`` (lower-case hex str).
  - TLM (frame type 0x20), version 0x00, exactly 14 bytes: battery mV (0 = not supported),
    temperature in signed 8.8 fixed point (0x8000 = not supported), advertising PDU count,
    time since power-on in 0.1 s. Readings: ``voltage`` (V), ``temperature`` (°C),
    ``advertisement_count``, ``uptime`` (s); unsupported ones are left out. Encrypted TLM
    (version 0x01) raises DecodeError.
  Other Eddystone frames (URL 0x10, EID 0x30) raise DecodeError here; the dispatcher does
  not hand them over (``EDDYSTONE_FRAMES``).
"""

from bankiot_core._compat import const
from bankiot_core.decoded import (
    FORMAT_EDDYSTONE_TLM,
    FORMAT_EDDYSTONE_UID,
    FORMAT_IBEACON,
    DecodedFrame,
)
from bankiot_core.errors import DecodeError
from bankiot_core.readings import Reading

APPLE = const(0x004C)
EDDYSTONE_UUID = const(0xFEAA)
IBEACON_PREFIX = b"\x02\x15"

_EDDYSTONE_UID = const(0x00)
_EDDYSTONE_TLM = const(0x20)
EDDYSTONE_FRAMES = (_EDDYSTONE_UID, _EDDYSTONE_TLM)


def _int8(b):
    return b - 256 if b > 127 else b


def is_ibeacon(manufacturer_data):
    """True if Apple manufacturer data (after the company id) claims to be an iBeacon."""
    return manufacturer_data[:2] == IBEACON_PREFIX


def decode_ibeacon(data, address=None):
    """Decode Apple manufacturer data (after the company id) holding an iBeacon."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("iBeacon data must be bytes, got %r" % (type(data),))
    if len(data) != 23 or data[:2] != IBEACON_PREFIX:
        raise DecodeError("iBeacon data is 23 bytes starting 02 15, got %d bytes" % len(data))
    h = bytes(data[2:18]).hex()
    uuid = "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
    readings = (
        Reading("uuid", uuid, ""),
        Reading("major", (data[18] << 8) | data[19], ""),
        Reading("minor", (data[20] << 8) | data[21], ""),
        Reading("measured_power", _int8(data[22]), "dBm"),
    )
    return DecodedFrame(address, FORMAT_IBEACON, readings, None, None, 0)


def decode_eddystone(data, address=None):
    """Decode Eddystone service data (UUID 0xFEAA): a UID or an unencrypted TLM frame."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("Eddystone data must be bytes, got %r" % (type(data),))
    n = len(data)
    if n < 1:
        raise DecodeError("Eddystone service data is empty")
    frame_type = data[0]
    if frame_type == _EDDYSTONE_UID:
        if n != 18 and n != 20:
            raise DecodeError("Eddystone UID frame is 18 or 20 bytes, got %d" % n)
        readings = (
            Reading("tx_power", _int8(data[1]), "dBm"),
            Reading("namespace", bytes(data[2:12]).hex(), ""),
            Reading("instance", bytes(data[12:18]).hex(), ""),
        )
        return DecodedFrame(address, FORMAT_EDDYSTONE_UID, readings, None, None, 0)
    if frame_type == _EDDYSTONE_TLM:
        if n < 2:
            raise DecodeError("Eddystone TLM frame has no version byte")
        if data[1] != 0:
            raise DecodeError(
                "Eddystone TLM version 0x%02x is not supported (encrypted TLM is 0x01)" % data[1]
            )
        if n != 14:
            raise DecodeError("Eddystone TLM frame is 14 bytes, got %d" % n)
        out = []
        mv = (data[2] << 8) | data[3]
        if mv:
            out.append(Reading("voltage", mv / 1000, "V"))
        temp = (data[4] << 8) | data[5]
        if temp != 0x8000:
            if temp > 0x7FFF:
                temp -= 0x10000
            out.append(Reading("temperature", temp / 256, "°C"))
        adv = (data[6] << 24) | (data[7] << 16) | (data[8] << 8) | data[9]
        out.append(Reading("advertisement_count", adv, ""))
        sec = (data[10] << 24) | (data[11] << 16) | (data[12] << 8) | data[13]
        out.append(Reading("uptime", sec / 10, "s"))
        return DecodedFrame(address, FORMAT_EDDYSTONE_TLM, tuple(out), None, None, 0)
    raise DecodeError("Eddystone frame type 0x%02x is not supported" % frame_type)
