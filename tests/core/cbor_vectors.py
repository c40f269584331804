"""CBOR known answers from RFC 8949 Appendix A, runnable under CPython and MicroPython.

``tests/core/test_cbor.py`` checks every row on CPython and runs ``run_known_answers()``
and ``run_malformed()`` from this same file under real MicroPython (installed as
``/lib/cbor_vectors.py``), so both interpreters are held to the specification's bytes.

Each row of ``APPENDIX_A`` is ``(hex, value, mode)``:

- ``"both"``: ``dumps(value, deterministic=True)`` is exactly these bytes and ``loads``
  gives ``value`` back (the appendix's preferred serializations);
- ``"decode"``: ``loads`` gives ``value`` (valid, but not what our encoder writes: the
  longer float forms);
- ``"reject"``: ``loads`` raises DecodeError, a documented choice of ``bankiot_core.cbor``
  (undefined, other simple values, indefinite lengths).

``MALFORMED`` lists inputs every CBOR decoder must refuse (RFC 8949 Appendix F and
section 3), plus what this decoder refuses by choice; the reason is for people.

Common subset of CPython and MicroPython: no f-strings, no annotations.
"""

import struct

from bankiot_core import cbor
from bankiot_core.cbor import Tag
from bankiot_core.errors import DecodeError

INF = float("inf")
NAN = float("nan")

APPENDIX_A = [
    ("00", 0, "both"),
    ("01", 1, "both"),
    ("0a", 10, "both"),
    ("17", 23, "both"),
    ("1818", 24, "both"),
    ("1819", 25, "both"),
    ("1864", 100, "both"),
    ("1903e8", 1000, "both"),
    ("1a000f4240", 1000000, "both"),
    ("1b000000e8d4a51000", 1000000000000, "both"),
    ("1bffffffffffffffff", 18446744073709551615, "both"),
    ("c249010000000000000000", 18446744073709551616, "both"),
    ("3bffffffffffffffff", -18446744073709551616, "both"),
    ("c349010000000000000000", -18446744073709551617, "both"),
    ("20", -1, "both"),
    ("29", -10, "both"),
    ("3863", -100, "both"),
    ("3903e7", -1000, "both"),
    ("f90000", 0.0, "both"),
    ("f98000", -0.0, "both"),
    ("f93c00", 1.0, "both"),
    ("fb3ff199999999999a", 1.1, "both"),
    ("f93e00", 1.5, "both"),
    ("f97bff", 65504.0, "both"),
    ("fa47c35000", 100000.0, "both"),
    ("fa7f7fffff", 3.4028234663852886e38, "both"),
    ("fb7e37e43c8800759c", 1.0e300, "both"),
    ("f90001", 5.960464477539063e-8, "both"),
    ("f90400", 0.00006103515625, "both"),
    ("f9c400", -4.0, "both"),
    ("fbc010666666666666", -4.1, "both"),
    ("f97c00", INF, "both"),
    ("f97e00", NAN, "both"),
    ("f9fc00", -INF, "both"),
    ("fa7f800000", INF, "decode"),
    ("fa7fc00000", NAN, "decode"),
    ("faff800000", -INF, "decode"),
    ("fb7ff0000000000000", INF, "decode"),
    ("fb7ff8000000000000", NAN, "decode"),
    ("fbfff0000000000000", -INF, "decode"),
    ("f4", False, "both"),
    ("f5", True, "both"),
    ("f6", None, "both"),
    ("f7", "undefined", "reject"),
    ("f0", "simple(16)", "reject"),
    ("f8ff", "simple(255)", "reject"),
    ("c074323031332d30332d32315432303a30343a30305a", Tag(0, "2013-03-21T20:04:00Z"), "both"),
    ("c11a514b67b0", Tag(1, 1363896240), "both"),
    ("c1fb41d452d9ec200000", Tag(1, 1363896240.5), "both"),
    ("d74401020304", Tag(23, b"\x01\x02\x03\x04"), "both"),
    ("d818456449455446", Tag(24, b"dIETF"), "both"),
    (
        "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
        Tag(32, "http://www.example.com"),
        "both",
    ),
    ("40", b"", "both"),
    ("4401020304", b"\x01\x02\x03\x04", "both"),
    ("60", "", "both"),
    ("6161", "a", "both"),
    ("6449455446", "IETF", "both"),
    ("62225c", '"\\', "both"),
    ("62c3bc", "\u00fc", "both"),
    ("63e6b0b4", "\u6c34", "both"),
    ("64f0908591", "\U00010151", "both"),  # the appendix writes it as "\ud800\udd51"
    ("80", [], "both"),
    ("83010203", [1, 2, 3], "both"),
    ("8301820203820405", [1, [2, 3], [4, 5]], "both"),
    (
        "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
        list(range(1, 26)),
        "both",
    ),
    ("a0", {}, "both"),
    ("a201020304", {1: 2, 3: 4}, "both"),
    ("a26161016162820203", {"a": 1, "b": [2, 3]}, "both"),
    ("826161a161626163", ["a", {"b": "c"}], "both"),
    (
        "a56161614161626142616361436164614461656145",
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "both",
    ),
    ("5f42010243030405ff", "(_ h'0102', h'030405')", "reject"),
    ("7f657374726561646d696e67ff", '(_ "strea", "ming")', "reject"),
    ("9fff", "[_ ]", "reject"),
    ("9f018202039f0405ffff", "[_ 1, [2, 3], [_ 4, 5]]", "reject"),
    ("9f01820203820405ff", "[_ 1, [2, 3], [4, 5]]", "reject"),
    ("83018202039f0405ff", "[1, [2, 3], [_ 4, 5]]", "reject"),
    ("83019f0203ff820405", "[1, [_ 2, 3], [4, 5]]", "reject"),
    ("9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", "[_ 1..25]", "reject"),
    ("bf61610161629f0203ffff", '{_ "a": 1, "b": [_ 2, 3]}', "reject"),
    ("826161bf61626163ff", '["a", {_ "b": "c"}]', "reject"),
    ("bf6346756ef563416d7421ff", '{_ "Fun": true, "Amt": -2}', "reject"),
]

