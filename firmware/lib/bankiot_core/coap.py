"""CoAP (RFC 7252) client protocol with Block1 and Block2 (RFC 7959), sans-I/O.

The gateway firmware posts sealed batches to the cloud over CoAP. This module is the whole
protocol and none of the I/O: the driver owns the UDP socket and the clock, and talks to one
``CoapClient`` per server (one endpoint: message ids count per endpoint, RFC 7252 4.4)::

    client = CoapClient(random.getrandbits, host="ingest.example")
    sock.send(client.request(POST, "batches", body, now_ms, content_format=CBOR))
    while waiting:
        out = client.receive_datagram(data, now_ms)   # or, when nothing came in time:
        out = client.tick(now_ms)                     # retransmissions, give-ups
        send every datagram in out.datagrams; handle out.events

``receive_datagram`` and ``tick`` both return ``Output(datagrams, events)``: what arrives can
require sending (the ACK of a separate response, the next Block1 block, a RST) and time
passing can end an exchange (``GiveUp``). ``next_timeout_ms(now_ms)`` says when ``tick``
is next due. Malformed datagrams raise ``DecodeError``; the driver drops and counts them.

What the client does, with the RFC's section:

- Messages (3, 3.1): header, token (0 to 8 bytes), options with the 13/269 extended delta
  and length forms, payload marker. ``encode_message`` / ``decode_message`` are the codec;
  decoding is strict (version 1, token length at most 8, no reserved nibble 15, no payload
  marker without payload, an Empty message has nothing after its header, option numbers
  stay within 16 bits). Encoding is canonical, so ``encode(decode(d)) == d`` for every
  datagram that decodes.
- Reliability (4.2, 4.8): every request is Confirmable. The first timeout is drawn from
  ``[ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR)`` with the ``rand`` the driver gives (a
  callable like ``random.getrandbits``), then doubles on each of at most ``MAX_RETRANSMIT``
  retransmissions of the identical datagram; when the last timeout expires the exchange
  ends with ``GiveUp(token, "no_ack")``. A RST for the request ends it with
  ``GiveUp(token, "reset")``.
- Responses (5.2): piggybacked in the ACK (Message ID and token must both match), or
  separate: an empty ACK stops retransmission, then a CON response (matched by token) is
  acknowledged with an empty ACK carrying its Message ID. A separate response may overtake
  the empty ACK. A retransmitted CON response (the ACK was lost) is acknowledged again but
  reported once. If no separate response arrives within ``response_timeout_ms`` the
  exchange ends with ``GiveUp(token, "no_response")``. A CON that matches nothing (a
  response for a forgotten request, Figure 21; a CoAP ping; a request to this client) is
  answered with RST; unexpected ACK, RST and NON messages are ignored.
- Message ids (4.4): one 16-bit counter per client, started wherever the driver says
  (``message_id``; drawn from ``rand`` by default, as the RFC recommends), one new id per
  new CON message, wrapping.
- Tokens (5.3.1): passed to ``request`` (random bytes from the driver), or else a
  ``token_length``-byte counter that starts at a random value. One token covers all blocks
  of a Block1 and Block2 transfer.
- Options (5.10): Uri-Host (from ``host``), Uri-Path (from ``path``), Content-Format, and any
  extra ``(number, value bytes)`` pairs; encoded in ascending order, repeated options
  keeping their order.
- Block1 (RFC 7959 2.3, 2.5, 2.9): a body longer than ``block_size`` goes as blocks of that
  size, each a new CON with a new Message ID and Block1 ``num/M/SZX``. After a ``2.31
  Continue`` (or another success that carries Block1, from a non-atomic server) the next
  block goes; a server asking for a smaller size in its Block1 is followed, the block
  number recomputed so the byte offset continues (the negotiation example in RFC 7959
  3.2). A ``4.13 Request Entity Too Large`` carrying a smaller Block1 size restarts the
  transfer at block 0 in that size (2.9.3); the size only ever shrinks, so this ends. The
  response to the last block, or any error before it, is the answer. A separate response
  whose Block1 names another block than the one in flight is stale (a delayed duplicate)
  and is ignored.

- Block2 (RFC 7959 2.4, 2.5, 3.3): a success response whose Block2 says more blocks follow
  is fetched whole: the client asks for the next block with the same method and options, no
  payload, Block2 ``num/0/SZX`` (a new CON with a new Message ID, the same token), until a
  block says it is the last; then the whole body is one ``Response``. The size is the
  server's, or ``block_size`` if that is smaller (late negotiation, 2.4: the block number is
  recomputed so the byte offset continues). Every block must continue at the byte offset
  reached, be a whole block when more follow, and carry the first block's ETag (none if it
  had none), or the exchange ends with ``GiveUp(token, "block2")`` (the resource changed
  between blocks, or the server mixed two transfers); a body longer than
  ``max_response_bytes`` (announced in Size2, or reached) ends with ``GiveUp(token,
  "too_large")``. An error response to a later block (4.08 Request Entity Incomplete when
  the server forgot the body) is the answer. The ``Response``'s options are the first
  block's, without Block2; a separate response whose Block2 names another block than the
  one asked for is stale and ignored. This is how a gateway gets a response that does not
  fit in one datagram: the cloud's answer to a batch carries the gateway's due configuration
  and commands (``cloud.ingest.coap_server``).

Requests in flight are capped at ``nstart`` (RFC 7252 4.7, default 1): ``request`` raises
``LocalError`` when the cap is reached. Times are ``ticks`` (wrapping milliseconds).

Counters (``counters()``): ``datagrams_in``, ``malformed`` (raised DecodeError),
``ignored`` (valid but matching nothing, or stale), ``duplicates`` (retransmitted CON
responses acknowledged again), ``retransmissions``, ``responses``, ``give_ups``,
``resets_sent``.
"""

