"""Downlink messages: what the cloud sends one gateway, sealed and replay-protected.

The cloud commits a batch, then acknowledges it end to end; only then does the gateway
delete the batch from its queue (``queue``). A forged or replayed acknowledgement would make
a gateway delete data the cloud never got, so every downlink message (acknowledgements now;
configuration and commands later) is sealed like a batch, in the other direction
(``cose.DOWNLINK``: its own AES key and IV derived from the gateway's secret, see ``cose``),
numbered by the cloud, and opened by the gateway against a replay window.

Message format (the envelope's plaintext), deterministic CBOR (RFC 8949 4.2.1), in CDDL::

    message = ack / config / command               ; a small typed union: [kind, ...]
    ack     = [1, through: seq / null, selective: [* range]]
    range   = seq                                  ; one batch
            / [first: seq, last: seq]              ; every batch first..last, first < last
    seq     = uint .le 1099511627775               ; a batch sequence number (cose.MAX_SEQ)
    config  = [2, revision: uint, settings: {+ tstr => any}]        ; reserved
    command = [3, id: uint, name: tstr, args: {* tstr => any}]       ; reserved

Kinds are never reused or reshaped: a change of shape is a new kind. ``decode_message``
refuses unknown and reserved kinds (``DecodeError``).

ACK (kind 1), what the gateway releases from its queue (``apply_ack``):

- ``through``: cumulative. Every batch with a sequence number up to and including
  ``through`` is done with: the cloud committed it, or will never get it. The cloud may
  raise ``through`` over numbers it never received when the gateway reported them lost:
  the queue drops the oldest batches first, so once a gateway reports ``lost_last``
  (``queue``'s loss counters, carried in its health records) nothing at or below it is
  queued any more. That is how an acknowledgement crosses a gap of lost batches
  (``advance_through`` computes it). null: no cumulative claim.
- ``selective``: batches above ``through`` the cloud committed, as ranges: batches that
  arrived out of order, and batches beyond a gap the cloud cannot account for (numbers a
  gateway skipped after a reboot, see ``sequence``, look like a gap forever; selective
  acknowledgements release the batches after them).
- One encoding per meaning: ranges ascend, neither overlap nor touch (touching numbers are
  one range), all lie above ``through + 1`` (a range that starts right after ``through``
  is folded into it, and numbers from 0 up make ``through``); a range of one number is the
  bare number. At least one of the two parts is present; at most ``MAX_RANGES`` ranges
  (about 1.2 KB at worst). ``encode_ack`` normalises to this form; ``decode_message``
  accepts nothing else, not even another CBOR encoding of the same values.

Reserved for the fleet issue (documented shapes, not implemented):

- CONFIG (kind 2): ``revision`` increases with every configuration the cloud issues for the
  gateway; ``settings`` is the whole configuration (names as in ``filterconfig``), applied
  all at once. A revision not above the one running is ignored (idempotent); the gateway
  reports the revision it runs in its health record.
- COMMAND (kind 3): ``id`` is the cloud's number for the command, the same on every resend
  (the downlink sequence number differs each time), so a gateway runs each id at most once
  and reports its result under it; ``name`` says what (``"reboot"``, ``"rotate_key"``, ...);
  ``args`` its arguments.

Sealing (the cloud, ``seal_downlink``): the kid names the addressee and the key version
(``cose.make_kid``), the Partial IV is the cloud's own downlink sequence number for this
gateway (a ``sequence.SequenceNumbers`` per gateway over the cloud's durable store: the
numbers must never repeat under one key version). During a rollover the gateway may not yet
hold the newest key: answer a batch under the version it was sealed with
(``Opened.key_version``), which the gateway demonstrably holds.

External AAD convention (what binds a message to its channel; UTF-8):

- MQTT: the topic the message is published on, ``devices/<gateway id>/down`` for every kind
  (``downlink_topic``). The gateway subscribes to it; the broker's ACL lets only the cloud
  publish there.
- CoAP and HTTP: a message in a response body is bound to the resource the request was
  posted to, the same string the request's envelope bound in (``batches`` for a CoAP POST
  to ``/batches``). The directions have separate keys, so one string serving both is safe.

Opening (the gateway, ``open_downlink``), in this order:

1. parse the envelope, unauthenticated (``DecodeError``);
2. it must be addressed to this gateway: the kid's gateway id is the ring's
   (``AuthenticationError``);
3. ``window.check(seq)`` before any AES work (``ReplayError``); nothing that fails from here
   to step 4 moves the window, so a forged message cannot burn a number;
4. open with ``cose.DOWNLINK`` keys through ``ring.lookup``: the current key version and,
   during a rollover, the previous one (``AuthenticationError``);
5. ``window.accept(seq)``: an authentic message uses up its number, even if its content is
   then refused in step 6;
6. ``decode_message`` (``DecodeError``).

The window takes messages out of order as long as they are fresh (above the highest seen,
or inside the window and not yet seen): CoAP responses to batches sent in parallel arrive in
any order, and an authentic acknowledgement is true whenever it arrives. Repeats, and
messages older than the window, are refused. After a reboot: acknowledgements are safe even
with a lost window (an authentic ACK names only batches the cloud has, and uplink sequence
numbers never repeat, so a replayed one releases nothing that is still owed); a gateway
that acts on CONFIG or COMMAND messages must persist ``window.state()`` before acting.
"""

