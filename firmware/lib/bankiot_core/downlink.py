"""Downlink messages: what the cloud sends one gateway, sealed and replay-protected.

The cloud commits a batch, then acknowledges it end to end; only then does the gateway
delete the batch from its queue (``queue``). A forged or replayed acknowledgement would make
a gateway delete data the cloud never got, and a forged command or configuration would
take it over, so every downlink message (acknowledgements, configuration, commands) is
sealed like a batch, in the other direction
(``cose.DOWNLINK``: its own AES key and IV derived from the gateway's secret, see ``cose``),
numbered by the cloud, and opened by the gateway against a replay window.

Message format (the envelope's plaintext), deterministic CBOR (RFC 8949 4.2.1), in CDDL::

    message = ack / config / command / keys / offers  ; a small typed union: [kind, ...]
    ack     = [1, through: seq / null, selective: [* range]]
    range   = seq                                  ; one batch
            / [first: seq, last: seq]              ; every batch first..last, first < last
    seq     = uint .le 1099511627775               ; a batch sequence number (cose.MAX_SEQ)
    config  = [2, revision: seq, settings: {+ tstr => setting}]
    command = [3, id: seq, name: tstr .regexp "[a-z0-9_]{1,32}", args: {* tstr => setting}]
    keys    = [4, revision: seq, page: uint, pages: uint, bindings: [* binding]]
    binding = [address: bstr .size 6, irk: bstr .size 16 / null, key: bstr .size 16 / null]
    offers  = [5, wearable: bstr .size 6, expires: uint .le 1099511627775, items: [* offer]]
    offer   = [id: uint .le 1099511627775, title: tstr .size (1..40), text: tstr .size (0..160)]
    setting = value / {* tstr => value}            ; a value, or one level of map
    value   = scalar / [* scalar]
    scalar  = int / float32 / tstr / bstr / bool / null   ; ints within 64 bits

Kinds are never reused or reshaped: a change of shape is a new kind. ``decode_message``
refuses unknown kinds (``DecodeError``). A message is at most ``MAX_MESSAGE_BYTES`` (4 KiB)
of plaintext; the encoders refuse larger ones (``ConfigError``), the decoder too.

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

CONFIG (kind 2, ``encode_config``, decoded as ``Config(revision, settings)``):
``revision`` increases with every configuration the cloud issues for the gateway;
``settings`` is the whole configuration (names as in ``filterconfig``), applied all at once.
A revision not above the one running is ignored (idempotent: a resend, or an older one
arriving late); the gateway reports the revision it runs in a ``running`` record of its
batches (``batch``).

COMMAND (kind 3, ``encode_command``, decoded as ``Command(id, name, args)``): ``id`` is the
cloud's number for the command, given in increasing order, and the same on every resend
(the downlink sequence number differs each time, so the replay window does not catch a
resend). A gateway runs each id at most once (``CommandLog``) and reports its outcome under
that id in a ``result`` record (``batch``): a resend of a command already run gets no second
run. ``name`` says what (``"reboot"``, ``"rotate_key"``, ...); ``args`` its arguments.

KEYS (kind 4, ``encode_keys``, decoded as ``Keys(revision, page, pages, bindings)``): the
whole set of wearables bound to this gateway's branch at ``revision``, which increases with
every change the cloud makes to the set for this gateway. Each binding is the wearable's
identity address (6 bytes, display order), its Identity Resolving Key (16 bytes, most
significant first as ``filterconfig`` writes it; null for a wearable on a public or static
address) and its BTHome bind key (16 bytes; null for one that does not encrypt). A wearable
with neither is only allow-listed. The set replaces the one before whole: removing a
wearable is sending the set without it, and a resend changes nothing. One message holds at
most ``KEYS_PER_PAGE`` (96) bindings (42 bytes each at most: 96 fit in 4 KiB with the
header); a larger set travels as ``pages`` messages of one revision (``page`` 0 up), the
bindings ascending by address across them, at most ``MAX_KEYS_PAGES`` (16), so a gateway
holds at most ``MAX_BINDINGS`` (1536) wearables; ``encode_keys`` refuses more
(``ConfigError``). The gateway applies a revision only once every page of it has arrived
(``KeysPages``), and reports the revision it runs in its health records
(``keys_revision``). One encoding per meaning: bindings strictly ascending by address
(no address twice), only the last page short, no empty page but the single page of an empty
set, no all-zero IRK. Secrets never appear in error messages.

OFFERS (kind 5, ``encode_offers``, decoded as ``Offers(wearable, expires, items)``): what
the cloud decided to offer the customer whose ``wearable`` (identity address, 6 bytes,
display order) just checked in at this kiosk (``cloud.offers``), valid until ``expires``
(Unix time, whole seconds, UTC). ``items`` are at most ``MAX_OFFERS`` (8) ``OfferItem(id,
title, text)``: the campaign's id (strictly ascending: no offer twice, one encoding per
meaning), a title of 1 to ``MAX_OFFER_TITLE`` (40) bytes of UTF-8 and a text of at most
``MAX_OFFER_TEXT`` (160), neither with control characters (they go on a screen as they
are). An empty list is an answer too: nothing for this customer today. A newer message
for the same wearable replaces the one before whole. The kiosk keeps them in memory only,
until ``expires``, and shows them only to the checked-in customer who asks (``edge.kiosk``):
they are personal data, and never part of ``state()``.

Values of settings and arguments: scalars, lists of scalars, and (at the top level of
``settings`` or ``args`` only) maps of those with text keys: enough for every
``filterconfig`` setting (allow-lists of addresses, per-metric deadbands, IRKs by address)
and one nesting bound the decoder enforces (``cbor`` depth 4: message, settings, map,
list). Floats travel in single precision, the precision of the ESP32 and Pico W ports:
``encode_config`` and ``encode_command`` round each float to the nearest binary32 (0.2
arrives as 0.20000000298023224), and ``decode_message`` refuses a float that single
precision cannot hold, so every gateway, whatever its floats, decodes the same message to
the same values and re-encodes it to the same bytes. Ints beyond 64 bits (bignums), tags and
floats beyond single range are refused both ways.

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
numbers never repeat, so a replayed one releases nothing that is still owed). A gateway that
acts on CONFIG or COMMAND messages must persist ``window.state()`` before acting, or a
replay after a reboot would be taken as new; for COMMAND it also records the id in its
``CommandLog`` and persists ``log.state()`` before running it (at most once: a command cut
short by a power loss is not run again and reports nothing; the cloud times it out).
"""

