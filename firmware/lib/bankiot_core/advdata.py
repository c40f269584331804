"""Advertising data: AD structures from the radio, or the maps bleak delivers, as one record.

Two routes reach the same decoders:

- ``parse_advertisement(payload)``: the raw advertising (or scan response) payload as the
  ESP32 and Pico W ``bluetooth`` IRQ delivers it (event 5, ``adv_data``): a run of AD
  structures ``length, type, data``. A zero length ends the significant part (the rest is
  padding, Core spec Vol 3 Part C 11); a structure running past the end raises DecodeError.
- ``advertisement_from_bleak(service_data, manufacturer_data, ...)``: bleak's
  ``AdvertisementData`` maps on Linux (service data keyed by 128-bit UUID strings such as
  ``"0000fcd2-0000-1000-8000-00805f9b34fb"``, manufacturer data keyed by company id int).

Both return an ``Advertisement``:

- ``flags``: the Flags byte (AD type 0x01) or None;
- ``local_name``: complete (0x09) or else shortened (0x08) local name as str, or None. A
  shortened name cut inside a UTF-8 sequence loses the broken tail; other invalid UTF-8
  raises DecodeError;
- ``tx_power``: TX power level in dBm (0x0A, signed) or None;
- ``service_data``: dict UUID -> bytes from AD types 0x16 (16-bit), 0x20 (32-bit) and 0x21
  (128-bit). UUIDs that are aliases of the Bluetooth base UUID are ints (``0xFCD2``) whatever
  width they were sent in, so ``0xFCD2`` matches bleak's ``"0000fcd2-0000-1000-8000-..."``;
  other 128-bit UUIDs are lower-case canonical strings;
- ``manufacturer_data``: dict company id (int, e.g. ``0x004C``) -> bytes after the id.

When a payload carries the same key twice the later structure wins. AD types this core does
not use (service UUID lists, appearance, ...) are well-formed input and are passed over.
"""

from collections import namedtuple

from bankiot_core._compat import const
from bankiot_core.errors import DecodeError

Advertisement = namedtuple(
    "Advertisement", ("flags", "local_name", "tx_power", "service_data", "manufacturer_data")
)

_AD_FLAGS = const(0x01)
_AD_SHORT_NAME = const(0x08)
_AD_COMPLETE_NAME = const(0x09)
_AD_TX_POWER = const(0x0A)
_AD_SERVICE_DATA_16 = const(0x16)
_AD_SERVICE_DATA_32 = const(0x20)
_AD_SERVICE_DATA_128 = const(0x21)
_AD_MANUFACTURER = const(0xFF)

# The Bluetooth base UUID 0000xxxx-0000-1000-8000-00805f9b34fb: its last 12 bytes as sent
# on air (little-endian), and its textual tail.
_BASE_LE = b"\xfb\x34\x9b\x5f\x80\x00\x00\x80\x00\x10\x00\x00"
_BASE_TAIL = "-0000-1000-8000-00805f9b34fb"
_HEXDIGITS = "0123456789abcdef"


def _uuid_from_le128(raw):
    """UUID key for 16 bytes of a 128-bit UUID as sent on air (little-endian)."""
    if raw[:12] == _BASE_LE:
        return raw[12] | (raw[13] << 8) | (raw[14] << 16) | (raw[15] << 24)
    h = bytes(reversed(raw)).hex()
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def _is_hex(text):
    return all(ch in _HEXDIGITS for ch in text)


# bleak names the same few service UUIDs in every report: remember their keys.
_UUID_CACHE = {}
_UUID_CACHE_SIZE = const(16)


def uuid_from_str(text):
    """Return the UUID key for ``text``: ``"fcd2"``, ``"0xFCD2"``, ``"0000fcd2"`` or the full
    36-character form. Base-UUID aliases become ints, other 128-bit UUIDs canonical strings.
    """
    if not isinstance(text, str):
        raise DecodeError("a UUID must be text, got %r" % (text,))
    key = _UUID_CACHE.get(text)
    if key is None:
        key = _parse_uuid(text)
        if len(_UUID_CACHE) >= _UUID_CACHE_SIZE:
            _UUID_CACHE.clear()
        _UUID_CACHE[text] = key
    return key


def _parse_uuid(text):
    t = text.lower()
    if t.startswith("0x"):
        t = t[2:]
    if len(t) in (4, 8) and _is_hex(t):
        return int(t, 16)
    if (
        len(t) == 36
        and t[8] == "-"
        and t[13] == "-"
        and t[18] == "-"
        and t[23] == "-"
        and _is_hex(t.replace("-", ""))
        and len(t.replace("-", "")) == 32
    ):
        if t.endswith(_BASE_TAIL):
            return int(t[:8], 16)
        return t
    raise DecodeError("%r is not a UUID (4, 8 or 32 hex digits)" % (text,))