from collections import namedtuple

from bankiot_core import cbor, cose
from bankiot_core._compat import const
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError

KIND_ACK = const(1)
KIND_CONFIG = const(2)
KIND_COMMAND = const(3)
KIND_NAMES = {KIND_ACK: "ack", KIND_CONFIG: "config", KIND_COMMAND: "command"}
MAX_RANGES = const(64)
MAX_SEQ = cose.MAX_SEQ
TOPIC_FORMAT = "devices/%s/down"

Ack = namedtuple("Ack", ("through", "ranges"))
"""An acknowledgement: ``through`` (int or None) and ``ranges``, a tuple of ``(first, last)``
pairs (``first == last`` for one number), ascending, above ``through + 1``."""

Downlink = namedtuple("Downlink", ("kind", "seq", "key_version", "message"))
"""What ``open_downlink`` returns: the message kind, the cloud's downlink sequence number,
the key version that opened it, and the decoded message (an ``Ack`` for ``KIND_ACK``)."""

_NOT_IN_TOPIC = (0x23, 0x2B, 0x2F, 0x7F)  # "#", "+", "/", DEL
_MAX_DEPTH = const(4)  # [kind, ..., [[first, last]]] is 3 deep; reserved kinds may nest more


# ---- acknowledgements ----------------------------------------------------------------------


def _check_seq(name, seq):
    if type(seq) is not int:
        raise ConfigError("%s must be an int, not %s" % (name, type(seq).__name__))
    if not 0 <= seq <= MAX_SEQ:
        raise ConfigError("%s %d is out of range 0..%d" % (name, seq, MAX_SEQ))


def _normalise(through, seqs):
    """``(through, ranges)`` in the one canonical form (module docstring)."""
    floor = -1 if through is None else through
    ranges = []
    for seq in sorted(set(seqs)):
        if seq <= floor:
            continue
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    while ranges and ranges[0][0] == floor + 1:  # touching the cumulative part: fold it in
        floor = ranges.pop(0)[1]
    return (None if floor < 0 else floor), ranges


def encode_ack(through=None, seqs=()):
    """An ACK message's bytes: every batch up to and including ``through`` (None: no
    cumulative part), and each sequence number in ``seqs`` (any iterable of ints, any order,
    repeats allowed). See the module docstring for when ``through`` may cross numbers the
    cloud never received. Raises ConfigError if it acknowledges nothing, for numbers out of
    range, or for more than ``MAX_RANGES`` separate ranges (send the rest in another ACK).
    """
    if through is not None:
        _check_seq("through", through)
    seqs = list(seqs)
    for seq in seqs:
        _check_seq("sequence number", seq)
    through, ranges = _normalise(through, seqs)
    if through is None and not ranges:
        raise ConfigError("an ack must acknowledge something: give through or seqs")
    if len(ranges) > MAX_RANGES:
        raise ConfigError(
            "an ack holds at most %d ranges, not %d: send the rest in another"
            % (MAX_RANGES, len(ranges))
        )
    selective = [first if first == last else [first, last] for first, last in ranges]
    return cbor.dumps([KIND_ACK, through, selective], True)