# RFC 8949 4.2.1: keys in bytewise order of their encodings, here inserted in another order.
DETERMINISTIC_EXAMPLE = (
    {False: 8, (-1,): 7, (100,): 6, "aa": 5, "z": 4, -1: 3, 100: 2, 10: 1},
    "a8" + "0a01" + "186402" + "2003" + "617a04" + "62616105" + "81186406" + "812007" + "f408",
)

# (hex, reason): every one must raise DecodeError on both interpreters, with the same message.
MALFORMED = [
    ("", "empty input"),
    ("18", "argument byte missing"),
    ("19 01", "argument truncated"),
    ("1b 00 00 00 00 00 00 00", "8-byte argument truncated"),
    ("1c", "reserved additional information 28"),
    ("3d", "reserved additional information 29"),
    ("5e", "reserved additional information 30"),
    ("1f", "indefinite length on an integer"),
    ("3f", "indefinite length on a negative integer"),
    ("df 00", "indefinite length on a tag"),
    ("ff", "a break with nothing to end"),
    ("42 01", "byte string shorter than its length"),
    ("63 61 62", "text shorter than its length"),
    ("5b ff ff ff ff ff ff ff ff 00", "byte string of 2**64 - 1 bytes"),
    ("9b ff ff ff ff ff ff ff ff", "array of 2**64 - 1 items"),
    ("bb 00 00 00 00 00 00 00 02 01", "map of 2 pairs in 1 byte"),
    ("83 01 02", "array missing an item"),
    ("a2 01 02 03", "map missing a value"),
    ("a1 01", "map key without a value"),
    ("c1", "tag without content"),
    ("f8 18", "simple value 24 in two bytes"),
    ("f8 1f", "simple value 31 in two bytes"),
    ("f8", "simple value byte missing"),
    ("f9 7e", "half float truncated"),
    ("fa 7f 80 00", "single float truncated"),
    ("fb 7f f8 00 00 00 00 00", "double float truncated"),
    ("f7", "undefined"),
    ("e0", "simple value 0"),
    ("f3", "simple value 19"),
    ("62 c0 80", "overlong UTF-8 for NUL"),
    ("63 e0 80 80", "overlong three-byte UTF-8"),
    ("63 ed a0 80", "UTF-16 surrogate in UTF-8"),
    ("64 f4 90 80 80", "code point beyond U+10FFFF"),
    ("62 e6 b0", "UTF-8 sequence cut short"),
    ("61 ff", "byte 0xff in UTF-8"),
    ("61 80", "continuation byte first"),
    ("a2 01 02 01 03", "duplicate map key"),
    ("a2 01 02 f9 3c 00 03", "keys 1 and 1.0 are one Python key"),
    ("a1 a0 01", "map as a map key"),
    ("c2 01", "bignum content not bytes"),
    ("c3 61 61", "negative bignum content text"),
    ("00 00", "trailing byte"),
    ("81 81 81 81 81 81 81 81 81 81 81 81 81 81 81 81 81 00", "17 nested arrays"),
]


