"""MQTT 3.1.1 client protocol (OASIS Standard, 29 October 2014), sans-I/O, as h11 does HTTP.

The firmware's link to the broker. It never opens a socket or reads a clock: a driver feeds it
the bytes it receives and the time in milliseconds, sends the bytes it returns, and closes the
socket when told to. The Raspberry Pi gateway and the cloud use aiomqtt instead.

Driving it::

    client = MqttClient()
    sock.send(client.connect("gw-1", now, username="gw-1", password=pw, keepalive=60))
    loop:
        client.receive_data(sock.recv(...), now)      # b"" is allowed and ignored
        event = client.next_event()                   # until NEED_DATA
        ... ConnAck, Publish, PubAck, SubAck, UnsubAck, PingResp, LinkDead ...
        sock.send(client.tick(now))                   # PUBACKs, keepalive, retransmissions
    on socket EOF or error: client.connection_lost(); then connect() again on a new socket

Rules of this module:

- Every method that produces bytes returns them (bytes-like, possibly empty) and first
  flushes anything queued by ``next_event`` (the PUBACK of an incoming QoS 1 PUBLISH), so
  packets leave in the order they were made; ``data_to_send()`` flushes without sending
  anything new. ``tick`` must be called regularly (at least every few seconds).
- Every change of ``state`` goes through ``_go`` and the ``_TRANSITIONS`` table; the
  packets the server may send in each state are in ``_ACCEPTS``. States: ``IDLE`` (no
  connection), ``CONNECTING`` (CONNECT sent), ``CONNECTED`` (CONNACK accepted),
  ``CLOSING`` (the link is finished: the driver must close the socket and call
  ``connection_lost()``, which returns to ``IDLE``).
- A malformed or unexpected packet raises ``DecodeError`` (a protocol violation: MQTT says
  the receiver closes the network connection) and moves to ``CLOSING``. Asking for
  something impossible raises ``ConfigError`` (bad argument) or ``LocalError`` (wrong
  state, too many messages in flight) and changes nothing.
- QoS 0 and 1 only. A QoS 1 PUBLISH is kept, in order, until its PUBACK: it is re-sent
  with DUP set after ``retry_ms`` without one, and on every new connection (MQTT-4.4.0-1),
  whatever the clean-session flag (a new session gets it as a new message; at-least-once
  is kept either way). ``publish`` at QoS 1 also works while disconnected: the message
  waits for the next CONNACK. Subscriptions are asked at QoS 0 or 1, so a QoS 2 PUBLISH
  from the server is a violation.
- Keepalive: a PINGREQ when nothing was sent or nothing was received for ``keepalive``
  seconds; no PINGRESP (or no CONNACK) within ``response_timeout_ms`` queues a
  ``LinkDead`` event and moves to ``CLOSING``.
- Strings follow section 1.5.3: well-formed UTF-8 (RFC 3629: no surrogates, no overlong
  forms), no U+0000, at most 65535 bytes. Topic names have no wildcards; topic filters put
  ``+`` and ``#`` only where section 4.7.1 allows. The remaining length takes at most four
  bytes (section 2.2.3); an overlong but in-range encoding (``80 00``) is accepted, as
  3.1.1 does not forbid it. Incoming packets longer than ``max_packet`` are refused before
  they are buffered.
"""

from collections import namedtuple

from bankiot_core._compat import const
from bankiot_core.errors import ConfigError, DecodeError, LocalError
from bankiot_core.ticks import MAX_DURATION_MS, elapsed, wrap

# Control packet types (section 2.2.1).
CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

PACKET_NAMES = (
    "reserved 0",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "reserved 15",
)

MAX_REMAINING_LENGTH = const(268435455)
MAX_STRING = const(65535)
SUBACK_FAILURE = const(0x80)

# CONNACK return codes (section 3.2.2.3), indexed by code.
CONNACK_MESSAGES = (
    "connection accepted",
    "unacceptable protocol version",
    "identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorized",
)

