"""Radio mode: what an ESP32 that only listens sends a Raspberry Pi gateway over a UART.

A board running this project's firmware in radio mode scans and hands every advertisement
it hears to the gateway it is plugged into; the gateway does everything else (decode, filter,
batch, seal). Each message travels as one frame of ``framing`` (COBS + CRC-32), and the
frame's payload is one CBOR item (RFC 8949), in this format (CDDL, RFC 8610)::

    radio-message = advert / status

    ; one advertisement (or scan response) as the board's radio delivered it
    advert = [
        kind: 1,
        address: bstr .size 6,        ; display order, AA:BB:.. is h'AABB..'
        address-type: 0..3,           ; HCI: public, random, public identity, random identity
        rssi: -128..127,              ; dBm (127: not available, as HCI says)
        data: bstr .size (0..255),    ; the AD structures, untouched
    ]

    ; sent when the radio starts and then now and again: who is talking, and how it fares
    status = [
        kind: 2,
        software: tstr .size (1..32), ; the firmware's version
        uptime-s: uint .le 4294967295,
        counters: { * counter-name => uint .le 4294967295 },  ; at most 16 entries
    ]
    counter-name = tstr .size (1..32) ; e.g. "heard", "sent", "dropped" (queue full)

Every message is in deterministic encoding (RFC 8949 4.2.1: preferred serialization, map
keys sorted), so a message has exactly one byte form. The decoder is strict: anything else
(another kind, wrong types, values out of range, a longer form than needed, bytes after the
item) raises ``DecodeError``; the gateway counts it and carries on with the next frame.
A new kind of message gets a new kind number: an old gateway counts it as bad and skips it.

``encode_advert`` lays the advert out by hand, because it runs for every advertisement on
the board; ``encode_status`` goes through ``cbor``. Encoding checks its input too and raises
``LocalError``: the board is about to send something the gateway would refuse.
``MAX_MESSAGE`` bounds every message this module accepts, for sizing the ``Deframer``.
"""

from collections import namedtuple

from bankiot_core import cbor
from bankiot_core._compat import const
from bankiot_core.errors import DecodeError, LocalError

ADVERT = const(1)
STATUS = const(2)

PUBLIC = const(0)
RANDOM = const(1)
PUBLIC_IDENTITY = const(2)
RANDOM_IDENTITY = const(3)

MAX_DATA = const(255)
MAX_SOFTWARE = const(32)
MAX_COUNTERS = const(16)
MAX_NAME = const(32)
_U32_MAX = 0xFFFFFFFF  # not const(): larger than a small int on the boards

# The longest status: array head 1, kind 1, software 2 + 32, uptime 5, map head 1, and 16
# counters of name 2 + 32 and value 5 = 671 bytes; the longest advert is 2 + 7 + 1 + 2 +
# 2 + 255 = 269. Rounded up, with room for the frame's CRC the Deframer adds itself.
MAX_MESSAGE = const(1024)

Advert = namedtuple("Advert", ("address", "address_type", "rssi", "data"))
"""One advertisement heard by the radio (see the module doc)."""

Status = namedtuple("Status", ("software", "uptime_s", "counters"))
"""The radio's status: firmware version, uptime in seconds, counters (dict name -> int)."""

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _is_int(value):
    # bool is an int subclass on both interpreters; CBOR true is not a number.
    return isinstance(value, int) and not isinstance(value, bool)


def _advert_fault(address, address_type, rssi, data):
    """What is wrong with these advert fields (a message), or None."""
    if not isinstance(address, _BYTES_LIKE) or len(address) != 6:
        return "an address is 6 bytes"
    if not _is_int(address_type) or address_type < 0 or address_type > 3:
        return "address type %r is not 0..3" % (address_type,)
    if not _is_int(rssi) or rssi < -128 or rssi > 127:
        return "RSSI %r is not -128..127" % (rssi,)
    if not isinstance(data, _BYTES_LIKE):
        return "advertising data must be bytes"
    if len(data) > MAX_DATA:
        return "advertising data is %d bytes, more than %d" % (len(data), MAX_DATA)
    return None


