"""CBOR (RFC 8949): the core's own small encoder and decoder (MicroPython has none).

``dumps(obj, deterministic=False, max_depth=MAX_DEPTH) -> bytes`` and
``loads(data, max_depth=MAX_DEPTH) -> obj``; ``loads_prefix(data)`` decodes the first item
and returns ``(obj, bytes_used)``.

Types, both ways:

==========================  ==================================================================
CBOR                        Python
==========================  ==================================================================
unsigned / negative int     int (the full 64-bit ranges); beyond them bignums, tags 2 and 3
byte string                 bytes (bytearray and memoryview encode as byte strings too)
text string                 str (strict UTF-8 both ways, on both interpreters)
array                       list (tuple encodes as an array too; an array used as a map key
                            decodes to a tuple, which is hashable)
map                         dict
false / true / null         False / True / None
float16 / 32 / 64           float
tag                         ``Tag(tag, value)``, except bignums (tags 2, 3), which are ints
==========================  ==================================================================

The encoder always writes RFC 8949 preferred serialization (section 4.1): the shortest
argument for every length and integer, and each float in the shortest of half, single or
double precision that holds it exactly (every NaN becomes the canonical ``f97e00``). Half
and single precision are packed by hand from the bits: MicroPython's ``struct`` has no
half floats on every port. ``deterministic=True`` adds the core deterministic encoding
requirements of section 4.2.1: map keys sorted by the bytewise lexicographic order of their
encodings. Use it for anything that is authenticated or compared as bytes: without it,
maps come out in the dict's order, and MicroPython's dict keeps no insertion order.

The decoder is strict. Anything it does not accept raises ``DecodeError`` (never IndexError,
KeyError, UnicodeError or RecursionError):

- truncated input, and bytes left over after the item (``loads``; ``loads_prefix`` allows
  them);
- reserved additional information (28 to 30), a stray "break" (0xff);
- indefinite lengths (RFC 8949 3.2.2): rejected, not supported. Nothing in bankiot writes
  them, COSE forbids them in what is authenticated, and a bounded decoder is simpler
  without them;
- simple values other than false, true and null (``undefined`` included), and the
  two-byte form of a simple value below 32, which RFC 8949 3.3 calls not well-formed;
- text that is not valid UTF-8 (overlong forms, surrogates, beyond U+10FFFF);
- duplicate map keys (RFC 8949 5.6), including keys Python holds equal (1, 1.0, true);
  a map as a map key (it has no hashable form here);
- a bignum tag whose content is not a byte string;
- nesting deeper than ``max_depth`` arrays, maps and tags;
- lengths larger than the input left (checked before anything is allocated).

Floats on the boards: the ESP32 and Pico W ports keep floats in single precision, so a
double decoded there is rounded to single; encoding there never needs more than single.
A NaN's sign and payload are not kept.
"""

import struct

from bankiot_core._compat import IS_MICROPYTHON, const
from bankiot_core.errors import DecodeError, LocalError

MAX_DEPTH = const(16)

_UINT = const(0)
_NINT = const(1)
_BYTES = const(2)
_TEXT = const(3)
_ARRAY = const(4)
_MAP = const(5)
_TAG = const(6)
_SIMPLE = const(7)

_TAG_BIGNUM = const(2)
_TAG_NEG_BIGNUM = const(3)

_U64_LIMIT = 1 << 64  # not const(): larger than a small int on the boards
_INF = float("inf")
_BYTES_LIKE = (bytes, bytearray, memoryview)
_SEQUENCES = (list, tuple)


class Tag:
    """A CBOR tag: ``tag`` (an int, 0 to 2**64 - 1) applied to ``value``.

    Equal by value, and hashable when its value is, so a tag can be a map key.
    """

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self.tag, self.value))

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


# ---- encoding --------------------------------------------------------------------------


def dumps(obj, deterministic=False, max_depth=MAX_DEPTH):
    """Encode ``obj`` as CBOR in preferred serialization; return bytes.

    ``deterministic=True`` sorts every map's keys by their encoded bytes (RFC 8949 4.2.1).
    Raises ``LocalError`` for a value of a type that has no CBOR form here, an int tag
    number out of range, text that cannot be UTF-8, or nesting deeper than ``max_depth``.
    """
    buf = bytearray()
    _encode(buf, obj, deterministic, max_depth)
    return bytes(buf)