def uuid_to_str(uuid):
    """Return the full 36-character lower-case form of a UUID key (int or str)."""
    if isinstance(uuid, str):
        uuid = uuid_from_str(uuid)
        if isinstance(uuid, str):
            return uuid
    if not isinstance(uuid, int) or uuid < 0 or uuid > 0xFFFFFFFF:
        raise DecodeError("UUID %r is not a 16/32-bit int or a UUID string" % (uuid,))
    return "%08x%s" % (uuid, _BASE_TAIL)


def _decode_name(raw, shortened):
    try:
        return raw.decode()
    except UnicodeError:
        pass
    if shortened:
        # A shortened name is cut by byte count and may end inside a UTF-8 sequence.
        for cut in (1, 2, 3):
            if cut < len(raw):
                try:
                    return raw[: len(raw) - cut].decode()
                except UnicodeError:
                    pass
    raise DecodeError("local name %r is not UTF-8" % (raw,))


def parse_advertisement(payload):
    """Parse a raw advertising payload (bytes, bytearray or memoryview) into an Advertisement."""
    if not isinstance(payload, bytes):
        if not isinstance(payload, (bytearray, memoryview)):
            raise DecodeError("advertising data must be bytes, got %r" % (type(payload),))
        payload = bytes(payload)
    n = len(payload)
    flags = None
    name = None
    name_complete = False
    tx_power = None
    service_data = {}
    manufacturer_data = {}
    i = 0
    while i < n:
        length = payload[i]
        if length == 0:
            break
        end = i + 1 + length
        if end > n:
            raise DecodeError(
                "AD structure at offset %d claims %d bytes but only %d remain"
                % (i, length, n - i - 1)
            )
        ad_type = payload[i + 1]
        if ad_type == _AD_SERVICE_DATA_16:
            if length < 3:
                raise DecodeError("16-bit service data at offset %d has no UUID" % i)
            service_data[payload[i + 2] | (payload[i + 3] << 8)] = payload[i + 4 : end]
        elif ad_type == _AD_MANUFACTURER:
            if length < 3:
                raise DecodeError("manufacturer data at offset %d has no company id" % i)
            manufacturer_data[payload[i + 2] | (payload[i + 3] << 8)] = payload[i + 4 : end]
        elif ad_type == _AD_FLAGS:
            if length < 2:
                raise DecodeError("flags at offset %d are empty" % i)
            flags = payload[i + 2]
        elif ad_type in (_AD_COMPLETE_NAME, _AD_SHORT_NAME):
            complete = ad_type == _AD_COMPLETE_NAME
            if complete or not name_complete:
                name = _decode_name(payload[i + 2 : end], not complete)
                name_complete = complete
        elif ad_type == _AD_TX_POWER:
            if length != 2:
                raise DecodeError("TX power at offset %d is %d bytes, not 1" % (i, length - 1))
            tx_power = payload[i + 2]
            if tx_power > 127:
                tx_power -= 256
        elif ad_type == _AD_SERVICE_DATA_32:
            if length < 5:
                raise DecodeError("32-bit service data at offset %d has no UUID" % i)
            uuid = (
                payload[i + 2]
                | (payload[i + 3] << 8)
                | (payload[i + 4] << 16)
                | (payload[i + 5] << 24)
            )
            service_data[uuid] = payload[i + 6 : end]
        elif ad_type == _AD_SERVICE_DATA_128:
            if length < 17:
                raise DecodeError("128-bit service data at offset %d has no UUID" % i)
            service_data[_uuid_from_le128(payload[i + 2 : i + 18])] = payload[i + 18 : end]
        i = end
    return Advertisement(flags, name, tx_power, service_data, manufacturer_data)


def advertisement_from_bleak(
    service_data=None, manufacturer_data=None, local_name=None, tx_power=None, flags=None
):
    """Build an Advertisement from bleak-style maps.

    ``service_data`` maps UUID strings (any form ``uuid_from_str`` accepts) or int keys to
    bytes; ``manufacturer_data`` maps company ids (int) to bytes after the id.
    """
    sd = {}
    if service_data:
        for key, value in service_data.items():
            uuid = key if isinstance(key, int) else uuid_from_str(key)
            sd[uuid] = _as_bytes(value, "service data")
    md = {}
    if manufacturer_data:
        for key, value in manufacturer_data.items():
            if not isinstance(key, int) or key < 0 or key > 0xFFFF:
                raise DecodeError("company id %r is not a 16-bit int" % (key,))
            md[key] = _as_bytes(value, "manufacturer data")
    if local_name is not None and not isinstance(local_name, str):
        raise DecodeError("local name must be text, got %r" % (local_name,))
    if tx_power is not None and not isinstance(tx_power, int):
        raise DecodeError("TX power must be an int, got %r" % (tx_power,))
    if flags is not None and not isinstance(flags, int):
        raise DecodeError("flags must be an int, got %r" % (flags,))
    return Advertisement(flags, local_name, tx_power, sd, md)


def _as_bytes(value, what):
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise DecodeError("%s must be bytes, got %r" % (what, type(value)))