from collections import namedtuple

from bankiot_core._compat import const
from bankiot_core.errors import DecodeError, LocalError
from bankiot_core.ticks import elapsed, wrap

# Message types (RFC 7252 3)
CON = const(0)
NON = const(1)
ACK = const(2)
RST = const(3)

# Codes, as the byte on the wire: class << 5 | detail (RFC 7252 12.1, RFC 7959 2.9)
EMPTY = const(0x00)
GET = const(0x01)
POST = const(0x02)
PUT = const(0x03)
DELETE = const(0x04)
CREATED = const(0x41)  # 2.01
DELETED = const(0x42)  # 2.02
VALID = const(0x43)  # 2.03
CHANGED = const(0x44)  # 2.04
CONTENT = const(0x45)  # 2.05
CONTINUE = const(0x5F)  # 2.31
BAD_REQUEST = const(0x80)  # 4.00
BAD_OPTION = const(0x82)  # 4.02
NOT_FOUND = const(0x84)  # 4.04
METHOD_NOT_ALLOWED = const(0x85)  # 4.05
REQUEST_ENTITY_INCOMPLETE = const(0x88)  # 4.08
REQUEST_ENTITY_TOO_LARGE = const(0x8D)  # 4.13
UNSUPPORTED_CONTENT_FORMAT = const(0x8F)  # 4.15
INTERNAL_SERVER_ERROR = const(0xA0)  # 5.00

# Option numbers (RFC 7252 5.10, RFC 7959 2.1 and 4)
IF_MATCH = const(1)
URI_HOST = const(3)
ETAG = const(4)
IF_NONE_MATCH = const(5)
OBSERVE = const(6)
URI_PORT = const(7)
LOCATION_PATH = const(8)
URI_PATH = const(11)
CONTENT_FORMAT = const(12)
MAX_AGE = const(14)
URI_QUERY = const(15)
ACCEPT = const(17)
LOCATION_QUERY = const(20)
BLOCK2 = const(23)
BLOCK1 = const(27)
SIZE2 = const(28)
PROXY_URI = const(35)
PROXY_SCHEME = const(39)
SIZE1 = const(60)

# Content-Formats (RFC 7252 12.3, RFC 8949 9.5)
TEXT_PLAIN = const(0)
OCTET_STREAM = const(42)
JSON = const(50)
CBOR = const(60)
COSE_ENCRYPT0 = const(16)

# Transmission parameters (RFC 7252 4.8, 4.8.2)
ACK_TIMEOUT_MS = const(2000)
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = const(4)
MAX_TRANSMIT_WAIT_MS = const(93000)
EXCHANGE_LIFETIME_MS = const(247000)

