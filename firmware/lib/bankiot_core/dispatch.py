"""From an advertisement to one DecodedFrame: the entry point the gateway and filters use.

``decode_advertisement(adv, address, keys)`` looks, in this order, for BTHome v2 (service
data 0xFCD2), an ATC1441/pvvx thermometer (0x181A), Eddystone UID/TLM (0xFEAA) and an
iBeacon (Apple manufacturer data ``02 15``), and decodes the first it finds. It returns
None when the advertisement holds none of these: most of what a branch's radio hears
(phones, headphones, other vendors' beacons) is not for us, and that is not an error.
Something that claims one of these formats and does not parse raises the core's errors
(DecodeError, AuthenticationError, ReplayError): the driver counts them and carries on.

``decode_payload(payload, address, keys)`` is the same from the raw advertising bytes the
ESP32/Pico W IRQ delivers: the per-advertisement hot path.
"""

from bankiot_core.advdata import parse_advertisement
from bankiot_core.beacons import (
    APPLE,
    EDDYSTONE_FRAMES,
    EDDYSTONE_UUID,
    decode_eddystone,
    decode_ibeacon,
    is_ibeacon,
)
from bankiot_core.bthome import UUID as BTHOME_UUID
from bankiot_core.bthome import decode_bthome
from bankiot_core.errors import DecodeError
from bankiot_core.xiaomi import UUID as THERMOMETER_UUID
from bankiot_core.xiaomi import decode_thermometer


def decode_advertisement(adv, address=None, keys=None, partial_ok=False):
    """Decode an ``Advertisement`` heard from ``address`` (6 bytes, display order, or None).

    ``keys`` maps addresses to ``bthome.BindKey`` for encrypted BTHome devices; a device
    listed there is only accepted encrypted. ``partial_ok`` is passed to the BTHome decoder.
    Returns a DecodedFrame, or None if no supported format is present.
    """
    if address is not None:
        if not isinstance(address, (bytes, bytearray, memoryview)) or len(address) != 6:
            raise DecodeError("an address is 6 bytes in display order, got %r" % (address,))
        if not isinstance(address, bytes):
            address = bytes(address)  # an IRQ's memoryview dies with the handler
    service_data = adv.service_data
    if service_data:
        data = service_data.get(BTHOME_UUID)
        if data is not None:
            return decode_bthome(data, address, keys, partial_ok)
        data = service_data.get(THERMOMETER_UUID)
        if data is not None:
            return decode_thermometer(data)
        data = service_data.get(EDDYSTONE_UUID)
        if data is not None and len(data) and data[0] in EDDYSTONE_FRAMES:
            return decode_eddystone(data, address)
    manufacturer_data = adv.manufacturer_data
    if manufacturer_data:
        data = manufacturer_data.get(APPLE)
        if data is not None and is_ibeacon(data):
            return decode_ibeacon(data, address)
    return None


def decode_payload(payload, address=None, keys=None, partial_ok=False):
    """Parse raw advertising data and decode it: ``decode_advertisement`` of
    ``parse_advertisement(payload)``."""
    return decode_advertisement(parse_advertisement(payload), address, keys, partial_ok)
