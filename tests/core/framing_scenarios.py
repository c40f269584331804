"""Known answers for ``bankiot_core.framing``, runnable under CPython and MicroPython.

``tests/core/test_framing.py`` runs ``run(cases)`` on CPython and, from this same file
installed as ``/lib/framing_scenarios.py``, under real MicroPython, and compares both with
the answers from the COBS paper's examples, the CRC-32 check value and frames derived by
hand. ``cases`` is JSON data:

- ``"cobs"``: hex inputs; the result has each one's COBS encoding and its decoding back;
- ``"crc"``: hex inputs; the result has ``crc32`` and ``crc32_python`` of each;
- ``"frames"``: hex payloads; the result has ``encode_frame`` of each;
- ``"streams"``: ``[max_payload, [hex chunk, ...]]``; the result has, per stream, the
  payloads fed out after each chunk and the final counters.

Common subset of CPython and MicroPython: no f-strings, no annotations.
"""

import binascii

from bankiot_core import framing


def _hex(data):
    return binascii.hexlify(data).decode()


def _unhex(text):
    return binascii.unhexlify(text)


def run(cases):
    out = {"cobs": [], "crc": [], "frames": [], "streams": []}
    for data in cases["cobs"]:
        encoded = framing.cobs_encode(_unhex(data))
        out["cobs"].append([_hex(encoded), _hex(framing.cobs_decode(encoded))])
    for data in cases["crc"]:
        raw = _unhex(data)
        out["crc"].append([framing.crc32(raw), framing.crc32_python(raw)])
    for payload in cases["frames"]:
        out["frames"].append(_hex(framing.encode_frame(_unhex(payload))))
    for max_payload, chunks in cases["streams"]:
        deframer = framing.Deframer(max_payload)
        fed = []
        for chunk in chunks:
            fed.append([_hex(p) for p in deframer.feed(_unhex(chunk))])
        counters = deframer.counters()
        fed.append(dict((name, counters[name]) for name in sorted(counters)))
        out["streams"].append(fed)
    return out