import struct
from collections import namedtuple

from bankiot_core import cbor, cose
from bankiot_core._compat import const
from bankiot_core.errors import AuthenticationError, ConfigError, DecodeError, LocalError

KIND_ACK = const(1)
KIND_CONFIG = const(2)
KIND_COMMAND = const(3)
KIND_KEYS = const(4)
KIND_OFFERS = const(5)
KIND_NAMES = {
    KIND_ACK: "ack",
    KIND_CONFIG: "config",
    KIND_COMMAND: "command",
    KIND_KEYS: "keys",
    KIND_OFFERS: "offers",
}
MAX_OFFERS = const(8)
MAX_OFFER_TITLE = const(40)
MAX_OFFER_TEXT = const(160)
KEYS_PER_PAGE = const(96)
MAX_KEYS_PAGES = const(16)
MAX_BINDINGS = const(1536)  # KEYS_PER_PAGE * MAX_KEYS_PAGES
MAX_RANGES = const(64)
MAX_SEQ = cose.MAX_SEQ
MAX_MESSAGE_BYTES = const(4096)
MAX_NAME_LEN = const(32)
DEFAULT_LOG_SIZE = const(32)
TOPIC_FORMAT = "devices/%s/down"

Ack = namedtuple("Ack", ("through", "ranges"))
"""An acknowledgement: ``through`` (int or None) and ``ranges``, a tuple of ``(first, last)``
pairs (``first == last`` for one number), ascending, above ``through + 1``."""

Config = namedtuple("Config", ("revision", "settings"))
"""A configuration: its ``revision`` (int) and the whole ``settings`` (a dict)."""