# --- Events: small immutable records returned by next_event() --------------------------------

ConnAck = namedtuple("ConnAck", ("session_present", "return_code"))
"""CONNACK. ``return_code`` 0 is accepted (state ``CONNECTED``); anything else is a refusal
(``CONNACK_MESSAGES[return_code]``, state ``CLOSING``)."""

Publish = namedtuple("Publish", ("topic", "payload", "qos", "packet_id", "dup", "retain"))
"""An application message from the server: ``topic`` str, ``payload`` bytes, ``qos`` 0 or
1, ``packet_id`` (0 at QoS 0), ``dup`` and ``retain`` bools. A QoS 1 message is
acknowledged by the client (the PUBACK goes out with the next bytes returned)."""

PubAck = namedtuple("PubAck", ("packet_id",))
"""The server has taken responsibility for our QoS 1 PUBLISH ``packet_id``."""

SubAck = namedtuple("SubAck", ("packet_id", "return_codes"))
"""``return_codes``: one per requested filter, the granted QoS or ``SUBACK_FAILURE``."""

UnsubAck = namedtuple("UnsubAck", ("packet_id",))

PingResp = namedtuple("PingResp", ())

LinkDead = namedtuple("LinkDead", ("reason",))
"""No CONNACK or PINGRESP in time: the link is dead (state ``CLOSING``)."""

Will = namedtuple("Will", ("topic", "payload", "qos", "retain"))
"""The ``will`` argument of ``connect`` (a plain 4-tuple works too)."""


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
"""Returned by ``next_event`` when no complete packet is buffered."""

# --- States and transitions ------------------------------------------------------------------

IDLE = "IDLE"
CONNECTING = "CONNECTING"
CONNECTED = "CONNECTED"
CLOSING = "CLOSING"

# (state, trigger) -> next state. A pair that is missing is not allowed in that state.
_TRANSITIONS = {
    (IDLE, "connect"): CONNECTING,
    (CONNECTING, "accepted"): CONNECTED,
    (CONNECTING, "refused"): CLOSING,
    (CONNECTING, "timeout"): CLOSING,
    (CONNECTING, "violation"): CLOSING,
    (CONNECTING, "disconnect"): CLOSING,
    (CONNECTED, "send"): CONNECTED,
    (CONNECTED, "timeout"): CLOSING,
    (CONNECTED, "violation"): CLOSING,
    (CONNECTED, "disconnect"): CLOSING,
    (IDLE, "lost"): IDLE,
    (CONNECTING, "lost"): IDLE,
    (CONNECTED, "lost"): IDLE,
    (CLOSING, "lost"): IDLE,
}

# Packets the server may send in each state (sections 3.2.0 and 3.1.4).
_ACCEPTS = {
    CONNECTING: (CONNACK,),
    CONNECTED: (PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP),
}

# Remaining length of the fixed-size packets a client receives; -1: variable.
_FIXED_LENGTH = (-1, -1, 2, -1, 2, 2, 2, 2, -1, -1, -1, 2, 0, 0, 0, -1)

_BYTES_LIKE = (bytes, bytearray, memoryview)
_PINGREQ_PACKET = b"\xc0\x00"
_DISCONNECT_PACKET = b"\xe0\x00"
_PROTOCOL = b"\x00\x04MQTT\x04"  # protocol name and level 4 (section 3.1.2.1, 3.1.2.2)

# --- Wire helpers ----------------------------------------------------------------------------


def remaining_length_size(n):
    """Bytes the remaining length ``n`` takes on the wire (1..4)."""
    if n < 0x80:
        return 1
    if n < 0x4000:
        return 2
    if n < 0x200000:
        return 3
    return 4


def encode_remaining_length(n):
    """The variable-length encoding of ``n`` (section 2.2.3), least significant 7 bits first."""
    if not isinstance(n, int) or n < 0 or n > MAX_REMAINING_LENGTH:
        raise ConfigError("remaining length must be 0..%d" % MAX_REMAINING_LENGTH)
    buf = bytearray(remaining_length_size(n))
    _put_remaining_length(buf, 0, n)
    return bytes(buf)


