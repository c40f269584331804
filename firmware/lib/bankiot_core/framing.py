"""Frames on a serial line: COBS with a CRC-32, and a streaming deframer that resynchronises.

An ESP32 radio co-processor feeds a Raspberry Pi gateway over a UART. A UART delivers
bytes, not messages, and loses, adds or flips some of them (a reset co-processor prints
its boot banner, a cable is plugged in mid-frame). Each message therefore goes as one frame:

    0x00  COBS(payload + CRC-32(payload), 4 bytes little-endian)  0x00

- COBS (Consistent Overhead Byte Stuffing, Cheshire and Baker, IEEE/ACM ToN 1999) removes
  every 0x00 from the frame at a cost of one byte per 254 (at least one), so 0x00 is only
  ever a delimiter: a receiver that lost its place finds the next frame at the next 0x00.
- The CRC is CRC-32 as in zlib, Ethernet and PNG (polynomial 0x04C11DB7 reflected,
  initial and final XOR 0xFFFFFFFF; check value of "123456789" is 0xCBF43926), appended
  little-endian. Why CRC-32 and not CRC-16: both interpreters have it in C as
  ``binascii.crc32`` (fast on a board), and it misses a random corruption once in 2**32
  frames instead of 2**16: a UART with garbage on it sees many frames. Where a port lacks
  ``binascii.crc32``, ``crc32`` here falls back to a table-driven version in Python.
- A delimiter goes before each frame as well as after: whatever noise came before cannot
  merge into the frame. Two delimiters in a row delimit an empty frame, which is skipped.

``encode_frame(payload)`` makes a frame; ``Deframer(max_payload).feed(data)`` takes bytes as
they come, in any pieces, and returns the payloads of the complete, intact frames among
them. It never returns a frame whose CRC fails; it drops and counts:

- ``bad_crc``: a frame whose CRC does not match (corrupted, or two frames run together);
- ``malformed``: not valid COBS (a code byte points past the end of the frame);
- ``too_short``: fewer than the 4 CRC bytes once decoded;
- ``oversize``: a frame longer than ``max_payload`` allows; the deframer discards it up to
  the next delimiter without buffering it, so its memory is fixed at construction.

and counts ``frames`` (payloads returned) and ``bytes_in``. All buffers are allocated once.
"""

from bankiot_core._compat import const
from bankiot_core.errors import DecodeError, LocalError

try:
    from binascii import crc32 as _crc32_c
except ImportError:  # pragma: no cover - a port built without binascii
    _crc32_c = None

CRC_SIZE = const(4)
DELIMITER = const(0)
_BLOCK = const(254)  # data bytes a COBS code byte can cover without an implied zero
_BYTES_LIKE = (bytes, bytearray, memoryview)
_ZERO = b"\x00"

COUNTERS = ("frames", "bytes_in", "bad_crc", "malformed", "too_short", "oversize")

_table = None


def _crc32_table():
    """CRC-32 of each byte value, reflected polynomial 0xEDB88320 (built on first use)."""
    global _table
    if _table is None:
        table = []
        for n in range(256):
            c = n
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            table.append(c)
        _table = table
    return _table


def crc32_python(data, crc=0):
    """CRC-32 of ``data`` continuing from ``crc``, in Python (the fallback engine)."""
    table = _crc32_table()
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32(data, crc=0):
    """CRC-32 (zlib's) of ``data`` continuing from ``crc``: an int in 0 .. 2**32 - 1."""
    if _crc32_c is not None:
        return _crc32_c(data, crc) & 0xFFFFFFFF
    return crc32_python(data, crc)


def encoded_size(n):
    """The largest COBS encoding of ``n`` bytes (without delimiters): n + ceil(n/254), min 1."""
    return n + n // _BLOCK + 1


def cobs_encode(data):
    """COBS-encode ``data``: the same bytes with every 0x00 removed (no delimiters)."""
    data = bytes(data)  # bytes.find on every interpreter
    n = len(data)
    out = bytearray()
    pos = 0
    while True:
        limit = pos + _BLOCK
        if limit > n:
            limit = n
        zero = data.find(_ZERO, pos, limit)
        if zero >= 0:
            # A block ending in a zero: its code is its length + 1, the zero is implied.
            out.append(zero - pos + 1)
            out.extend(data[pos:zero])
            pos = zero + 1
            continue  # even at the end: a trailing zero leaves an empty last block
        run = limit - pos
        if run == _BLOCK:
            # 254 non-zero bytes: code 0xFF, no implied zero.
            out.append(0xFF)
            out.extend(data[pos:limit])
            pos = limit
            if pos == n:
                return bytes(out)
            continue
        out.append(run + 1)
        out.extend(data[pos:limit])
        return bytes(out)