Command = namedtuple("Command", ("id", "name", "args"))
"""A command: the cloud's ``id`` for it (int, the same on every resend), its ``name`` and
its ``args`` (a dict, maybe empty)."""

Keys = namedtuple("Keys", ("revision", "page", "pages", "bindings"))
"""One page of a KEYS message: its ``revision``, ``page`` (0 up) of ``pages``, and its
``bindings``, a tuple of ``Binding`` ascending by address."""

Binding = namedtuple("Binding", ("address", "irk", "key"))
"""A wearable bound to the gateway: ``address`` (6 bytes), ``irk`` and ``key`` (16 bytes
each, or None)."""

Offers = namedtuple("Offers", ("wearable", "expires", "items"))
"""An OFFERS message: the checked-in ``wearable`` (6 bytes), ``expires`` (Unix seconds) and
its ``items``, a tuple of ``OfferItem`` ascending by id (maybe empty)."""

OfferItem = namedtuple("OfferItem", ("id", "title", "text"))
"""One offer: the campaign's ``id`` and what the screen shows, ``title`` and ``text``."""

Downlink = namedtuple("Downlink", ("kind", "seq", "key_version", "message"))
"""What ``open_downlink`` returns: the message kind, the cloud's downlink sequence number,
the key version that opened it, and the decoded message: an ``Ack`` for ``KIND_ACK``, a
``Config`` for ``KIND_CONFIG``, a ``Command`` for ``KIND_COMMAND``, a ``Keys`` for
``KIND_KEYS``, an ``Offers`` for ``KIND_OFFERS``."""

_NOT_IN_TOPIC = (0x23, 0x2B, 0x2F, 0x7F)  # "#", "+", "/", DEL
# [1, through, [[first, last]]] is 3 deep; [2, revision, {name: {key: [scalar]}}] 4.
_MAX_DEPTH = const(4)
_U64 = 1 << 64  # not const(): larger than a small int on the boards
_MAX_SINGLE = 3.4028234663852886e38  # the largest finite binary32
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


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


# ---- configuration and commands -----------------------------------------------------------


def _single(value, error):
    """``value`` (a float) rounded to the nearest binary32, or ``error`` beyond its range."""
    if value != value or value == value * 2:  # NaN, infinities (and zeros): kept as they are
        return value
    if not -_MAX_SINGLE <= value <= _MAX_SINGLE:
        raise error("float %r is beyond single precision's range" % (value,))
    return struct.unpack(">f", struct.pack(">f", value))[0]


def _scalar(value, what, error, encoding):
    """``value`` as the wire holds it, or ``error``. Encoding rounds floats to single
    precision; decoding refuses those that are not (module docstring)."""
    t = type(value)
    if t is int:
        if not -_U64 <= value < _U64:
            raise error("%s: int %d is beyond 64 bits" % (what, value))
        return value
    if t is float:
        single = _single(value, error)
        if not encoding and single != value and value == value:
            raise error("%s: float %r is not single precision" % (what, value))
        return single
    if t is str or t is bytes or t is bool or value is None:
        return value
    if encoding and t is bytearray:
        return bytes(value)
    raise error("%s: a %s is not a scalar" % (what, t.__name__))


def _value(value, what, error, encoding):
    """A scalar or a list of scalars (tuples too when encoding)."""
    t = type(value)
    if t is list or (encoding and t is tuple):
        return [_scalar(item, what, error, encoding) for item in value]
    return _scalar(value, what, error, encoding)


def _has_control(text):
    """Whether ``text`` holds a control character (C0 or DEL)."""
    return any(c < " " or c == "\x7f" for c in text)


def _shown(key):
    """``key`` as an error message names it: as it is, or quoted when it holds a control
    character (a newline in a key must not break the one-line message)."""
    return repr(key) if _has_control(key) else key


def _map(value, what, error, encoding, nested):
    """A map of text keys to values; at the top (``nested`` False) also to maps of them."""
    if type(value) is not dict:
        raise error("%s must be a map, not %s" % (what, type(value).__name__))
    out = {}
    for key in value:
        if type(key) is not str:
            raise error("%s: key %r is not text" % (what, key))
        item = value[key]
        where = "%s %s" % (what, _shown(key))
        if type(item) is dict:
            if nested:
                raise error("%s: a map in a map in a map (one level of map at most)" % where)
            out[key] = _map(item, where, error, encoding, True)
        else:
            out[key] = _value(item, where, error, encoding)
    return out