MAX_TOKEN_LENGTH = const(8)
MAX_OPTION_NUMBER = const(0xFFFF)
MAX_SZX = const(6)  # 1024 bytes; SZX 7 is reserved (BERT, RFC 8323, not over UDP)

Message = namedtuple("Message", ("mtype", "code", "mid", "token", "options", "payload"))
"""One decoded CoAP message. ``options`` is a tuple of ``(number, value bytes)`` in wire
(ascending) order; ``token`` and ``payload`` are bytes."""

Output = namedtuple("Output", ("datagrams", "events"))
"""What ``receive_datagram`` and ``tick`` return: datagrams to send (a list of bytes, in
order) and events (a list of ``Response`` and ``GiveUp``)."""

Response = namedtuple("Response", ("token", "code", "payload", "options"))
"""The answer to a request (for Block1, the response to its last block or the error that
ended it). ``options`` as in ``Message``."""

GiveUp = namedtuple("GiveUp", ("token", "reason"))
"""A request that ended without an answer: ``reason`` is ``"no_ack"`` (retransmissions
exhausted), ``"no_response"`` (acknowledged, but no separate response in time),
``"reset"`` (the server answered with RST), ``"block2"`` (the blocks of a response did not
fit together) or ``"too_large"`` (a response over ``max_response_bytes``)."""

COUNTERS = (
    "datagrams_in",
    "malformed",
    "ignored",
    "duplicates",
    "retransmissions",
    "responses",
    "give_ups",
    "resets_sent",
)

_WAIT_ACK = const(0)  # CON sent, no ACK yet: retransmitting
_WAIT_RESPONSE = const(1)  # empty ACK received: waiting for the separate response
_RECENT = const(8)  # Message IDs of CON responses remembered for duplicate detection
_BYTES_LIKE = (bytes, bytearray, memoryview)


def code_text(code):
    """``code`` as the RFC writes it: ``0x44`` -> ``"2.04"``."""
    return "%d.%02d" % (code >> 5, code & 0x1F)


def uint_bytes(value):
    """An unsigned option value in the fewest bytes, big-endian (RFC 7252 3.2): 0 -> b""."""
    if value < 0:
        raise LocalError("a uint option value cannot be negative: %d" % value)
    n = 0
    v = value
    while v:
        n += 1
        v >>= 8
    out = bytearray(n)
    for i in range(n - 1, -1, -1):
        out[i] = value & 0xFF
        value >>= 8
    return bytes(out)


def bytes_uint(value):
    """An unsigned option value from its big-endian bytes (any length, b"" -> 0)."""
    n = 0
    for b in value:
        n = (n << 8) | b
    return n


def option_values(options, number):
    """Every value of option ``number`` in ``options``, in order (a list of bytes)."""
    return [value for num, value in options if num == number]


def option_value(options, number, default=None):
    """The first value of option ``number`` in ``options``, or ``default``."""
    for num, value in options:
        if num == number:
            return value
    return default


def block_value(num, more, szx):
    """The Block1/Block2 option value for block ``num`` of size ``2 ** (szx + 4)``."""
    if not 0 <= szx <= MAX_SZX:
        raise LocalError("block SZX must be 0..6, not %d" % szx)
    if not 0 <= num < 0x100000:
        raise LocalError("block number must be 0..2**20-1, not %d" % num)
    return uint_bytes((num << 4) | (0x08 if more else 0) | szx)


def parse_block(value):
    """``(num, more, szx)`` from a Block1/Block2 option value (RFC 7959 2.2)."""
    if len(value) > 3:
        raise DecodeError("block option of %d bytes: at most 3" % len(value))
    v = bytes_uint(value)
    szx = v & 0x07
    if szx == 7:
        raise DecodeError("block option with the reserved SZX 7")
    return (v >> 4, bool(v & 0x08), szx)


def block_szx(size):
    """The SZX of a block ``size`` in bytes (16, 32, ... 1024)."""
    for szx in range(MAX_SZX + 1):
        if size == 1 << (szx + 4):
            return szx
    raise LocalError("block size must be a power of two from 16 to 1024, not %r" % (size,))