def decode_remaining_length(data, pos=0):
    """Decode a remaining length from ``data[pos:]``.

    Returns ``(value, end)`` where ``end`` indexes the byte after it, or None when ``data``
    stops before the last byte. A fourth byte with the continuation bit raises DecodeError.
    """
    value = 0
    shift = 0
    n = len(data)
    for i in range(4):
        if pos + i >= n:
            return None
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos + i + 1
        shift += 7
    raise DecodeError("remaining length longer than 4 bytes")


def _put_remaining_length(buf, pos, n):
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            buf[pos] = b | 0x80
            pos += 1
        else:
            buf[pos] = b
            return pos + 1


def _new_packet(first, length):
    """A zeroed packet of remaining length ``length``; returns it and the body's offset."""
    if length > MAX_REMAINING_LENGTH:
        raise ConfigError(
            "packet too large: remaining length %d > %d" % (length, MAX_REMAINING_LENGTH)
        )
    buf = bytearray(1 + remaining_length_size(length) + length)
    buf[0] = first
    return buf, _put_remaining_length(buf, 1, length)


def _put_u16(buf, pos, value):
    buf[pos] = value >> 8
    buf[pos + 1] = value & 0xFF
    return pos + 2


def _put_field(buf, pos, data):
    """A two-byte length then ``data`` (UTF-8 strings and binary data, section 1.5.3)."""
    n = len(data)
    pos = _put_u16(buf, pos, n)
    buf[pos : pos + n] = data
    return pos + n


def _concat(pieces):
    """One buffer holding ``pieces`` in order (b"" for None, the piece itself for one)."""
    if not pieces:
        return b""
    if len(pieces) == 1:
        return pieces[0]
    total = 0
    for piece in pieces:
        total += len(piece)
    buf = bytearray(total)
    pos = 0
    for piece in pieces:
        buf[pos : pos + len(piece)] = piece
        pos += len(piece)
    return buf


def utf8_problem(data):
    """Why ``data`` is not a valid MQTT UTF-8 string (section 1.5.3), or None if it is.

    Well-formed per RFC 3629 (no overlong forms, no surrogates U+D800..U+DFFF, nothing
    above U+10FFFF) and without U+0000.
    """
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c < 0x80:
            if c == 0:
                return "contains U+0000"
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            k = 1
        elif c == 0xE0:
            k = 2
            lo = 0xA0
        elif c == 0xED:
            k = 2
            hi = 0x9F  # U+D800..U+DFFF would follow
        elif 0xE1 <= c <= 0xEF:
            k = 2
        elif c == 0xF0:
            k = 3
            lo = 0x90
        elif 0xF1 <= c <= 0xF3:
            k = 3
        elif c == 0xF4:
            k = 3
            hi = 0x8F
        else:
            return "is not well-formed UTF-8 (byte 0x%02x at %d)" % (c, i)
        if i + k >= n:
            return "is not well-formed UTF-8 (truncated sequence at %d)" % i
        b = data[i + 1]
        if b < lo or b > hi:
            return "is not well-formed UTF-8 (byte 0x%02x at %d)" % (b, i + 1)
        for j in range(i + 2, i + k + 1):
            b = data[j]
            if b < 0x80 or b > 0xBF:
                return "is not well-formed UTF-8 (byte 0x%02x at %d)" % (b, j)
        i += k + 1
    return None


def _text(what, value):
    """``value`` (str or bytes-like) as MQTT UTF-8 string bytes, or ConfigError."""
    if isinstance(value, str):
        try:
            value = value.encode("utf-8")
        except UnicodeError:
            raise ConfigError("%s is not encodable as UTF-8 (a lone surrogate?)" % what) from None
    elif not isinstance(value, _BYTES_LIKE):
        raise ConfigError("%s must be str or bytes, not %s" % (what, type(value).__name__))
    if len(value) > MAX_STRING:
        raise ConfigError("%s is %d bytes long; at most %d" % (what, len(value), MAX_STRING))
    problem = utf8_problem(value)
    if problem is not None:
        raise ConfigError("%s %s" % (what, problem))
    return value