def advance_through(through, committed, lost_last=None):
    """The cloud's next cumulative point for one gateway, or None if it has none yet.

    ``through``: the last one (None at first); ``committed``: the sequence numbers committed
    above it (a set, or anything that answers ``in``); ``lost_last``: the highest number the
    gateway reported lost (``queue``'s ``lost_last``), or None. The point first jumps over
    the reported loss (nothing at or below it is queued any more), then runs on through
    committed numbers as long as they follow each other.
    """
    point = -1 if through is None else through
    if lost_last is not None and lost_last > point:
        point = lost_last
    while point + 1 in committed:
        point += 1
    return None if point < 0 else point


def covers(ack, seq):
    """True if ``ack`` (an ``Ack``) acknowledges batch ``seq``."""
    if ack.through is not None and seq <= ack.through:
        return True
    for first, last in ack.ranges:
        if seq < first:
            return False
        if seq <= last:
            return True
    return False


def _wire_seq(value, what):
    if type(value) is not int or not 0 <= value <= MAX_SEQ:  # not bool, not negative
        raise DecodeError("ack %s must be a sequence number 0..2**40-1, not %r" % (what, value))
    return value


def _decode_ack(message):
    if len(message) != 3:
        raise DecodeError("an ack is [1, through, selective]: %d items" % len(message))
    through = message[1]
    if through is not None:
        _wire_seq(through, "through")
    selective = message[2]
    if not isinstance(selective, list):
        raise DecodeError("ack selective part must be an array")
    if len(selective) > MAX_RANGES:
        raise DecodeError("ack has %d ranges, more than %d" % (len(selective), MAX_RANGES))
    previous = -1 if through is None else through
    ranges = []
    for item in selective:
        if isinstance(item, list):
            if len(item) != 2:
                raise DecodeError("ack range must be [first, last]")
            first = _wire_seq(item[0], "range start")
            last = _wire_seq(item[1], "range end")
            if first >= last:
                raise DecodeError("ack range [%d, %d] is not ascending" % (first, last))
        else:
            first = last = _wire_seq(item, "number")
        if first <= previous + 1:
            raise DecodeError(
                "ack range from %d is not above %d + 1 (unsorted, overlapping, touching, or "
                "foldable into through)" % (first, previous)
            )
        ranges.append((first, last))
        previous = last
    if through is None and not ranges:
        raise DecodeError("ack acknowledges nothing")
    return Ack(through, tuple(ranges))


def decode_message(data):
    """The message in a downlink plaintext: an ``Ack``. Raises DecodeError for anything not
    exactly in the format (module docstring), and for reserved or unknown kinds."""
    try:
        message = cbor.loads(data, _MAX_DEPTH)
    except DecodeError as exc:
        raise DecodeError("downlink message: %s" % exc.message) from None
    if not isinstance(message, list) or not message:
        raise DecodeError("downlink message must be a non-empty array [kind, ...]")
    kind = message[0]
    if type(kind) is not int:
        raise DecodeError("downlink message kind must be an int, not %r" % (kind,))
    if kind != KIND_ACK:
        if kind in KIND_NAMES:
            raise DecodeError(
                "downlink kind %d (%s) is reserved: this gateway cannot act on it"
                % (kind, KIND_NAMES[kind])
            )
        raise DecodeError("unknown downlink kind %d" % kind)
    ack = _decode_ack(message)
    if cbor.dumps(message, True) != bytes(data):
        raise DecodeError("downlink message is not in deterministic CBOR")
    return ack


# ---- sealing and opening -------------------------------------------------------------------