def _check_name(name, error):
    if type(name) is not str:
        raise error("command name must be text, not %s" % type(name).__name__)
    ok = 0 < len(name) <= MAX_NAME_LEN
    for c in name:
        if c not in _NAME_CHARS:
            ok = False
    if not ok:
        raise error("command name %r is not 1 to %d of a-z, 0-9, _" % (name, MAX_NAME_LEN))


def _encode_message(message, what):
    try:
        data = cbor.dumps(message, True)
    except LocalError as exc:
        raise ConfigError("%s: %s" % (what, exc.message)) from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise ConfigError(
            "%s of %d bytes is over %d: send less" % (what, len(data), MAX_MESSAGE_BYTES)
        )
    return data


def encode_config(revision, settings):
    """A CONFIG message's bytes: configuration ``revision`` (0..MAX_SEQ, higher than any
    before for the gateway) with the whole ``settings`` (a non-empty dict, values as the
    module docstring says; floats go in single precision). Raises ConfigError for anything
    else, or for more than ``MAX_MESSAGE_BYTES``."""
    _check_seq("config revision", revision)
    wire = _map(settings, "config settings", ConfigError, True, False)
    if not wire:
        raise ConfigError("config settings must not be empty: send the whole configuration")
    return _encode_message([KIND_CONFIG, revision, wire], "config")


def encode_command(command_id, name, args=None):
    """A COMMAND message's bytes: command ``command_id`` (0..MAX_SEQ, the same on every
    resend), ``name`` (1 to 32 of a-z, 0-9, _) and ``args`` (a dict, maybe empty; None for
    none). Raises ConfigError for anything else, or for more than ``MAX_MESSAGE_BYTES``."""
    _check_seq("command id", command_id)
    _check_name(name, ConfigError)
    wire = _map({} if args is None else args, "command args", ConfigError, True, False)
    return _encode_message([KIND_COMMAND, command_id, name, wire], "command")


def _decode_config(message):
    if len(message) != 3:
        raise DecodeError("a config is [2, revision, settings]: %d items" % len(message))
    revision = message[1]
    if type(revision) is not int or not 0 <= revision <= MAX_SEQ:
        raise DecodeError("config revision must be 0..2**40-1, not %r" % (revision,))
    settings = _map(message[2], "config settings", DecodeError, False, False)
    if not settings:
        raise DecodeError("config settings are empty")
    return Config(revision, settings)


def _decode_command(message):
    if len(message) != 4:
        raise DecodeError("a command is [3, id, name, args]: %d items" % len(message))
    command_id = message[1]
    if type(command_id) is not int or not 0 <= command_id <= MAX_SEQ:
        raise DecodeError("command id must be 0..2**40-1, not %r" % (command_id,))
    _check_name(message[2], DecodeError)
    args = _map(message[3], "command args", DecodeError, False, False)
    return Command(command_id, message[2], args)


# ---- wearable bindings ----------------------------------------------------------------------


def check_bindings(items, error):
    """``items`` (a list or tuple of ``[address, irk, key]``) as a tuple of ``Binding``, or
    ``error``: addresses 6 bytes strictly ascending, IRK and key 16 bytes or None, no
    all-zero IRK. Messages name the device, never a secret."""
    if type(items) is not list and type(items) is not tuple:
        raise error("wearable bindings must be a list")
    out = []
    previous = None
    for item in items:
        if (type(item) is not list and type(item) is not tuple) or len(item) != 3:
            raise error("a wearable binding is [address, irk, key]")
        address = item[0]
        if type(address) is bytearray:
            address = bytes(address)
        if type(address) is not bytes or len(address) != 6:
            raise error("a wearable's address is 6 bytes, not %r" % (address,))
        if previous is not None and not previous < address:
            raise error(
                "wearable bindings must ascend by address, each once (%s after %s)"
                % (_hex(address), _hex(previous))
            )
        previous = address
        irk = _secret(item[1], "IRK", address, error)
        if irk is not None and irk == bytes(16):
            raise error("wearable %s: the IRK is all zeros, which is no key" % _hex(address))
        out.append(Binding(address, irk, _secret(item[2], "bind key", address, error)))
    return tuple(out)