def write_head(buf, major, n):
    """Append to bytearray ``buf`` the head of an item of ``major`` type (0..7) with argument
    ``n`` (0 <= n < 2**64) in its shortest form: for callers that lay out a fixed structure
    by hand (``cose``'s envelope) instead of building objects for ``dumps``."""
    mt = major << 5
    if n < 24:
        buf.append(mt | n)
    elif n < 0x100:
        buf.append(mt | 24)
        buf.append(n)
    elif n < 0x10000:
        buf.append(mt | 25)
        buf.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        buf.append(mt | 26)
        buf.extend(n.to_bytes(4, "big"))
    else:
        buf.append(mt | 27)
        buf.extend(n.to_bytes(8, "big"))


def _encode_int(buf, n):
    if n >= 0:
        if n < _U64_LIMIT:
            write_head(buf, _UINT, n)
            return
        tag = _TAG_BIGNUM
    else:
        n = -1 - n
        if n < _U64_LIMIT:
            write_head(buf, _NINT, n)
            return
        tag = _TAG_NEG_BIGNUM
    # RFC 8949 3.4.3: beyond 64 bits, a bignum, its content without leading zero bytes.
    size = 9  # n >= 2**64 (MicroPython's int has no bit_length)
    while n >> (8 * size):
        size += 1
    content = n.to_bytes(size, "big")
    write_head(buf, _TAG, tag)
    write_head(buf, _BYTES, len(content))
    buf.extend(content)


def _half_bits(bits):
    """The binary16 bits equal to the binary32 ``bits``, or -1 if half cannot hold it."""
    sign = (bits >> 16) & 0x8000
    exp = (bits >> 23) & 0xFF
    mant = bits & 0x7FFFFF
    if exp == 0xFF:  # infinity (NaN is handled before)
        return sign | 0x7C00 if not mant else -1
    if exp == 0:  # zero, or a single subnormal, far below half's range
        return sign if not mant else -1
    e = exp - 127
    if -14 <= e <= 15:  # a half normal if the low 13 bits of the mantissa are zero
        if mant & 0x1FFF:
            return -1
        return sign | ((e + 15) << 10) | (mant >> 13)
    if -24 <= e < -14:  # a half subnormal: m * 2**-24 with m = 1.mant * 2**(e + 24)
        full = mant | 0x800000
        shift = -e - 1
        if full & ((1 << shift) - 1):
            return -1
        return sign | (full >> shift)
    return -1


def _encode_float(buf, x):
    if x != x:  # NaN: the canonical quiet NaN in half precision, as RFC 8949 4.2.2 suggests
        buf.extend(b"\xf9\x7e\x00")
        return
    if x == _INF or x == -_INF:
        buf.extend(b"\xf9\x7c\x00" if x > 0 else b"\xf9\xfc\x00")
        return
    try:
        single = struct.pack(">f", x)
    except OverflowError:  # CPython: too large for single precision
        single = None
    if single is not None and struct.unpack(">f", single)[0] == x:
        half = _half_bits(int.from_bytes(single, "big"))
        if half >= 0:
            buf.append(0xF9)
            buf.append(half >> 8)
            buf.append(half & 0xFF)
        else:
            buf.append(0xFA)
            buf.extend(single)
        return
    buf.append(0xFB)
    buf.extend(struct.pack(">d", x))


def _encode(buf, obj, deterministic, depth):
    if obj is None:
        buf.append(0xF6)
    elif obj is False:
        buf.append(0xF4)
    elif obj is True:
        buf.append(0xF5)
    elif isinstance(obj, int):
        _encode_int(buf, obj)
    elif isinstance(obj, float):
        _encode_float(buf, obj)
    elif isinstance(obj, str):
        try:
            raw = obj.encode("utf-8")
        except UnicodeError:
            raise LocalError("text cannot be encoded as UTF-8 (a lone surrogate?)") from None
        write_head(buf, _TEXT, len(raw))
        buf.extend(raw)
    elif isinstance(obj, _BYTES_LIKE):
        write_head(buf, _BYTES, len(obj))
        buf.extend(obj)
    else:
        if depth <= 0:
            raise LocalError("CBOR nesting deeper than the limit; nothing encoded")
        depth -= 1
        if isinstance(obj, _SEQUENCES):
            write_head(buf, _ARRAY, len(obj))
            for item in obj:
                _encode(buf, item, deterministic, depth)
        elif isinstance(obj, dict):
            _encode_map(buf, obj, deterministic, depth)
        elif isinstance(obj, Tag):
            number = obj.tag
            if not isinstance(number, int) or number is True or number is False:
                raise LocalError("CBOR tag number must be an int, not %s" % type(number).__name__)
            if not 0 <= number < _U64_LIMIT:
                raise LocalError("CBOR tag number %d is out of range 0..2**64-1" % number)
            write_head(buf, _TAG, number)
            _encode(buf, obj.value, deterministic, depth)
        else:
            raise LocalError("cannot encode a %s as CBOR" % type(obj).__name__)


