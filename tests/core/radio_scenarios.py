"""Cases for ``bankiot_core.radio``, runnable under CPython and MicroPython.

``tests/core/test_radio.py`` runs ``run(cases)`` on CPython and, from this same file
installed as ``/lib/radio_scenarios.py``, under real MicroPython, and compares both with
answers computed by cbor2. ``cases`` is JSON data:

- ``"adverts"``: ``[address hex, address type, rssi, data hex]``; the result has the hex of
  ``encode_advert`` of each (the same from bytes and from memoryviews), or the name of the
  error it raised;
- ``"statuses"``: ``[software, uptime_s, counters]``; the same with ``encode_status``;
- ``"decode"``: hex messages; the result has what ``decode`` made of each, as
  ``["advert", address hex, type, rssi, data hex]``, ``["status", software, uptime,
  counters]`` or the name of the error it raised.

Common subset of CPython and MicroPython: no f-strings, no annotations.
"""

import binascii

from bankiot_core import radio
from bankiot_core.errors import CoreError


def _hex(data):
    return binascii.hexlify(data).decode()


def _unhex(text):
    return binascii.unhexlify(text)


def _error(exc):
    return type(exc).__name__


def _message(message):
    if isinstance(message, radio.Advert):
        return [
            "advert",
            _hex(message.address),
            message.address_type,
            message.rssi,
            _hex(message.data),
        ]
    return ["status", message.software, message.uptime_s, message.counters]


def run(cases):
    out = {"adverts": [], "statuses": [], "decode": []}
    for address, address_type, rssi, data in cases["adverts"]:
        try:
            encoded = radio.encode_advert(_unhex(address), address_type, rssi, _unhex(data))
            # A board's IRQ hands over memoryviews: they must encode the same.
            views = radio.encode_advert(
                memoryview(_unhex(address)), address_type, rssi, memoryview(_unhex(data))
            )
            out["adverts"].append(_hex(encoded) if views == encoded else "views differ")
        except CoreError as exc:
            out["adverts"].append(_error(exc))
    for software, uptime_s, counters in cases["statuses"]:
        try:
            out["statuses"].append(_hex(radio.encode_status(software, uptime_s, counters)))
        except CoreError as exc:
            out["statuses"].append(_error(exc))
    for message in cases["decode"]:
        try:
            out["decode"].append(_message(radio.decode(_unhex(message))))
        except CoreError as exc:
            out["decode"].append(_error(exc))
    return out