def _hex(address):
    return ":".join("%02X" % b for b in address)


def _secret(value, what, address, error):
    if value is None:
        return None
    if type(value) is bytearray:
        value = bytes(value)
    if type(value) is not bytes or len(value) != 16:
        raise error(
            "wearable %s: the %s must be 16 bytes or null (value not shown)" % (_hex(address), what)
        )
    return value


def encode_keys(revision, bindings):
    """The KEYS messages (a list of bytes, one per page, at least one) that carry the whole
    set ``bindings`` (an iterable of ``(address, irk, key)``, any order; irk and key may be
    None) at ``revision`` (0..MAX_SEQ, above any before for the gateway). Raises ConfigError
    for bindings that do not fit the format, an address twice, or more than
    ``MAX_BINDINGS``."""
    _check_seq("keys revision", revision)
    items = []
    for item in bindings:
        if (type(item) is not list and type(item) is not tuple) or len(item) != 3:
            raise ConfigError("a wearable binding is (address, irk, key)")
        items.append(list(item))
    items.sort(key=lambda item: bytes(item[0]) if isinstance(item[0], (bytes, bytearray)) else b"")
    checked = check_bindings(items, ConfigError)
    if len(checked) > MAX_BINDINGS:
        raise ConfigError(
            "a gateway holds at most %d wearables, not %d" % (MAX_BINDINGS, len(checked))
        )
    pages = (len(checked) + KEYS_PER_PAGE - 1) // KEYS_PER_PAGE or 1
    out = []
    for page in range(pages):
        chunk = checked[page * KEYS_PER_PAGE : (page + 1) * KEYS_PER_PAGE]
        wire = [[b.address, b.irk, b.key] for b in chunk]
        out.append(_encode_message([KIND_KEYS, revision, page, pages, wire], "keys"))
    return out


def _decode_keys(message):
    if len(message) != 5:
        raise DecodeError("keys are [4, revision, page, pages, bindings]: %d items" % len(message))
    revision, page, pages = message[1], message[2], message[3]
    if type(revision) is not int or not 0 <= revision <= MAX_SEQ:
        raise DecodeError("keys revision must be 0..2**40-1, not %r" % (revision,))
    if type(pages) is not int or not 1 <= pages <= MAX_KEYS_PAGES:
        raise DecodeError("keys pages must be 1..%d, not %r" % (MAX_KEYS_PAGES, pages))
    if type(page) is not int or not 0 <= page < pages:
        raise DecodeError("keys page must be 0..%d, not %r" % (pages - 1, page))
    bindings = check_bindings(message[4], DecodeError)
    n = len(bindings)
    if n > KEYS_PER_PAGE:
        raise DecodeError("a keys page holds at most %d bindings, not %d" % (KEYS_PER_PAGE, n))
    if page < pages - 1 and n != KEYS_PER_PAGE:
        raise DecodeError("keys page %d of %d is not full (%d bindings)" % (page, pages, n))
    if pages > 1 and n == 0:
        raise DecodeError("keys page %d of %d is empty" % (page, pages))
    return Keys(revision, page, pages, bindings)