def _first(pair):
    return pair[0]


def _encode_map(buf, obj, deterministic, depth):
    write_head(buf, _MAP, len(obj))
    if not deterministic:
        for key in obj:
            _encode(buf, key, False, depth)
            _encode(buf, obj[key], False, depth)
        return
    pairs = []
    for key in obj:
        encoded = bytearray()
        _encode(encoded, key, True, depth)
        pairs.append((bytes(encoded), obj[key]))
    pairs.sort(key=_first)  # bytewise lexicographic order of the encoded keys (4.2.1)
    previous = None
    for encoded, value in pairs:
        if encoded == previous:
            raise LocalError("two map keys have the same CBOR encoding")
        previous = encoded
        buf.extend(encoded)
        _encode(buf, value, True, depth)


# ---- decoding --------------------------------------------------------------------------


def loads(data, max_depth=MAX_DEPTH):
    """Decode exactly one CBOR item from ``data`` (bytes-like); raise DecodeError if malformed."""
    decoder = _Decoder(data, max_depth)
    obj = decoder.item(0, False)
    left = decoder.end - decoder.pos
    if left:
        raise DecodeError("%d trailing bytes after the CBOR item (offset %d)" % (left, decoder.pos))
    return obj


def loads_prefix(data, max_depth=MAX_DEPTH):
    """Decode the first CBOR item of ``data``; return ``(obj, bytes_used)``."""
    decoder = _Decoder(data, max_depth)
    obj = decoder.item(0, False)
    return obj, decoder.pos


def _utf8_valid(raw):
    """True if ``raw`` is well-formed UTF-8 (RFC 3629 section 4), as CPython's codec decides.

    MicroPython's ``decode`` accepts overlong forms, surrogates and code points beyond
    U+10FFFF, so the decoder checks with this there.
    """
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            more = 1
        elif 0xE0 <= c <= 0xEF:
            more = 2
            if c == 0xE0:
                lo = 0xA0  # no overlong three-byte forms
            elif c == 0xED:
                hi = 0x9F  # no surrogates
        elif 0xF0 <= c <= 0xF4:
            more = 3
            if c == 0xF0:
                lo = 0x90  # no overlong four-byte forms
            elif c == 0xF4:
                hi = 0x8F  # nothing beyond U+10FFFF
        else:
            return False
        if i + more >= n:  # truncated sequence
            return False
        b = raw[i + 1]
        if b < lo or b > hi:
            return False
        for j in range(i + 2, i + 1 + more):
            b = raw[j]
            if b < 0x80 or b > 0xBF:
                return False
        i += 1 + more
    return True


def _half_to_float(h):
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        value = mant / 16777216.0  # mant * 2**-24: exact
    elif exp == 0x1F:
        value = float("nan") if mant else _INF
    else:
        value = (mant + 1024) * 2.0 ** (exp - 25)  # exact: a power of two times an int
    return -value if h & 0x8000 else value