def _nibble(value):
    if value < 13:
        return value
    if value < 269:
        return 13
    return 14


def _extend(out, value):
    if value >= 269:
        value -= 269
        out.append(value >> 8)
        out.append(value & 0xFF)
    elif value >= 13:
        out.append(value - 13)


def _sorted_options(options):
    """Options in ascending number, repeated ones in the order given.

    MicroPython's sort is not stable, so each option carries its index as a tie-breaker.
    """
    keyed = [(option[0], i, option[1]) for i, option in enumerate(options)]
    keyed.sort()
    return keyed


def encode_message(mtype, code, mid, token=None, options=(), payload=None):
    """One CoAP datagram (RFC 7252 3). ``token`` and ``payload`` are bytes-like (None:
    empty); ``options`` are ``(number, value bytes)`` pairs in any order. Raises LocalError
    for values that cannot be encoded."""
    if token is None:
        token = b""
    if payload is None:
        payload = b""
    if not 0 <= mtype <= 3:
        raise LocalError("CoAP message type must be 0..3, not %r" % (mtype,))
    if not 0 <= code <= 0xFF:
        raise LocalError("CoAP code must be 0..255, not %r" % (code,))
    if not 0 <= mid <= 0xFFFF:
        raise LocalError("CoAP message id must be 0..65535, not %r" % (mid,))
    if not isinstance(token, _BYTES_LIKE) or len(token) > MAX_TOKEN_LENGTH:
        raise LocalError("CoAP token must be 0 to 8 bytes")
    if code == EMPTY and (token or options or payload):
        raise LocalError("an Empty CoAP message has no token, options or payload")
    out = bytearray(4)
    out[0] = 0x40 | (mtype << 4) | len(token)
    out[1] = code
    out[2] = mid >> 8
    out[3] = mid & 0xFF
    out.extend(token)
    last = 0
    for number, _, value in _sorted_options(options):
        if not 0 <= number <= MAX_OPTION_NUMBER:
            raise LocalError("CoAP option number must be 0..65535, not %r" % (number,))
        length = len(value)
        if length >= 65804:
            raise LocalError("CoAP option %d value of %d bytes is too long" % (number, length))
        delta = number - last
        out.append((_nibble(delta) << 4) | _nibble(length))
        _extend(out, delta)
        _extend(out, length)
        out.extend(value)
        last = number
    if payload:
        out.append(0xFF)
        out.extend(payload)
    return bytes(out)


def _extended(data, pos, n, size):
    """An option delta or length from its ``size`` extension bytes at ``pos`` (RFC 7252 3.1)."""
    if pos + size > n:
        raise DecodeError("CoAP option header runs past the end")
    if size == 1:
        return data[pos] + 13
    return ((data[pos] << 8) | data[pos + 1]) + 269


def decode_message(data):
    """Parse one datagram into a ``Message``; raise DecodeError if it is not valid CoAP."""
    n = len(data)
    if n < 4:
        raise DecodeError("CoAP datagram of %d bytes is shorter than the 4-byte header" % n)
    first = data[0]
    if first >> 6 != 1:
        raise DecodeError("CoAP version %d: only version 1 exists" % (first >> 6))
    tkl = first & 0x0F
    if tkl > MAX_TOKEN_LENGTH:
        raise DecodeError("CoAP token length %d: 9 to 15 are reserved" % tkl)
    code = data[1]
    mid = (data[2] << 8) | data[3]
    if code == EMPTY and n != 4:
        raise DecodeError("Empty CoAP message with %d bytes after its header" % (n - 4))
    pos = 4 + tkl
    if pos > n:
        raise DecodeError("CoAP datagram ends inside its %d-byte token" % tkl)
    token = bytes(data[4:pos])
    options = []
    number = 0
    payload = b""
    while pos < n:
        b = data[pos]
        pos += 1
        if b == 0xFF:
            if pos == n:
                raise DecodeError("CoAP payload marker followed by no payload")
            payload = bytes(data[pos:n])
            break
        delta = b >> 4
        length = b & 0x0F
        if delta == 15 or length == 15:
            raise DecodeError("CoAP option with the reserved nibble 15")
        if delta >= 13:
            size = delta - 12  # 13: one extension byte, 14: two
            delta = _extended(data, pos, n, size)
            pos += size
        if length >= 13:
            size = length - 12
            length = _extended(data, pos, n, size)
            pos += size
        number += delta
        if number > MAX_OPTION_NUMBER:
            raise DecodeError("CoAP option number %d is above 65535" % number)
        if pos + length > n:
            raise DecodeError("CoAP option %d value runs past the end" % number)
        options.append((number, bytes(data[pos : pos + length])))
        pos += length
    return Message(first >> 4 & 0x03, code, mid, token, tuple(options), payload)


