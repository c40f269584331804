"""The record every decoder hands to the gateway and the filters: one ``DecodedFrame``.

Fields:

- ``address``: the device's 6-byte address in display order. When the payload carries the
  device's own address (BTHome "MAC included", ATC1441, pvvx) that one is used, so a device on
  a private random address keeps one identity; otherwise the advertiser's address as given.
- ``format``: one of the ``FORMAT_*`` names below.
- ``readings``: a tuple of ``bankiot_core.readings.Reading``.
- ``packet_id``: the format's own frame number for duplicate suppression (BTHome object 0x00,
  the ATC1441/pvvx frame counter), or None.
- ``counter``: the authenticated 32-bit counter of an encrypted BTHome frame, or None.
- ``flags``: a bit set of the ``FLAG_*`` values below.

Events (a button press, a dimmer turn, a command) are readings whose ``unit`` is
``EVENT_UNIT``: each one happened once, so filters must never deadband or merge them; a
repeated frame carrying the same event is recognised by ``packet_id``/``counter`` instead.
"""

from collections import namedtuple

from bankiot_core._compat import const

DecodedFrame = namedtuple(
    "DecodedFrame", ("address", "format", "readings", "packet_id", "counter", "flags")
)

# The frame was encrypted and its MIC checked with the device's bind key.
FLAG_ENCRYPTED = const(0x01)
# The device advertises on triggers (a button) rather than at a regular interval, so silence
# does not mean it went away (BTHome device-info bit 2).
FLAG_TRIGGER_BASED = const(0x02)
# The payload carried the device's own address, and ``address`` is that one.
FLAG_MAC_INCLUDED = const(0x04)
# An authenticated frame whose counter equals the last accepted one: the device repeating its
# latest advertisement, or someone replaying it. Never store it twice: the duplicate filter
# drops it.
FLAG_REPEAT = const(0x08)
# Decoding stopped at an object id this core does not know (only with ``partial_ok=True``):
# the readings are those before it.
FLAG_PARTIAL = const(0x10)

EVENT_UNIT = "event"

FORMAT_BTHOME = "bthome"
FORMAT_ATC1441 = "atc1441"
FORMAT_PVVX = "pvvx"
FORMAT_IBEACON = "ibeacon"
FORMAT_EDDYSTONE_UID = "eddystone_uid"
FORMAT_EDDYSTONE_TLM = "eddystone_tlm"
FORMAT_HEART_RATE = "gatt_heart_rate"
FORMAT_BATTERY_LEVEL = "gatt_battery_level"


def readings_dict(frame):
    """Return ``{metric: value}`` for a frame's readings (for JSON output and tests)."""
    out = {}
    for reading in frame.readings:
        out[reading.metric] = reading.value
    return out