def _status_fault(software, uptime_s, counters):
    """What is wrong with these status fields (a message), or None."""
    if not isinstance(software, str) or not 1 <= len(software.encode()) <= MAX_SOFTWARE:
        return "software must be text of 1 to %d bytes" % MAX_SOFTWARE
    if not _is_int(uptime_s) or uptime_s < 0 or uptime_s > _U32_MAX:
        return "uptime %r is not a 32-bit unsigned int" % (uptime_s,)
    if not isinstance(counters, dict):
        return "counters must be a map"
    if len(counters) > MAX_COUNTERS:
        return "%d counters, more than %d" % (len(counters), MAX_COUNTERS)
    for name, value in counters.items():
        if not isinstance(name, str) or not 1 <= len(name.encode()) <= MAX_NAME:
            return "a counter name must be text of 1 to %d bytes" % MAX_NAME
        if not _is_int(value) or value < 0 or value > _U32_MAX:
            return "counter %s = %r is not a 32-bit unsigned int" % (name, value)
    return None


def encode_advert(address, address_type, rssi, data):
    """The CBOR of one advert message (bytes). Raises LocalError for fields out of range."""
    fault = _advert_fault(address, address_type, rssi, data)
    if fault is not None:
        raise LocalError("cannot encode an advert: " + fault)
    buf = bytearray(b"\x85\x01\x46")  # array(5), kind 1, bstr(6)
    buf.extend(address)
    buf.append(address_type)  # 0..3: an unsigned int in the head byte
    if rssi >= 0:
        cbor.write_head(buf, 0, rssi)
    else:
        cbor.write_head(buf, 1, -1 - rssi)
    cbor.write_head(buf, 2, len(data))
    buf.extend(data)
    return bytes(buf)


def encode_status(software, uptime_s, counters):
    """The CBOR of one status message (bytes). Raises LocalError for fields out of range."""
    fault = _status_fault(software, uptime_s, counters)
    if fault is not None:
        raise LocalError("cannot encode a status: " + fault)
    return cbor.dumps([STATUS, software, uptime_s, counters], True)


def encode(message):
    """The CBOR of an ``Advert`` or a ``Status``."""
    if isinstance(message, Advert):
        return encode_advert(message.address, message.address_type, message.rssi, message.data)
    if isinstance(message, Status):
        return encode_status(message.software, message.uptime_s, message.counters)
    raise LocalError("a radio message is an Advert or a Status, not %s" % type(message).__name__)


def decode(data):
    """The ``Advert`` or ``Status`` in one frame's payload; DecodeError if it is not one."""
    if not isinstance(data, _BYTES_LIKE):
        raise DecodeError("a radio message must be bytes")
    if len(data) > MAX_MESSAGE:
        raise DecodeError("a radio message is at most %d bytes, got %d" % (MAX_MESSAGE, len(data)))
    data = bytes(data)
    item = cbor.loads(data, 2)
    if not isinstance(item, list) or not item or not _is_int(item[0]):
        raise DecodeError("a radio message is an array starting with its kind")
    kind = item[0]
    if kind == ADVERT:
        if len(item) != 5:
            raise DecodeError("an advert has 5 items, got %d" % len(item))
        fault = _advert_fault(item[1], item[2], item[3], item[4])
        if fault is not None:
            raise DecodeError("bad advert: " + fault)
        message = Advert(item[1], item[2], item[3], item[4])
        canonical = encode_advert(item[1], item[2], item[3], item[4])
    elif kind == STATUS:
        if len(item) != 4:
            raise DecodeError("a status has 4 items, got %d" % len(item))
        fault = _status_fault(item[1], item[2], item[3])
        if fault is not None:
            raise DecodeError("bad status: " + fault)
        message = Status(item[1], item[2], item[3])
        canonical = cbor.dumps(item, True)
    else:
        raise DecodeError("unknown radio message kind %d" % kind)
    if canonical != data:
        raise DecodeError("radio message is not in deterministic encoding")
    return message