def _cobs_decode_into(src, n, dst):
    """Decode COBS ``src[:n]`` into ``dst``; return the decoded length, or -1 if malformed."""
    r = 0
    w = 0
    while r < n:
        code = src[r]
        if code == 0:
            return -1
        end = r + code
        if end > n:
            return -1
        k = code - 1
        dst[w : w + k] = src[r + 1 : end]
        w += k
        r = end
        if code != 0xFF and r < n:
            dst[w] = 0
            w += 1
    return w


def cobs_decode(data):
    """Decode one COBS block (no delimiters); raise DecodeError if it is not valid COBS."""
    data = bytes(data)
    if data.find(_ZERO) >= 0:
        raise DecodeError("not valid COBS: it contains a zero byte")
    n = len(data)
    out = bytearray(n)
    m = _cobs_decode_into(memoryview(data), n, out)
    if m < 0:
        raise DecodeError("not valid COBS: a code byte points past the end")
    return bytes(out[:m])


def encode_frame(payload):
    """One frame: ``00 COBS(payload + CRC-32 little-endian) 00``."""
    if not isinstance(payload, _BYTES_LIKE):
        raise LocalError("a frame payload must be bytes, not %s" % type(payload).__name__)
    c = crc32(payload)
    body = bytearray(payload)
    body.append(c & 0xFF)
    body.append((c >> 8) & 0xFF)
    body.append((c >> 16) & 0xFF)
    body.append(c >> 24)
    out = bytearray(_ZERO)
    out.extend(cobs_encode(body))
    out.append(DELIMITER)
    return bytes(out)


class Deframer:
    """Payloads out of a byte stream of frames, whatever the pieces it arrives in.

    ``max_payload`` bounds the payloads accepted (and the memory: two buffers of about
    ``max_payload`` bytes each, allocated here). Not re-entrant.
    """

    def __init__(self, max_payload=1024):
        if not isinstance(max_payload, int) or max_payload < 0:
            raise LocalError("max_payload must be a non-negative int, not %r" % (max_payload,))
        self._max_payload = max_payload
        self._limit = encoded_size(max_payload + CRC_SIZE)
        self._raw = bytearray(self._limit)  # the frame so far, still COBS-encoded
        self._raw_view = memoryview(self._raw)
        self._decoded = bytearray(self._limit)
        self._decoded_view = memoryview(self._decoded)
        self._len = 0
        self._discarding = False
        self._counts = {}
        for name in COUNTERS:
            self._counts[name] = 0

    def feed(self, data):
        """Take the next bytes from the line; return the payloads (bytes) completed by them."""
        out = []
        if not data:
            return out
        if not isinstance(data, bytes):
            data = bytes(data)  # bytes.find on every interpreter
        n = len(data)
        self._counts["bytes_in"] += n
        view = memoryview(data)
        pos = 0
        while pos < n:
            end = data.find(_ZERO, pos)
            if end < 0:
                self._append(view, pos, n)
                break
            self._append(view, pos, end)
            self._finish(out)
            pos = end + 1
        return out

    def reset(self):
        """Forget a partial frame (after reopening the port, for instance)."""
        self._len = 0
        self._discarding = False

    def counters(self):
        """A copy of the counters (see the module doc)."""
        return dict(self._counts)

    def _append(self, view, start, end):
        if self._discarding or start == end:
            return
        size = end - start
        if self._len + size > self._limit:
            self._discarding = True
            self._counts["oversize"] += 1
            return
        self._raw_view[self._len : self._len + size] = view[start:end]
        self._len += size

    def _finish(self, out):
        length = self._len
        self._len = 0
        if self._discarding:
            self._discarding = False
            return
        if not length:
            return  # two delimiters in a row: an empty frame, the gap between frames
        m = _cobs_decode_into(self._raw_view, length, self._decoded)
        if m < 0:
            self._counts["malformed"] += 1
            return
        if m < CRC_SIZE:
            self._counts["too_short"] += 1
            return
        n = m - CRC_SIZE
        if n > self._max_payload:  # fitted the buffer, but COBS had less overhead to add
            self._counts["oversize"] += 1
            return
        d = self._decoded
        sent = d[n] | (d[n + 1] << 8) | (d[n + 2] << 16) | (d[n + 3] << 24)
        if crc32(self._decoded_view[:n]) != sent:
            self._counts["bad_crc"] += 1
            return
        self._counts["frames"] += 1
        out.append(bytes(self._decoded_view[:n]))