class _Decoder:
    """One pass over one buffer; ``pos`` moves forward, ``item`` recurses per container."""

    def __init__(self, data, max_depth):
        if not isinstance(data, _BYTES_LIKE):
            raise DecodeError("CBOR input must be bytes, not %s" % type(data).__name__)
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.pos = 0
        self.end = len(self.data)
        self.max_depth = max_depth

    def _take(self, n):
        start = self.pos
        if n > self.end - start:
            raise DecodeError(
                "CBOR truncated: %d bytes needed at offset %d, %d left"
                % (n, start, self.end - start)
            )
        self.pos = start + n
        return start

    def _argument(self, ai, major):
        """The head's argument for additional information ``ai``."""
        if ai < 24:
            return ai
        if ai > 27:
            at = self.pos - 1
            if ai < 31:
                raise DecodeError("CBOR reserved additional information %d (offset %d)" % (ai, at))
            if major == _SIMPLE:
                raise DecodeError("CBOR break (0xff) outside an indefinite-length item")
            if _BYTES <= major <= _MAP:
                raise DecodeError("CBOR indefinite-length items are not supported (offset %d)" % at)
            raise DecodeError("CBOR major type %d cannot have an indefinite length" % major)
        size = 1 << (ai - 24)
        start = self._take(size)
        data = self.data
        n = 0
        for i in range(start, start + size):
            n = (n << 8) | data[i]
        return n

    def item(self, depth, frozen):
        """Decode one item; ``frozen`` means it is (part of) a map key: arrays become tuples."""
        start = self._take(1)
        ib = self.data[start]
        major = ib >> 5
        ai = ib & 0x1F
        if major == _SIMPLE:
            return self._simple(ai)
        n = self._argument(ai, major)
        if major == _UINT:
            return n
        if major == _NINT:
            return -1 - n
        if major <= _TEXT:  # byte or text string (0 and 1 returned above)
            first = self._take(n)
            raw = self.data[first : first + n]
            if major == _BYTES:
                return raw
            if IS_MICROPYTHON and not _utf8_valid(raw):
                raise DecodeError("CBOR text at offset %d is not valid UTF-8" % start)
            try:
                return raw.decode("utf-8")
            except UnicodeError:
                raise DecodeError("CBOR text at offset %d is not valid UTF-8" % start) from None
        if depth >= self.max_depth:
            raise DecodeError("CBOR nesting deeper than %d at offset %d" % (self.max_depth, start))
        depth += 1
        if major == _ARRAY:
            if n > self.end - self.pos:  # every item takes at least one byte
                raise DecodeError(
                    "CBOR array of %d items at offset %d is longer than the input" % (n, start)
                )
            items = [self.item(depth, frozen) for _ in range(n)]
            return tuple(items) if frozen else items
        if major == _MAP:
            if frozen:
                raise DecodeError("CBOR map used as a map key (offset %d)" % start)
            if n > (self.end - self.pos) >> 1:  # every pair takes at least two bytes
                raise DecodeError(
                    "CBOR map of %d pairs at offset %d is longer than the input" % (n, start)
                )
            out = {}
            for _ in range(n):
                at = self.pos
                key = self.item(depth, True)
                if key in out:
                    raise DecodeError("CBOR map has a duplicate key at offset %d" % at)
                out[key] = self.item(depth, False)
            return out
        # major == _TAG
        value = self.item(depth, frozen)
        if _TAG_BIGNUM <= n <= _TAG_NEG_BIGNUM:
            if not isinstance(value, bytes):
                raise DecodeError("CBOR bignum (tag %d) at offset %d is not bytes" % (n, start))
            big = int.from_bytes(value, "big")
            return big if n == _TAG_BIGNUM else -1 - big
        return Tag(n, value)

    def _simple(self, ai):
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        at = self.pos - 1
        if ai == 25:
            start = self._take(2)
            d = self.data
            return _half_to_float((d[start] << 8) | d[start + 1])
        if ai == 26:
            start = self._take(4)
            return struct.unpack(">f", self.data[start : start + 4])[0]
        if ai == 27:
            start = self._take(8)
            return struct.unpack(">d", self.data[start : start + 8])[0]
        if ai == 24:
            value = self.data[self._take(1)]
            if value < 32:
                raise DecodeError("CBOR simple value %d in two bytes (offset %d)" % (value, at))
            raise DecodeError("CBOR simple value %d is not supported (offset %d)" % (value, at))
        if ai < 24:
            if ai == 23:
                raise DecodeError("CBOR undefined is not supported (offset %d)" % at)
            raise DecodeError("CBOR simple value %d is not supported (offset %d)" % (ai, at))
        self._argument(ai, _SIMPLE)  # 28..31: reserved or break; raises
        raise DecodeError("CBOR malformed simple value (offset %d)" % at)  # not reached