def _binary(what, value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, _BYTES_LIKE):
        raise ConfigError("%s must be bytes or str, not %s" % (what, type(value).__name__))
    return value


def _topic_name(what, value):
    data = _text(what, value)
    if not len(data):
        raise ConfigError("%s is empty" % what)
    if b"+" in data or b"#" in data:
        raise ConfigError("%s contains a wildcard (+ or #)" % what)
    return data


def _topic_filter(value):
    data = _text("topic filter", value)
    if not len(data):
        raise ConfigError("topic filter is empty")
    levels = bytes(data).split(b"/")
    last = len(levels) - 1
    for i in range(len(levels)):
        level = levels[i]
        if b"#" in level and (level != b"#" or i != last):
            raise ConfigError("topic filter %r: # must be a whole last level" % (bytes(data),))
        if b"+" in level and level != b"+":
            raise ConfigError("topic filter %r: + must be a whole level" % (bytes(data),))
    return data


def _qos(value, allowed):
    if value not in allowed:
        raise ConfigError("QoS must be one of %r, not %r" % (allowed, value))
    return value


def _check_ms(name, value, low):
    if not isinstance(value, int) or value < low or value > MAX_DURATION_MS:
        raise ConfigError("%s must be an int in %d..%d ms" % (name, low, MAX_DURATION_MS))
    return value