class KeysPages:
    """Collects the pages of one KEYS revision until every one has arrived.

    ``add(keys)`` returns the whole set (a tuple of ``Binding``) when ``keys`` completes its
    revision, else None. Pages of a newer revision drop the partial one before; pages of an
    older revision are ignored. Raises DecodeError (and forgets the revision) when pages of
    one revision disagree on their count or are out of order across pages.
    """

    def __init__(self):
        self.revision = None
        self._count = 0
        self._pages = {}

    def add(self, keys):
        """Take one ``Keys`` page; the whole set if it was the last missing, else None."""
        if keys.revision != self.revision:
            if self.revision is not None and keys.revision < self.revision:
                return None
            self.revision = keys.revision
            self._count = keys.pages
            self._pages = {}
        elif keys.pages != self._count:
            self.revision = None
            raise DecodeError(
                "pages of keys revision %d disagree on their count (%d, %d)"
                % (keys.revision, self._count, keys.pages)
            )
        self._pages[keys.page] = keys.bindings
        if len(self._pages) < self._count:
            return None
        out = []
        for page in range(self._count):
            chunk = self._pages[page]
            if out and chunk and not out[-1].address < chunk[0].address:
                self.revision = None
                raise DecodeError("keys pages of revision %d overlap" % keys.revision)
            out.extend(chunk)
        self.revision = None
        self._pages = {}
        return tuple(out)


# ---- offers for a checked-in customer -----------------------------------------------------


def _offer_text(value, what, low, high, error):
    """``value`` if it is text of ``low``..``high`` bytes of UTF-8 without control
    characters, else ``error``."""
    if type(value) is not str:
        raise error("offer %s must be text, not %s" % (what, type(value).__name__))
    size = len(value.encode("utf-8"))
    if not low <= size <= high:
        raise error("offer %s must be %d to %d bytes of UTF-8, not %d" % (what, low, high, size))
    if _has_control(value):
        raise error("offer %s holds a control character" % what)
    return value


def _check_offers(wearable, expires, items, error):
    """``Offers`` from wire or caller values, or ``error`` (module docstring)."""
    if type(wearable) is bytearray:
        wearable = bytes(wearable)
    if type(wearable) is not bytes or len(wearable) != 6:
        raise error("offers' wearable is 6 bytes, not %r" % (wearable,))
    if type(expires) is not int or not 0 <= expires <= MAX_SEQ:
        raise error("offers' expiry must be Unix seconds 0..2**40-1, not %r" % (expires,))
    if type(items) is not list and type(items) is not tuple:
        raise error("offers' items must be a list")
    if len(items) > MAX_OFFERS:
        raise error("at most %d offers at once, not %d" % (MAX_OFFERS, len(items)))
    out = []
    previous = -1
    for item in items:
        if (type(item) is not list and type(item) is not tuple) or len(item) != 3:
            raise error("an offer is [id, title, text]")
        offer_id = item[0]
        if type(offer_id) is not int or not 0 <= offer_id <= MAX_SEQ:
            raise error("offer id must be 0..2**40-1, not %r" % (offer_id,))
        if offer_id <= previous:
            raise error("offer ids must ascend, each once (%d after %d)" % (offer_id, previous))
        previous = offer_id
        title = _offer_text(item[1], "title", 1, MAX_OFFER_TITLE, error)
        text = _offer_text(item[2], "text", 0, MAX_OFFER_TEXT, error)
        out.append(OfferItem(offer_id, title, text))
    return Offers(wearable, expires, tuple(out))


def encode_offers(wearable, expires, items):
    """An OFFERS message's bytes: for the customer of ``wearable`` (6 bytes), valid until
    ``expires`` (Unix seconds), ``items`` an iterable of ``(id, title, text)`` in any order
    (maybe empty). Raises ConfigError for anything the format cannot carry (module
    docstring): more than ``MAX_OFFERS``, an id twice, a title or text too long."""
    listed = []
    for item in items:
        if (type(item) is not list and type(item) is not tuple) or len(item) != 3:
            raise ConfigError("an offer is (id, title, text)")
        listed.append(item)
    listed.sort(key=lambda item: item[0] if type(item[0]) is int else -1)
    checked = _check_offers(wearable, expires, listed, ConfigError)
    wire = [[o.id, o.title, o.text] for o in checked.items]
    return _encode_message([KIND_OFFERS, checked.wearable, checked.expires, wire], "offers")


def _decode_offers(message):
    if len(message) != 4:
        raise DecodeError("offers are [5, wearable, expires, items]: %d items" % len(message))
    return _check_offers(message[1], message[2], message[3], DecodeError)


