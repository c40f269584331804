"""Bluetooth device addresses: six bytes in display order inside the core.

``AA:BB:CC:DD:EE:FF`` is ``b"\\xaa\\xbb\\xcc\\xdd\\xee\\xff"`` everywhere in the core (the order
people read, the order BTHome puts into its nonce, the order the MicroPython ``bluetooth``
module hands over). The radio itself sends the bytes reversed; formats that embed a reversed
copy (BTHome's "MAC included", pvvx) are turned round by their decoders, not here.
"""

import binascii

from bankiot_core.errors import DecodeError

_HEX = "0123456789ABCDEF"


def mac_from_str(text):
    """Return the 6-byte address for ``"AA:BB:CC:DD:EE:FF"``.

    Also accepts ``-`` as separator and the bare 12-digit form; any case. Anything else
    raises DecodeError. (A gateway calls this for every frame bleak reports, so the work is
    left to ``binascii``.)
    """
    if not isinstance(text, str):
        raise DecodeError("address must be text like AA:BB:CC:DD:EE:FF, got %r" % (text,))
    n = len(text)
    if n == 17:
        sep = text[2]
        if (
            (sep != ":" and sep != "-")
            or text.count(sep) != 5
            or text[5] + text[8] + text[11] + text[14] != sep * 4
        ):
            raise DecodeError("address %r is not six hex bytes like AA:BB:CC:DD:EE:FF" % text)
        digits = text.replace(sep, "")
    elif n == 12:
        digits = text
    else:
        raise DecodeError("address %r is not six hex bytes like AA:BB:CC:DD:EE:FF" % text)
    if len(digits) != 12:
        raise DecodeError("address %r is not six hex bytes like AA:BB:CC:DD:EE:FF" % text)
    try:
        return binascii.unhexlify(digits)
    except ValueError:  # binascii.Error is a ValueError on CPython
        raise DecodeError("address %r is not six hex bytes like AA:BB:CC:DD:EE:FF" % text) from None


def mac_to_str(mac):
    """Return ``"AA:BB:CC:DD:EE:FF"`` (upper case) for a 6-byte address."""
    if mac is None or len(mac) != 6:
        raise DecodeError("an address is 6 bytes, got %r" % (mac,))
    parts = []
    for b in mac:
        parts.append(_HEX[b >> 4] + _HEX[b & 15])
    return ":".join(parts)


def check_mac(mac):
    """Return ``mac`` as bytes if it is a 6-byte address, else raise DecodeError."""
    if isinstance(mac, (bytes, bytearray, memoryview)) and len(mac) == 6:
        return bytes(mac)
    raise DecodeError("an address is 6 bytes in display order, got %r" % (mac,))