class MqttClient:
    """One MQTT 3.1.1 client session over successive network connections (see module doc).

    ``max_inflight``: QoS 1 messages kept until PUBACK (and pending SUBSCRIBE/UNSUBSCRIBE);
    ``retry_ms``: re-send a QoS 1 PUBLISH with DUP after this long without PUBACK (0: only
    on a new connection); ``response_timeout_ms``: wait this long for a CONNACK or PINGRESP;
    ``max_packet``: largest remaining length accepted from the server.

    ``packet_id`` is the identifier the last ``publish`` (0 at QoS 0), ``subscribe`` or
    ``unsubscribe`` used. ``retransmitted`` counts PUBLISH packets re-sent with DUP;
    ``stray_acks`` counts PUBACKs for no message in flight (the second ack of a message that
    was re-sent on the same connection), which are dropped.
    """

    def __init__(
        self, max_inflight=16, retry_ms=20000, response_timeout_ms=10000, max_packet=16384
    ):
        if not isinstance(max_inflight, int) or not 1 <= max_inflight <= 65535:
            raise ConfigError("max_inflight must be an int in 1..65535")
        if not isinstance(max_packet, int) or not 2 <= max_packet <= MAX_REMAINING_LENGTH:
            raise ConfigError("max_packet must be an int in 2..%d" % MAX_REMAINING_LENGTH)
        self.max_inflight = max_inflight
        self.retry_ms = _check_ms("retry_ms", retry_ms, 0)
        self.response_timeout_ms = _check_ms("response_timeout_ms", response_timeout_ms, 1)
        self.max_packet = max_packet
        self.state = IDLE
        self.packet_id = 0
        self.retransmitted = 0
        self.stray_acks = 0
        self.keepalive_ms = 0
        self.clean_session = True
        self._next_id = 1
        # Each: [packet_id, packet bytes, sent_at tick or None (not on this link), sent_before]
        self._inflight = []
        self._requests = {}  # packet_id -> requested QoS tuple (SUBSCRIBE) or None (UNSUB)
        self._in = bytearray()
        self._out = bytearray()
        self._events = []
        self._last_in = 0
        self._last_out = 0
        self._waiting_since = None  # tick a CONNACK or PINGRESP has been awaited since

    # --- state -------------------------------------------------------------------------------

    def _go(self, trigger):
        new = _TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise LocalError("cannot %s in state %s" % (trigger, self.state))
        self.state = new

    def _violation(self, message):
        self._go("violation")
        return DecodeError(message)

    def connection_lost(self):
        """The driver closed the socket (or saw it close): back to ``IDLE``.

        Messages in flight stay and are re-sent after the next CONNACK; buffers, pending
        subscriptions and queued events of the old connection are dropped.
        """
        self._go("lost")
        self._in = bytearray()
        self._out = bytearray()
        self._events = []
        self._requests = {}
        self._waiting_since = None
        for entry in self._inflight:
            entry[2] = None

    @property
    def inflight(self):
        """Packet identifiers of QoS 1 messages awaiting PUBACK, oldest first."""
        return [entry[0] for entry in self._inflight]

    # --- sending -----------------------------------------------------------------------------

    def _emit(self, packet, now_ms):
        """Queued bytes followed by ``packet``; the time it leaves counts for keepalive."""
        self._last_out = wrap(now_ms)
        if not self._out:
            return packet
        out = self._out
        out.extend(packet)
        self._out = bytearray()
        return out

    def data_to_send(self):
        """Bytes queued by ``next_event`` (PUBACKs), without sending anything new."""
        out = self._out
        if not out:
            return b""
        self._out = bytearray()
        return out

    def _allocate_id(self):
        in_use = len(self._inflight) + len(self._requests)
        if in_use >= self.max_inflight:
            raise LocalError("%d packets await acknowledgement (max_inflight)" % in_use)
        pid = self._next_id
        while pid in self._requests or self._find(pid) >= 0:
            pid = pid % 65535 + 1
        self._next_id = pid % 65535 + 1
        self.packet_id = pid
        return pid

    def _find(self, pid):
        for i in range(len(self._inflight)):
            if self._inflight[i][0] == pid:
                return i
        return -1

    def connect(
        self,
        client_id,
        now_ms,
        username=None,
        password=None,
        keepalive=60,
        clean_session=True,
        will=None,
    ):
        """The CONNECT packet (section 3.1) for a new network connection; state ``CONNECTING``.

        ``keepalive`` in seconds (0..65535, 0: off); ``will`` a ``Will`` or (topic, payload,
        qos, retain); ``password`` (binary data) needs a ``username``. An empty ``client_id``
        needs ``clean_session`` (MQTT-3.1.3-7).
        """
        client = _text("client id", client_id)
        if not len(client) and not clean_session:
            raise ConfigError("an empty client id needs clean_session=True (MQTT-3.1.3-7)")
        if not isinstance(keepalive, int) or not 0 <= keepalive <= 65535:
            raise ConfigError("keepalive must be an int in 0..65535 seconds")
        flags = 0x02 if clean_session else 0
        length = len(_PROTOCOL) + 3 + 2 + len(client)
        will_topic = will_payload = None
        if will is not None:
            if len(will) != 4:
                raise ConfigError("will must be (topic, payload, qos, retain)")
            will_topic = _topic_name("will topic", will[0])
            will_payload = _binary("will payload", will[1])
            if len(will_payload) > MAX_STRING:
                raise ConfigError("will payload is longer than %d bytes" % MAX_STRING)
            flags |= 0x04 | _qos(will[2], (0, 1, 2)) << 3 | (0x20 if will[3] else 0)
            length += 4 + len(will_topic) + len(will_payload)
        user = secret = None
        if username is not None:
            user = _text("user name", username)
            flags |= 0x80
            length += 2 + len(user)
        if password is not None:
            if user is None:
                raise ConfigError("a password needs a user name (MQTT-3.1.2-22)")
            secret = _binary("password", password)
            if len(secret) > MAX_STRING:
                raise ConfigError("password is longer than %d bytes" % MAX_STRING)
            flags |= 0x40
            length += 2 + len(secret)
        self._go("connect")
        self.keepalive_ms = keepalive * 1000
        self.clean_session = bool(clean_session)
        self._in = bytearray()
        packet, pos = _new_packet(CONNECT << 4, length)
        packet[pos : pos + len(_PROTOCOL)] = _PROTOCOL
        pos += len(_PROTOCOL)
        packet[pos] = flags
        pos = _put_u16(packet, pos + 1, keepalive)
        pos = _put_field(packet, pos, client)
        if will_topic is not None:
            pos = _put_field(packet, pos, will_topic)
            pos = _put_field(packet, pos, will_payload)
        if user is not None:
            pos = _put_field(packet, pos, user)
        if secret is not None:
            pos = _put_field(packet, pos, secret)
        self._waiting_since = wrap(now_ms)
        return self._emit(packet, now_ms)

    def publish(self, topic, payload, now_ms, qos=0, retain=False):
        """A PUBLISH packet (section 3.3). QoS 0 needs ``CONNECTED``.

        QoS 1 is kept until its PUBACK and returned now if connected; otherwise b"" and it
        leaves with the ``tick`` after the next CONNACK. ``packet_id`` tells its identifier.
        """
        name = _topic_name("topic", topic)
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif not isinstance(payload, _BYTES_LIKE):
            raise ConfigError("payload must be bytes, not %s" % type(payload).__name__)
        _qos(qos, (0, 1))
        if qos == 0 and self.state != CONNECTED:
            raise LocalError("cannot publish at QoS 0 in state %s" % self.state)
        length = 2 + len(name) + len(payload) + (2 if qos else 0)
        pid = self._allocate_id() if qos else 0
        if not qos:
            self.packet_id = 0
        packet, pos = _new_packet(PUBLISH << 4 | qos << 1 | (1 if retain else 0), length)
        pos = _put_field(packet, pos, name)
        if qos:
            pos = _put_u16(packet, pos, pid)
        packet[pos:] = payload
        if not qos:
            return self._emit(packet, now_ms)
        entry = [pid, packet, None, False]
        self._inflight.append(entry)
        if self.state != CONNECTED:
            return b""
        entry[2] = wrap(now_ms)
        entry[3] = True
        return self._emit(packet, now_ms)

    def subscribe(self, filters, now_ms):
        """A SUBSCRIBE packet (section 3.8) for ``filters``: a list of (filter, qos 0 or 1)."""
        if self.state != CONNECTED:
            raise LocalError("cannot subscribe in state %s" % self.state)
        if not filters:
            raise ConfigError("subscribe needs at least one topic filter (MQTT-3.8.3-3)")
        items = []
        length = 2
        for topic_filter, qos in filters:
            data = _topic_filter(topic_filter)
            items.append((data, _qos(qos, (0, 1))))
            length += 3 + len(data)
        pid = self._allocate_id()
        packet, pos = _new_packet(SUBSCRIBE << 4 | 0x02, length)
        pos = _put_u16(packet, pos, pid)
        for data, qos in items:
            pos = _put_field(packet, pos, data)
            packet[pos] = qos
            pos += 1
        self._requests[pid] = tuple(qos for _, qos in items)
        return self._emit(packet, now_ms)

    def unsubscribe(self, filters, now_ms):
        """An UNSUBSCRIBE packet (section 3.10) for a list of topic filters."""
        if self.state != CONNECTED:
            raise LocalError("cannot unsubscribe in state %s" % self.state)
        if not filters:
            raise ConfigError("unsubscribe needs at least one topic filter (MQTT-3.10.3-2)")
        items = [_topic_filter(f) for f in filters]
        length = 2
        for data in items:
            length += 2 + len(data)
        pid = self._allocate_id()
        packet, pos = _new_packet(UNSUBSCRIBE << 4 | 0x02, length)
        pos = _put_u16(packet, pos, pid)
        for data in items:
            pos = _put_field(packet, pos, data)
        self._requests[pid] = None
        return self._emit(packet, now_ms)

    def ping(self, now_ms):
        """A PINGREQ (section 3.12); a PINGRESP is then awaited (see ``tick``)."""
        self._go("send")
        if self._waiting_since is None:
            self._waiting_since = wrap(now_ms)
        return self._emit(_PINGREQ_PACKET, now_ms)

    def disconnect(self):
        """A DISCONNECT (section 3.14): the server drops the will. State ``CLOSING``."""
        self._go("disconnect")
        return self._emit(_DISCONNECT_PACKET, self._last_out)

    def tick(self, now_ms):
        """Bytes due at ``now_ms``: queued PUBACKs, (re-)sent QoS 1 messages, PINGREQ.

        Also finds a dead link (no CONNACK or PINGRESP within ``response_timeout_ms``): it
        queues a ``LinkDead`` event and moves to ``CLOSING``.
        """
        now = wrap(now_ms)
        state = self.state
        if state != CONNECTING and state != CONNECTED:
            return b""
        waiting = self._waiting_since
        if waiting is not None and elapsed(now, waiting) >= self.response_timeout_ms:
            what = "CONNACK" if state == CONNECTING else "PINGRESP"
            self._go("timeout")
            self._events.append(LinkDead("no %s within %d ms" % (what, self.response_timeout_ms)))
            return b""
        if state != CONNECTED:
            return b""
        pieces = None  # nothing is allocated on the usual, idle tick
        if self._out:
            pieces = [self.data_to_send()]
        retry = self.retry_ms
        for entry in self._inflight:
            sent_at = entry[2]
            if sent_at is not None and (not retry or elapsed(now, sent_at) < retry):
                continue
            if entry[3]:
                if not entry[1][0] & 0x08:
                    # A fresh copy: the bytes handed out before are never changed.
                    packet = bytearray(entry[1])
                    packet[0] |= 0x08
                    entry[1] = packet
                self.retransmitted += 1
            if pieces is None:
                pieces = []
            pieces.append(entry[1])
            entry[2] = now
            entry[3] = True
            self._last_out = now
        ka = self.keepalive_ms
        if (
            ka
            and waiting is None
            and (elapsed(now, self._last_out) >= ka or elapsed(now, self._last_in) >= ka)
        ):
            if pieces is None:
                pieces = []
            pieces.append(_PINGREQ_PACKET)
            self._waiting_since = now
            self._last_out = now
        return _concat(pieces)

    # --- receiving ---------------------------------------------------------------------------

    def receive_data(self, data, now_ms):
        """Bytes read from the socket at ``now_ms``; ignored unless connecting or connected."""
        if data and (self.state == CONNECTING or self.state == CONNECTED):
            self._in.extend(data)
            self._last_in = wrap(now_ms)

    def next_event(self):
        """The next event, or ``NEED_DATA``. Raises DecodeError on a protocol violation."""
        while True:
            if self._events:
                return self._events.pop(0)
            state = self.state
            if state != CONNECTING and state != CONNECTED:
                return NEED_DATA
            buf = self._in
            if not buf:
                return NEED_DATA
            first = buf[0]
            kind = first >> 4
            if kind not in _ACCEPTS[state]:
                raise self._violation(
                    "unexpected %s from the server in state %s" % (PACKET_NAMES[kind], state)
                )
            if kind != PUBLISH and first & 0x0F:
                raise self._violation("%s with reserved flags 0x%x" % (PACKET_NAMES[kind], first))
            try:
                header = decode_remaining_length(buf, 1)
            except DecodeError as exc:
                raise self._violation(exc.message) from None
            if header is None:
                return NEED_DATA
            length, start = header
            fixed = _FIXED_LENGTH[kind]
            if fixed >= 0 and length != fixed:
                raise self._violation(
                    "%s with remaining length %d, not %d" % (PACKET_NAMES[kind], length, fixed)
                )
            if kind == SUBACK and length < 3:
                raise self._violation("SUBACK with remaining length %d, under 3" % length)
            if length > self.max_packet:
                raise self._violation(
                    "%s of %d bytes exceeds max_packet %d"
                    % (PACKET_NAMES[kind], length, self.max_packet)
                )
            end = start + length
            if len(buf) < end:
                return NEED_DATA
            event = self._decode(kind, first, memoryview(buf)[start:end])
            buf[0:end] = b""
            if event is not None:
                return event

    def _decode(self, kind, first, body):
        """One complete packet's body -> an event, or None (a stray PUBACK)."""
        if kind == PUBLISH:
            return self._decode_publish(first, body)
        if kind == CONNACK:
            flags = body[0]
            code = body[1]
            if flags & 0xFE:
                raise self._violation("CONNACK with reserved acknowledge flags 0x%02x" % flags)
            if code >= len(CONNACK_MESSAGES):
                raise self._violation("CONNACK with unknown return code %d" % code)
            if code and flags:
                raise self._violation("refusing CONNACK with session present (MQTT-3.2.2-4)")
            self._waiting_since = None
            self._go("refused" if code else "accepted")
            return ConnAck(flags == 1, code)
        if kind == PINGRESP:
            self._waiting_since = None
            return PingResp()
        pid = body[0] << 8 | body[1]
        if not pid:
            raise self._violation("%s with packet identifier 0" % PACKET_NAMES[kind])
        if kind == PUBACK:
            i = self._find(pid)
            if i < 0:
                self.stray_acks += 1
                return None
            self._inflight.pop(i)
            return PubAck(pid)
        # A tuple of requested QoS for a SUBSCRIBE, None for an UNSUBSCRIBE, 0 for neither.
        requested = self._requests.get(pid, 0)
        if kind == UNSUBACK:
            if requested is not None:
                raise self._violation("UNSUBACK %d answers no UNSUBSCRIBE" % pid)
            del self._requests[pid]
            return UnsubAck(pid)
        # SUBACK
        if not requested:
            raise self._violation("SUBACK %d answers no SUBSCRIBE" % pid)
        codes = tuple(body[2:])
        if len(codes) != len(requested):
            raise self._violation(
                "SUBACK %d has %d return codes for %d filters" % (pid, len(codes), len(requested))
            )
        for i in range(len(codes)):
            code = codes[i]
            if code != SUBACK_FAILURE and code > requested[i]:
                raise self._violation(
                    "SUBACK %d grants QoS %d; asked %d" % (pid, code, requested[i])
                )
        del self._requests[pid]
        return SubAck(pid, codes)

    def _decode_publish(self, first, body):
        qos = (first >> 1) & 0x03
        dup = bool(first & 0x08)
        if qos == 3:
            raise self._violation("PUBLISH with QoS 3 (MQTT-3.3.1-4)")
        if qos == 2:
            raise self._violation("PUBLISH with QoS 2: subscriptions ask at most QoS 1")
        if dup and not qos:
            raise self._violation("PUBLISH with DUP at QoS 0 (MQTT-3.3.1-2)")
        n = len(body)
        if n < 2:
            raise self._violation("PUBLISH shorter than its topic length")
        size = body[0] << 8 | body[1]
        pos = 2 + size
        if pos + (2 if qos else 0) > n:
            raise self._violation("PUBLISH topic or packet identifier runs past the packet")
        raw = bytes(body[2:pos])
        problem = utf8_problem(raw)
        if problem is not None:
            raise self._violation("PUBLISH topic %s" % problem)
        if not raw or b"+" in raw or b"#" in raw:
            raise self._violation("PUBLISH topic %r is empty or has a wildcard" % (raw,))
        pid = 0
        if qos:
            pid = body[pos] << 8 | body[pos + 1]
            pos += 2
            if not pid:
                raise self._violation("PUBLISH with packet identifier 0")
            self._out.extend(bytes((PUBACK << 4, 2, pid >> 8, pid & 0xFF)))
        return Publish(raw.decode("utf-8"), bytes(body[pos:]), qos, pid, dup, bool(first & 1))
