"""Xiaomi thermometers (LYWSD03MMC and kin) running the ATC1441 or pvvx custom firmware.

Both advertise service data on UUID 0x181A (Environmental Sensing); the length tells them
apart (https://github.com/pvvx/ATC_MiThermometer, "Custom format"):

- ATC1441, 13 bytes, big-endian: MAC (6, display order), temperature int16 x 0.1 °C,
  humidity u8 %, battery u8 %, battery u16 mV, frame counter u8.
- pvvx, 15 bytes, little-endian: MAC (6, reversed), temperature int16 x 0.01 °C, humidity
  u16 x 0.01 %, battery u16 mV, battery u8 %, frame counter u8, flags u8 (reed switch and
  trigger outputs; not reported).

Readings: ``temperature``, ``humidity``, ``battery``, ``voltage`` (V) and ``packet_id`` (the
frame counter, also the frame's ``packet_id``). The frame's address is the MAC in the
payload (``FLAG_MAC_INCLUDED``). Any other length (pvvx's encrypted and other formats) is a
DecodeError.
"""

from bankiot_core._compat import const
from bankiot_core.decoded import FLAG_MAC_INCLUDED, FORMAT_ATC1441, FORMAT_PVVX, DecodedFrame
from bankiot_core.errors import DecodeError
from bankiot_core.readings import Reading

UUID = const(0x181A)
_ATC1441_LEN = const(13)
_PVVX_LEN = const(15)


def decode_thermometer(data):
    """Decode 0x181A service data from ATC1441 or pvvx firmware into a DecodedFrame."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("0x181A service data must be bytes, got %r" % (type(data),))
    n = len(data)
    if n == _ATC1441_LEN:
        temp = (data[6] << 8) | data[7]
        if temp > 0x7FFF:
            temp -= 0x10000
        counter = data[12]
        readings = (
            Reading("temperature", temp / 10, "°C"),
            Reading("humidity", data[8], "%"),
            Reading("battery", data[9], "%"),
            Reading("voltage", ((data[10] << 8) | data[11]) / 1000, "V"),
            Reading("packet_id", counter, ""),
        )
        return DecodedFrame(
            bytes(data[0:6]), FORMAT_ATC1441, readings, counter, None, FLAG_MAC_INCLUDED
        )
    if n == _PVVX_LEN:
        temp = data[6] | (data[7] << 8)
        if temp > 0x7FFF:
            temp -= 0x10000
        counter = data[13]
        readings = (
            Reading("temperature", temp / 100, "°C"),
            Reading("humidity", (data[8] | (data[9] << 8)) / 100, "%"),
            Reading("battery", data[12], "%"),
            Reading("voltage", (data[10] | (data[11] << 8)) / 1000, "V"),
            Reading("packet_id", counter, ""),
        )
        mac = bytes((data[5], data[4], data[3], data[2], data[1], data[0]))
        return DecodedFrame(mac, FORMAT_PVVX, readings, counter, None, FLAG_MAC_INCLUDED)
    raise DecodeError("0x181A service data of %d bytes is neither ATC1441 (13) nor pvvx (15)" % n)