def downlink_topic(gateway_id):
    """The MQTT topic of ``gateway_id``'s downlink messages, ``devices/<id>/down``: also
    their external AAD. ConfigError for an id that cannot be one topic level."""
    raw = cose.gateway_bytes(gateway_id)
    for b in raw:
        if b < 0x20 or b in _NOT_IN_TOPIC:
            raise ConfigError("gateway id %r cannot be an MQTT topic level" % (raw,))
    try:
        name = raw.decode("utf-8")
    except UnicodeError:
        raise ConfigError("gateway id %r is not UTF-8: no MQTT topic" % (raw,)) from None
    return TOPIC_FORMAT % name


def seal_downlink(ring, seq, message, external_aad, key_version=None):
    """The cloud seals ``message`` (bytes from ``encode_ack``) for ``ring``'s gateway.

    ``ring``: the cloud's ``keyring.KeyRing`` for the gateway; ``seq``: the cloud's next
    downlink sequence number for it; ``external_aad``: the topic or resource (module
    docstring); ``key_version``: None for the current one, or a version still valid in the
    ring (the version of the batch being answered). Returns the envelope's bytes. Raises
    ConfigError for a key version the ring does not hold, or arguments out of range.
    """
    if key_version is None:
        key_version, key = ring.sealing_key()
    else:
        key = ring.opening_key(key_version)
        if key is None:
            raise ConfigError(
                "key version %r is not valid for this gateway (valid: %s)"
                % (key_version, ", ".join("%d" % v for v in ring.versions()))
            )
    return cose.seal(key, ring.gateway_id, key_version, seq, message, external_aad, cose.DOWNLINK)


def open_downlink(data, ring, window, external_aad):
    """The gateway opens a downlink envelope; returns ``Downlink(kind, seq, key_version,
    message)``.

    ``ring``: the gateway's ``keyring.KeyRing`` (both versions open during a rollover);
    ``window``: its ``replay.ReplayWindow`` for downlink sequence numbers, updated only when
    the message is authentic; ``external_aad``: the topic it arrived on or the resource its
    request went to. Raises DecodeError (malformed envelope or message),
    AuthenticationError (addressed to another gateway, no such key, forged or altered) or
    ReplayError (seen before, or older than the window), in the order of the module
    docstring.
    """
    peeked = cose.peek_envelope(data)
    if peeked.gateway_id != ring.gateway_id:
        raise AuthenticationError(
            "downlink addressed to gateway %s, not this one (%s)"
            % (cose._show(peeked.gateway_id), cose._show(ring.gateway_id))
        )
    window.check(peeked.seq)
    opened = cose.open_envelope(data, ring.lookup, external_aad, cose.DOWNLINK)
    window.accept(opened.seq)
    message = decode_message(opened.plaintext)
    return Downlink(KIND_ACK, opened.seq, opened.key_version, message)


# ---- applying an acknowledgement -------------------------------------------------------------


def apply_ack(queue, ack):
    """Release from ``queue`` (a ``queue.Queue``) every batch ``ack`` covers; return how many.

    Idempotent: applying the same ack again releases nothing. The longest covered run at the
    head of the queue goes in one removal (``ack_through``), the rest one by one (``ack``).
    An ack that releases nothing is counted once in the queue's ``acks_stale``.
    """
    queued = queue.seqs()
    through = -1 if ack.through is None else ack.through
    ranges = ack.ranges
    covered = []
    r = 0
    for seq in queued:  # both ascending: one merge pass, whatever the ranges' widths
        if seq <= through:
            covered.append(seq)
            continue
        while r < len(ranges) and ranges[r][1] < seq:
            r += 1
        if r == len(ranges):
            break
        if ranges[r][0] <= seq:
            covered.append(seq)
    if not covered:
        if ack.through is not None:
            queue.ack_through(ack.through)  # removes nothing: counts a stale ack
        elif ranges:
            queue.ack(ranges[0][0])  # not queued: counts a stale ack
        return 0
    head = 0
    while head < len(covered) and covered[head] == queued[head]:
        head += 1
    released = 0
    if head:
        released += queue.ack_through(covered[head - 1])
    for seq in covered[head:]:
        if queue.ack(seq):
            released += 1
    return released