def _path_options(path):
    """Uri-Path options from ``"a/b"`` / ``"/a/b"`` or a sequence of segments."""
    segments = [s for s in path.split("/") if s] if isinstance(path, str) else list(path)
    out = []
    for segment in segments:
        value = segment.encode() if isinstance(segment, str) else bytes(segment)
        if len(value) > 255:
            raise LocalError("Uri-Path segment of %d bytes: at most 255" % len(value))
        out.append((URI_PATH, value))
    return out


class _Exchange:
    """One request in flight: its body, where its Block1 transfer stands, its timer."""

    def __init__(self, token, method, options, body, szx):
        self.token = token
        self.method = method
        self.options = options  # request options without Block1
        self.body = body
        self.szx = szx  # None: the body goes in one message
        self.num = 0
        self.mid = 0
        self.datagram = b""
        self.state = _WAIT_ACK
        self.since = 0  # tick of the last (re)transmission or of the empty ACK
        self.timeout = 0
        self.retransmits = 0
        self.b2_szx = None  # None: no Block2 transfer; else the size asked for next
        self.b2_body = None  # the response body received so far (a bytearray)
        self.b2_first = None  # the first block's (code, options without Block2)
        self.b2_etag = None


class CoapClient:
    """The client side of CoAP over UDP for one server, sans-I/O (see the module doc).

    ``rand(bits)`` returns a random int below ``2 ** bits`` (``random.getrandbits``; at most
    32 bits are asked for). Parameters default to RFC 7252's; ``block_size`` (16 to 1024,
    a power of two) is the largest block this client sends (Block1) or asks for (Block2);
    ``max_response_bytes`` bounds a response body fetched in blocks (the RAM it takes).
    """

    def __init__(
        self,
        rand,
        host=None,
        message_id=None,
        token_length=4,
        block_size=1024,
        ack_timeout_ms=ACK_TIMEOUT_MS,
        ack_random_factor=ACK_RANDOM_FACTOR,
        max_retransmit=MAX_RETRANSMIT,
        response_timeout_ms=MAX_TRANSMIT_WAIT_MS,
        nstart=1,
        max_response_bytes=16384,
    ):
        if not 1 <= token_length <= 4:
            raise LocalError("counter token length must be 1..4 bytes, not %r" % (token_length,))
        if ack_timeout_ms < 1 or ack_random_factor < 1 or max_retransmit < 0 or nstart < 1:
            raise LocalError("CoAP transmission parameters out of range")
        self._rand = rand
        self._host = None
        if host:
            self._host = host.encode() if isinstance(host, str) else bytes(host)
            if len(self._host) > 255:
                raise LocalError("Uri-Host of %d bytes: at most 255" % len(self._host))
        self._mid = (rand(16) if message_id is None else message_id) & 0xFFFF
        self._token_length = token_length
        self._token_mask = (1 << (8 * token_length)) - 1
        self._token_counter = rand(8 * token_length) & self._token_mask
        self._max_szx = block_szx(block_size)
        self._ack_timeout = ack_timeout_ms
        self._spread = int(ack_timeout_ms * (ack_random_factor - 1))
        self._max_retransmit = max_retransmit
        self._response_timeout = response_timeout_ms
        self._nstart = nstart
        self._max_response = max_response_bytes
        self._exchanges = {}  # token -> _Exchange
        self._recent = [-1] * _RECENT  # Message IDs of CON responses acknowledged
        self._recent_at = 0
        self._counts = {}
        for name in COUNTERS:
            self._counts[name] = 0
        self.last_token = None

    # --- public interface

    def request(
        self,
        method,
        path,
        payload=b"",
        now_ms=0,
        content_format=None,
        token=None,
        options=(),
    ):
        """Start a confirmable request; return the first datagram to send.

        ``path`` is ``"a/b"`` or a sequence of segments; ``content_format`` an int;
        ``token`` bytes (0 to 8; default: the next counter token); ``options`` extra
        ``(number, value bytes)`` pairs. The token is also left in ``last_token``.
        """
        if len(self._exchanges) >= self._nstart:
            raise LocalError(
                "CoAP client has %d requests in flight (NSTART %d): wait for an answer"
                % (len(self._exchanges), self._nstart)
            )
        if token is None:
            token = self._next_token()
        elif not isinstance(token, _BYTES_LIKE) or len(token) > MAX_TOKEN_LENGTH:
            raise LocalError("CoAP token must be 0 to 8 bytes")
        token = bytes(token)
        if token in self._exchanges:
            raise LocalError("CoAP token %r is already in use" % (token,))
        if not isinstance(payload, _BYTES_LIKE):
            raise LocalError("CoAP payload must be bytes")
        opts = []
        if self._host is not None:
            opts.append((URI_HOST, self._host))
        opts.extend(_path_options(path))
        if content_format is not None:
            opts.append((CONTENT_FORMAT, uint_bytes(content_format)))
        for number, value in options:
            if number in (BLOCK1, BLOCK2):
                raise LocalError("Block1 and Block2 are managed by the client")
            opts.append((number, bytes(value)))
        szx = None
        if len(payload) > (1 << (self._max_szx + 4)):
            szx = self._max_szx
        exchange = _Exchange(token, method, opts, payload, szx)
        self._transmit(exchange, now_ms)
        self._exchanges[token] = exchange
        self.last_token = token
        return exchange.datagram

    def receive_datagram(self, data, now_ms):
        """Process one datagram from the server; return ``Output(datagrams, events)``.

        Raises DecodeError (and counts it) if ``data`` is not valid CoAP; nothing changes.
        """
        self._counts["datagrams_in"] += 1
        try:
            msg = decode_message(data)
            block = option_value(msg.options, BLOCK1)
            if block is not None and msg.code >> 5 != 0:
                block = parse_block(block)
            block2 = option_value(msg.options, BLOCK2)
            if block2 is not None and msg.code >> 5 != 0:
                parse_block(block2)  # checked here, so that a bad one changes nothing
        except DecodeError:
            self._counts["malformed"] += 1
            raise
        out = Output([], [])
        if msg.mtype == ACK or msg.mtype == RST:
            self._on_ack_or_reset(msg, block, now_ms, out)
        else:
            self._on_con_or_non(msg, block, now_ms, out)
        return out

    def tick(self, now_ms):
        """Retransmit what timed out and end what waited too long: ``Output``."""
        now = wrap(now_ms)
        out = Output([], [])
        for exchange in list(self._exchanges.values()):
            waited = elapsed(now, exchange.since)
            if exchange.state == _WAIT_ACK:
                if waited < exchange.timeout:
                    continue
                if exchange.retransmits >= self._max_retransmit:
                    self._give_up(exchange, "no_ack", out)
                    continue
                exchange.retransmits += 1
                exchange.timeout <<= 1
                exchange.since = now
                self._counts["retransmissions"] += 1
                out.datagrams.append(exchange.datagram)
            elif waited >= self._response_timeout:
                self._give_up(exchange, "no_response", out)
        return out

    def next_timeout_ms(self, now_ms):
        """Milliseconds until ``tick`` has something to do (0: now), or None when idle."""
        now = wrap(now_ms)
        soonest = None
        for exchange in self._exchanges.values():
            limit = exchange.timeout if exchange.state == _WAIT_ACK else self._response_timeout
            left = limit - elapsed(now, exchange.since)
            if left < 0:
                left = 0
            if soonest is None or left < soonest:
                soonest = left
        return soonest

    def cancel(self, token):
        """Forget the request with ``token`` (no event); True if there was one."""
        return self._exchanges.pop(bytes(token), None) is not None

    def in_flight(self):
        """How many requests wait for an answer."""
        return len(self._exchanges)

    def counters(self):
        """A copy of the counters (see the module doc)."""
        return dict(self._counts)

    # --- internals

    def _next_token(self):
        self._token_counter = (self._token_counter + 1) & self._token_mask
        value = self._token_counter
        out = bytearray(self._token_length)
        for i in range(self._token_length - 1, -1, -1):
            out[i] = value & 0xFF
            value >>= 8
        return bytes(out)

    def _transmit(self, exchange, now_ms):
        """Build the exchange's current message (a new CON, a new Message ID) and arm its
        retransmission timer."""
        options = exchange.options
        body = exchange.body
        if exchange.b2_szx is not None:
            # The next block of the response: same request, no payload (RFC 7959 2.4).
            options = list(options)
            received = len(exchange.b2_body)
            options.append(
                (BLOCK2, block_value(received >> (exchange.b2_szx + 4), False, exchange.b2_szx))
            )
            body = b""
        elif exchange.szx is not None:
            size = 1 << (exchange.szx + 4)
            start = exchange.num * size
            end = start + size
            more = end < len(body)
            if not more:
                end = len(body)
            options = list(options)
            options.append((BLOCK1, block_value(exchange.num, more, exchange.szx)))
            body = memoryview(body)[start:end]
        mid = self._mid
        self._mid = (mid + 1) & 0xFFFF
        exchange.mid = mid
        exchange.datagram = encode_message(CON, exchange.method, mid, exchange.token, options, body)
        exchange.state = _WAIT_ACK
        exchange.since = wrap(now_ms)
        exchange.retransmits = 0
        exchange.timeout = self._ack_timeout
        if self._spread:
            exchange.timeout += (self._spread * self._rand(16)) >> 16

    def _give_up(self, exchange, reason, out):
        del self._exchanges[exchange.token]
        self._counts["give_ups"] += 1
        out.events.append(GiveUp(exchange.token, reason))

    def _empty(self, mtype, mid, out):
        out.datagrams.append(encode_message(mtype, EMPTY, mid))
        if mtype == RST:
            self._counts["resets_sent"] += 1

    def _remember(self, mid):
        self._recent[self._recent_at] = mid
        self._recent_at = (self._recent_at + 1) % _RECENT

    def _on_ack_or_reset(self, msg, block, now_ms, out):
        exchange = None
        for candidate in self._exchanges.values():
            if candidate.state == _WAIT_ACK and candidate.mid == msg.mid:
                exchange = candidate
                break
        if exchange is None:  # late duplicate, or not ours: silently ignored (RFC 7252 4.2)
            self._counts["ignored"] += 1
            return
        if msg.mtype == RST:
            self._give_up(exchange, "reset", out)
            return
        if msg.code == EMPTY:
            exchange.state = _WAIT_RESPONSE
            exchange.since = wrap(now_ms)
            return
        if msg.code >> 5 < 2 or msg.token != exchange.token:
            # A request code in an ACK, or a piggybacked response for another token.
            self._counts["ignored"] += 1
            return
        self._on_response(exchange, msg, block, now_ms, out)

    def _on_con_or_non(self, msg, block, now_ms, out):
        confirmable = msg.mtype == CON
        if confirmable and msg.mid in self._recent:
            self._counts["duplicates"] += 1
            self._empty(ACK, msg.mid, out)
            return
        exchange = None
        if msg.code >> 5 >= 2:
            exchange = self._exchanges.get(msg.token)
        if exchange is None:
            # A response to nothing we wait for, a ping, a request: reject a CON with RST.
            if confirmable:
                self._empty(RST, msg.mid, out)
            else:
                self._counts["ignored"] += 1
            return
        if confirmable:
            self._empty(ACK, msg.mid, out)
            self._remember(msg.mid)
        self._on_response(exchange, msg, block, now_ms, out, True)

    def _on_response(self, exchange, msg, block, now_ms, out, separate=False):
        if exchange.b2_szx is not None:
            self._on_block2(exchange, msg, now_ms, out, separate)
            return
        code = msg.code
        szx = exchange.szx
        if code == REQUEST_ENTITY_TOO_LARGE and block is not None:
            # RFC 7959 2.9.3: the server names the block size it can take. Start over
            # at block 0 in that size if it is smaller than what was sent.
            their_szx = block[2]
            current = szx
            if current is None:
                current = MAX_SZX + 1
                if len(exchange.body) <= 1 << (their_szx + 4):
                    current = -1  # one block of that size is what was sent: no help
            if their_szx < current:
                exchange.szx = their_szx
                exchange.num = 0
                self._transmit(exchange, now_ms)
                out.datagrams.append(exchange.datagram)
                return
        if separate and block is not None and szx is not None:
            # Matched by token only: its Block1 must describe the block in flight (same
            # byte offset, same or smaller size), or it is a delayed duplicate.
            num, _, their_szx = block
            if their_szx > szx or num << (their_szx + 4) != exchange.num << (szx + 4):
                self._counts["ignored"] += 1
                return
        if szx is not None and code >> 5 == 2 and (code == CONTINUE or block is not None):
            sent = (exchange.num + 1) << (szx + 4)
            if sent < len(exchange.body):
                if block is not None and block[2] < szx:
                    exchange.szx = block[2]  # the server prefers smaller blocks: follow
                exchange.num = sent >> (exchange.szx + 4)
                self._transmit(exchange, now_ms)
                out.datagrams.append(exchange.datagram)
                return
        block2 = option_value(msg.options, BLOCK2)
        if code >> 5 == 2 and block2 is not None:
            num, more, their_szx = parse_block(block2)
            if more or num:
                self._start_block2(exchange, msg, num, more, their_szx, now_ms, out)
                return
        self._finish(exchange, code, msg.payload, msg.options, out)

    def _finish(self, exchange, code, payload, options, out):
        del self._exchanges[exchange.token]
        self._counts["responses"] += 1
        out.events.append(Response(exchange.token, code, payload, options))

    def _start_block2(self, exchange, msg, num, more, their_szx, now_ms, out):
        """Block 0 of a response arrived: keep it, ask for the next (module docstring)."""
        if num or len(msg.payload) != 1 << (their_szx + 4):
            self._give_up(exchange, "block2", out)  # not block 0, or not a whole block
            return
        size2 = option_value(msg.options, SIZE2)
        if size2 is not None and bytes_uint(size2) > self._max_response:
            self._give_up(exchange, "too_large", out)
            return
        options = [option for option in msg.options if option[0] != BLOCK2]
        exchange.b2_first = (msg.code, tuple(options))
        exchange.b2_etag = option_value(msg.options, ETAG)
        exchange.b2_body = bytearray(msg.payload)
        self._next_block2(exchange, their_szx, now_ms, out)

    def _next_block2(self, exchange, their_szx, now_ms, out):
        if len(exchange.b2_body) > self._max_response:
            self._give_up(exchange, "too_large", out)
            return
        szx = their_szx if their_szx < self._max_szx else self._max_szx
        exchange.b2_szx = szx
        self._transmit(exchange, now_ms)
        out.datagrams.append(exchange.datagram)

    def _on_block2(self, exchange, msg, now_ms, out, separate):
        """A response to a request for a later block of a response body."""
        code = msg.code
        block2 = option_value(msg.options, BLOCK2)
        if code >> 5 != 2:
            self._finish(exchange, code, msg.payload, msg.options, out)  # 4.08, 5.03 ...
            return
        received = len(exchange.b2_body)
        if block2 is None:
            self._give_up(exchange, "block2", out)
            return
        num, more, their_szx = parse_block(block2)
        if num << (their_szx + 4) != received or their_szx > exchange.b2_szx:
            if separate:  # matched by token only: a delayed answer to an earlier block
                self._counts["ignored"] += 1
            else:
                self._give_up(exchange, "block2", out)
            return
        if option_value(msg.options, ETAG) != exchange.b2_etag or code != exchange.b2_first[0]:
            self._give_up(exchange, "block2", out)  # the resource changed between blocks
            return
        size = len(msg.payload)
        if (more and size != 1 << (their_szx + 4)) or size > 1 << (their_szx + 4):
            self._give_up(exchange, "block2", out)
            return
        exchange.b2_body.extend(msg.payload)
        if more:
            self._next_block2(exchange, their_szx, now_ms, out)
            return
        if len(exchange.b2_body) > self._max_response:
            self._give_up(exchange, "too_large", out)
            return
        first_code, options = exchange.b2_first
        self._finish(exchange, first_code, bytes(exchange.b2_body), options, out)