def _decode(data):
    """``(kind, message)`` of a downlink plaintext (see ``decode_message``)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("downlink message must be bytes, not %s" % type(data).__name__)
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(
            "downlink message of %d bytes is over %d" % (len(data), MAX_MESSAGE_BYTES)
        )
    try:
        message = cbor.loads(data, _MAX_DEPTH)
    except DecodeError as exc:
        raise DecodeError("downlink message: %s" % exc.message) from None
    if not isinstance(message, list) or not message:
        raise DecodeError("downlink message must be a non-empty array [kind, ...]")
    kind = message[0]
    if type(kind) is not int:
        raise DecodeError("downlink message kind must be an int, not %r" % (kind,))
    if kind == KIND_ACK:
        decoded = _decode_ack(message)
    elif kind == KIND_CONFIG:
        decoded = _decode_config(message)
    elif kind == KIND_COMMAND:
        decoded = _decode_command(message)
    elif kind == KIND_KEYS:
        decoded = _decode_keys(message)
    elif kind == KIND_OFFERS:
        decoded = _decode_offers(message)
    else:
        raise DecodeError("unknown downlink kind %d" % kind)
    if cbor.dumps(message, True) != bytes(data):
        raise DecodeError("downlink message is not in deterministic CBOR")
    return kind, decoded


def decode_message(data):
    """The message in a downlink plaintext: an ``Ack``, a ``Config``, a ``Command``, a
    ``Keys`` page or ``Offers``.
    Raises DecodeError for anything not exactly in the format (module docstring), and for
    unknown kinds."""
    return _decode(data)[1]


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
    """The cloud seals ``message`` for ``ring``'s gateway.

    ``message``: bytes from ``encode_ack``, ``encode_config``, ``encode_command``,
    ``encode_keys`` or ``encode_offers``;
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
    kind, message = _decode(opened.plaintext)
    return Downlink(kind, opened.seq, opened.key_version, message)


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


# ---- running each command at most once -------------------------------------------------------


class CommandLog:
    """The command ids a gateway has run, so that it runs each at most once.

    Remembers the ``size`` highest ids recorded; when it has to forget one, every id up to
    the highest it forgot counts as run from then on (the cloud numbers commands in
    increasing order, so only a very late resend is refused that way, never run twice).
    ``state()`` is a list of ints, ``[floor, ids ...]`` (floor: the highest id forgotten, or
    -1), for the gateway to persist and give back as ``state`` after a reboot. Raises
    ConfigError for a size or state that does not fit.
    """

    def __init__(self, size=DEFAULT_LOG_SIZE, state=None):
        if type(size) is not int or not 1 <= size <= 1024:
            raise ConfigError("command log size must be an int in 1..1024, not %r" % (size,))
        self.size = size
        self._floor = -1
        self._ids = []
        if state is not None:
            self._load(state)

    def _load(self, state):
        if (type(state) is not list and type(state) is not tuple) or not state:
            raise ConfigError("command log state must be a list [floor, ids ...]")
        previous = -2
        for i in range(len(state)):
            n = state[i]
            if type(n) is not int or not previous < n <= MAX_SEQ:  # floor >= -1, then ascending
                raise ConfigError("command log state %r is not [floor, ascending ids]" % (state,))
            previous = n
        if len(state) - 1 > self.size:
            raise ConfigError("command log state holds more than %d ids" % self.size)
        self._floor = state[0]
        self._ids = list(state[1:])

    def seen(self, command_id):
        """True if ``command_id`` was recorded (or is at or below an id forgotten since)."""
        return command_id <= self._floor or command_id in self._ids

    def record(self, command_id):
        """Remember that ``command_id`` runs now (persist ``state()`` before running it).
        Recording an id already seen changes nothing."""
        _check_seq("command id", command_id)
        if self.seen(command_id):
            return
        ids = self._ids
        i = len(ids)
        while i and ids[i - 1] > command_id:  # kept ascending: the lowest is forgotten first
            i -= 1
        ids.insert(i, command_id)
        if len(ids) > self.size:
            self._floor = ids.pop(0)

    def state(self):
        """``[floor, ids ...]``: a new list of ints (see the class docstring)."""
        out = [self._floor]
        out.extend(self._ids)
        return out