def unhex(text):
    """Bytes from hex with optional spaces (MicroPython's fromhex does not skip them)."""
    text = text.replace(" ", "")
    return bytes(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


def same(a, b):
    """Equal value and type, recursively; floats bit for bit (every NaN equals every NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if a != a:
            return b != b
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return False
        return all(same(a[i], b[i]) for i in range(len(a)))
    if isinstance(a, dict):  # in any order: MicroPython's dict keeps none
        if len(a) != len(b):
            return False
        rest = list(b.items())
        for key in a:  # matched with same(), not "in": a NaN key equals no other NaN
            for i in range(len(rest)):
                if same(key, rest[i][0]) and same(a[key], rest[i][1]):
                    rest.pop(i)
                    break
            else:
                return False
        return True
    if isinstance(a, Tag):
        return same(a.tag, b.tag) and same(a.value, b.value)
    return a == b


def check_row(text, value, mode):
    """A list of what went wrong with one Appendix A row (empty if nothing)."""
    problems = []
    data = unhex(text)
    if mode == "reject":
        try:
            cbor.loads(data)
            problems.append("%s: accepted, expected DecodeError" % text)
        except DecodeError:
            pass
        return problems
    got = cbor.loads(data)
    if not same(got, value):
        problems.append("%s: decoded to %r, expected %r" % (text, got, value))
    if mode == "both":  # deterministic: MicroPython's dict does not keep insertion order
        encoded = cbor.dumps(value, True)
        if encoded != data:
            problems.append("%s: %r encoded to %s" % (text, value, hexa(encoded)))
    return problems


def hexa(data):
    return "".join("%02x" % b for b in data)


def run_known_answers():
    """Every Appendix A row and the 4.2.1 example; returns ``[rows checked, problems]``."""
    problems = []
    for text, value, mode in APPENDIX_A:
        problems.extend(check_row(text, value, mode))
    value, text = DETERMINISTIC_EXAMPLE
    encoded = hexa(cbor.dumps(value, True))
    if encoded != text:
        problems.append("4.2.1 example encoded to %s" % encoded)
    if not same(cbor.loads(unhex(text)), value):
        problems.append("4.2.1 example did not decode to its value")
    return [len(APPENDIX_A), problems]


def run_malformed():
    """``"ErrorType: message"`` for each ``MALFORMED`` input, in order."""
    out = []
    for text, _ in MALFORMED:
        try:
            cbor.loads(unhex(text))
            out.append("accepted")
        except Exception as exc:  # which type escapes is what this records
            out.append("%s: %s" % (type(exc).__name__, exc))
    return out
