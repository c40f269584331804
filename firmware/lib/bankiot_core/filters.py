"""Filters at the edge: what the radio hears, reduced to what the bank may and needs to see.

Sans-I/O like the rest of the core: ``FilterPipeline.process`` takes one decoded frame (the
sender's address, its RSSI, the time, a frame id and its readings) and returns what to
forward; ``tick`` is called every second or so with the time and returns presence events
that silence caused. Nothing here reads a clock or keeps a thread.

The order of the filters, and why:

1. Allow-list (``AllowList``): only devices paired to this branch, by address or by
   resolvable private address (``rpa``). Anything else is dropped before any state exists
   for it and only counted: nothing about an unpaired device (not even its address) is kept.
2. Presence (``presence.Presence``): every frame of a paired device is a radio sample,
   repeats included (an iBeacon sends one identical frame forever).
3. Duplicates (``Deduplicator``): a frame id (packet id, counter or payload digest) heard
   again within ``dedup_window_ms`` of the last time it was let through is dropped. After the
   window a repeat goes on, so an unchanged sensor still gets its heartbeat through, but its
   events do not: an event is forwarded once per frame id.
4. Deadband and heartbeat (``Deadband``): a number goes out when it moved by more than its
   deadband since the value last *sent*, anything else when it changed, and any value when
   its heartbeat interval has passed. Events (unit ``"event"`` or a metric listed in
   ``event_metrics``) go out once per new frame.
5. Rate limit (``RateLimiter``): a token bucket per device; only a frame that would forward
   something spends a token. A refused frame commits nothing (its id is not remembered, the
   values stay "unsent"), so a later frame or repeat carries the change when tokens return.

State lives in one place: one list per tracked device (``FilterPipeline._devices``, keyed by
the identity address object from the configuration, so no address is stored twice)::

    [last heard, presence (1 slot), bucket (2), frame ids (2 * dedup_depth),
     metric, last sent value, sent at, metric, last sent value, sent at, ...]

Each filter object owns a range of slots from its ``base``. Times are wrapped ticks
(``ticks``), small ints on MicroPython. The table holds at most ``max_devices`` records and
forgets the least recently heard device to admit a new one; ``tick`` forgets devices not heard
for ``device_ttl_ms`` and clears timestamps once they have expired, so no stored time outlives
half the tick period.

Counters (``FilterPipeline.counters()``), for health reports:

- ``frames_in``: frames given to ``process``;
- dropped, by reason: ``frames_not_paired``, ``frames_duplicate``, ``frames_rate_limited``
  (whole frames), ``readings_unchanged`` (within deadband, no heartbeat due),
  ``readings_repeated`` (an event in a frame already forwarded);
- ``readings_out``, ``events_out``: what was forwarded;
- ``devices_evicted`` (forgotten to make room: ``max_devices`` is too small),
  ``devices_expired`` (not heard for ``device_ttl_ms``), ``devices_unpaired`` (state dropped
  by ``reconfigure``);
- ``rpa_resolved``: private addresses resolved with AES (cache misses that matched).
"""

from collections import namedtuple

from bankiot_core._compat import const
from bankiot_core.errors import LocalError
from bankiot_core.filterconfig import load_filter_config
from bankiot_core.presence import Presence
from bankiot_core.rpa import RpaResolver
from bankiot_core.ticks import MASK, elapsed

Output = namedtuple("Output", ("address", "readings", "events"))
"""What ``FilterPipeline.process`` lets through for one frame: ``address`` is the device's
identity address (for a device on private addresses, the identity its IRK is paired with),
``readings`` the readings to forward (a sequence, maybe empty), ``events`` presence events (a
tuple, maybe empty)."""

EVENT_UNIT = "event"  # the unit decoders give events (see bankiot_core.decoded)

COUNTERS = (
    "frames_in",
    "frames_not_paired",
    "frames_duplicate",
    "frames_rate_limited",
    "readings_unchanged",
    "readings_repeated",
    "readings_out",
    "events_out",
    "devices_evicted",
    "devices_expired",
    "devices_unpaired",
    "rpa_resolved",
)

_NEW = const(0)
_DUPLICATE = const(1)
_REPEAT = const(2)
_TOKEN = const(60000)  # bucket units per token: rate_per_min units flow in per millisecond
_NONE = ()


class AllowList:
    """Paired devices: by address, or by resolvable private address and the device's IRK.

    ``identity(address)`` returns the identity address object from the configuration (the
    same object for every frame of that device) or None for a device that is not paired.
    """

    def __init__(self, config, block_cipher=None):
        paired = {}
        for address in config["paired"]:
            paired[address] = address
        identities = []
        for address, irk in config["irks"]:
            # A device with an IRK may also advertise on its identity address.
            address = paired.setdefault(address, address)
            identities.append((address, irk))
        self._paired = paired
        self._resolver = None
        if identities:
            self._resolver = RpaResolver(identities, block_cipher, config["rpa_cache_size"])

    def identity(self, address):
        """The paired identity of ``address`` (6 bytes, display order), or None."""
        key = self._paired.get(address)
        if key is None and self._resolver is not None:
            key = self._resolver.resolve(address)
        return key

    def paired_identity(self, identity):
        """The configuration's own object for an identity address, or None if not paired."""
        return self._paired.get(identity)

    @property
    def resolved(self):
        """Private addresses resolved with AES so far."""
        return self._resolver.resolved if self._resolver is not None else 0


class Deduplicator:
    """Remembers each device's last ``dedup_depth`` frame ids and when each was let through.

    Slots: ``frame id, tick`` pairs, newest first; the tick becomes None once the window
    has passed (``age``).
    """

    def __init__(self, config, base):
        self.window_ms = config["dedup_window_ms"]
        self.slots = 2 * config["dedup_depth"]
        self.base = base

    def fresh(self):
        """Initial slot values for a device just admitted."""
        return [None] * self.slots

    def check(self, rec, frame_id, now):
        """``_NEW``, ``_DUPLICATE`` (within the window) or ``_REPEAT`` (after it)."""
        if frame_id is None:
            return _NEW
        j = self.base
        end = j + self.slots
        while j < end:
            if rec[j] == frame_id:
                if elapsed(now, rec[j + 1]) < self.window_ms:
                    return _DUPLICATE
                return _REPEAT
            j += 2
        return _NEW

    def record(self, rec, frame_id, now):
        """Remember that ``frame_id`` was let through at ``now``."""
        if frame_id is None:
            return
        i = self.base
        end = i + self.slots
        j = i
        while j < end:
            if rec[j] == frame_id:  # a repeat: the window starts again
                rec[j + 1] = now
                return
            j += 2
        j = end - 1
        while j > i + 1:
            rec[j] = rec[j - 2]
            j -= 1
        rec[i] = frame_id
        rec[i + 1] = now

    def age(self, rec, now):
        """Clear the ticks of frame ids whose window has passed."""
        for j in range(self.base + 1, self.base + self.slots, 2):
            if rec[j] is not None and elapsed(now, rec[j]) >= self.window_ms:
                rec[j] = None


def _is_number(value):
    return isinstance(value, (int, float))


class Deadband:
    """Per metric deadband and heartbeat, over the value last sent.

    Slots from ``base`` to the end of the record: ``metric, value, tick`` triples, one per
    metric sent so far (at most ``max_metrics``; further metrics are forwarded without
    state). ``select`` decides, ``commit`` records what was really sent: the two are apart so
    a frame the rate limit refuses leaves the values unsent.
    """

    def __init__(self, config, base, counts):
        self._deadband = config["deadband"]
        self._deadband_default = config["deadband_default"]
        self._heartbeat = config["heartbeat_ms"]
        self._heartbeat_default = config["heartbeat_default_ms"]
        self._events = config["event_metrics"]
        self.max_metrics = config["max_metrics"]
        self._counts = counts
        self.base = base

    def is_event(self, reading):
        """True for a reading that reports something that happened rather than a state."""
        return reading[2] == EVENT_UNIT or reading[0] in self._events

    def _find(self, rec, metric):
        j = self.base
        n = len(rec)
        while j < n:
            if rec[j] == metric:
                return j
            j += 3
        return -1

    def _due(self, rec, j, reading, now):
        metric = reading[0]
        heartbeat = self._heartbeat.get(metric, self._heartbeat_default)
        if heartbeat and elapsed(now, rec[j + 2]) >= heartbeat:
            return True
        value = reading[1]
        last = rec[j + 1]
        if _is_number(value) and _is_number(last):
            return abs(value - last) > self._deadband.get(metric, self._deadband_default)
        return value != last

    def select(self, rec, readings, now, fresh):
        """The readings of one frame to forward (a list), or None for none.

        ``fresh`` is False for a repeated frame id: its events were sent already.
        """
        out = None
        counts = self._counts
        for reading in readings:
            if self.is_event(reading):
                if not fresh:
                    counts["readings_repeated"] += 1
                    continue
            else:
                j = self._find(rec, reading[0])
                if j >= 0 and not self._due(rec, j, reading, now):
                    counts["readings_unchanged"] += 1
                    continue
            if out is None:
                out = [reading]
            else:
                out.append(reading)
        return out

    def commit(self, rec, readings, now):
        """Record ``readings`` (from ``select``) as sent at ``now``; return the record.

        A metric seen for the first time makes the record longer: the result is then a new
        list (``list + list`` is sized exactly on MicroPython, ``extend`` leaves spare room),
        which the caller stores in place of the old one.
        """
        grow = None
        for reading in readings:
            if self.is_event(reading):
                continue
            j = self._find(rec, reading[0])
            if j >= 0:
                rec[j + 1] = reading[1]
                rec[j + 2] = now
                continue
            known = (len(rec) - self.base) // 3
            if grow is None:
                if known < self.max_metrics:
                    grow = [reading[0], reading[1], now]
            elif known + len(grow) // 3 < self.max_metrics:
                grow += [reading[0], reading[1], now]
        if grow is None:
            return rec
        return rec + grow

    def age(self, rec, now):
        """Clear the ticks of values whose heartbeat is due anyway (None reads as "never")."""
        for j in range(self.base + 2, len(rec), 3):
            if rec[j] is not None:
                heartbeat = self._heartbeat.get(rec[j - 2], self._heartbeat_default)
                if not heartbeat or elapsed(now, rec[j]) >= heartbeat:
                    rec[j] = None


class RateLimiter:
    """A token bucket per device in integers: ``rate_per_min`` tokens a minute, at most
    ``rate_burst`` saved up. One token is ``_TOKEN`` units and ``rate_per_min`` units flow
    in per millisecond, so refill is exact without fractions.

    Slots: units in the bucket, tick of the last refill (None once the bucket is full).
    """

    SLOTS = 2

    def __init__(self, config, base):
        self.rate = config["rate_per_min"]
        self.capacity = config["rate_burst"] * _TOKEN
        # Time to fill an empty bucket: beyond it the bucket is full, whatever it held.
        self._fill_ms = (self.capacity + self.rate - 1) // self.rate if self.rate else 0
        self.base = base

    def fresh(self, now):
        """Initial slot values for a device just admitted: a full bucket."""
        return [self.capacity, now]

    def take(self, rec, now):
        """Spend one token of the device's bucket; False when it is empty."""
        if not self.rate:
            return True
        i = self.base
        waited = elapsed(now, rec[i + 1])
        if waited >= self._fill_ms:
            units = self.capacity
        else:
            units = min(self.capacity, rec[i] + waited * self.rate)
        rec[i + 1] = now
        if units < _TOKEN:
            rec[i] = units
            return False
        rec[i] = units - _TOKEN
        return True

    def age(self, rec, now):
        """Fill the bucket and clear its tick once it would be full anyway."""
        i = self.base
        if rec[i + 1] is not None and elapsed(now, rec[i + 1]) >= self._fill_ms:
            rec[i] = self.capacity
            rec[i + 1] = None

    def clamp(self, rec):
        """Keep the bucket within a (new, maybe smaller) capacity."""
        if rec[self.base] > self.capacity:
            rec[self.base] = self.capacity


class FilterPipeline:
    """The edge filters composed in order, with their per-device state and counters.

    ``config`` is the filter configuration dict (see ``filterconfig``; None for defaults);
    ``block_cipher`` a factory ``key -> encrypt(block)`` for resolving private addresses
    (default: ``rpa.default_block_cipher``). Raises ConfigError for a bad configuration.
    """

    def __init__(self, config=None, block_cipher=None):
        self._block_cipher = block_cipher
        self._counts = {}
        for name in COUNTERS:
            self._counts[name] = 0
        self._devices = {}
        self._apply(load_filter_config(config))

    def _apply(self, config):
        allow = AllowList(config, self._block_cipher)  # may raise (no AES): nothing set yet
        self.config = config
        self._allow = allow
        base = 1  # slot 0: when the device was last heard
        self._presence = Presence(config, base)
        # Presence is about people: when the configuration names the devices they carry,
        # fixed sensors and the like take no part in it.
        self._presence_only = config["presence_devices"] or None
        base += Presence.SLOTS
        self._bucket = RateLimiter(config, base)
        base += RateLimiter.SLOTS
        self._dedup = Deduplicator(config, base)
        base += self._dedup.slots
        self._deadband = Deadband(config, base, self._counts)
        self._max_devices = config["max_devices"]
        self._ttl_ms = config["device_ttl_ms"]

    def __len__(self):
        """Devices with state (all paired: unpaired devices never get any)."""
        return len(self._devices)

    def counters(self):
        """A new dict of every counter (see the module docstring)."""
        out = dict(self._counts)
        out["rpa_resolved"] += self._allow.resolved
        return out

    def tracked(self):
        """Identity addresses of the devices with state (all of them paired)."""
        return list(self._devices)

    def present(self):
        """Identity addresses of the devices between an ``enter`` and a ``leave``."""
        presence = self._presence
        return [key for key, rec in self._devices.items() if presence.is_present(rec)]

    def process(self, address, rssi, now_ms, frame_id, readings):
        """Filter one frame; return an ``Output`` or None when nothing goes out.

        ``address``: the sender's 6-byte address (``bytes``, display order); ``rssi``: dBm
        (None or 127 when unknown); ``now_ms``: the time (see ``ticks``); ``frame_id``: any
        hashable that is equal for repeats of one frame (packet id, counter, payload digest;
        small ints cost no heap on MicroPython), or None when the format has none;
        ``readings``: a sequence of ``Reading``, metric names unique within the frame.
        """
        counts = self._counts
        counts["frames_in"] += 1
        if type(address) is not bytes or len(address) != 6:
            raise LocalError("an address is 6 bytes in display order, got %r" % (address,))
        key = self._allow.identity(address)
        if key is None:
            counts["frames_not_paired"] += 1
            return None
        now = now_ms & MASK
        presence = self._presence
        events = _NONE
        rec = self._devices.get(key)
        if rec is None:
            full = len(self._devices) >= self._max_devices
            event = self._evict_oldest(now_ms) if full else None
            if event is not None:
                events = (event,)
            # list + list sizes the record exactly (MicroPython has no [*a, *b]).
            rec = [now] + presence.fresh() + self._bucket.fresh(now) + self._dedup.fresh()  # noqa: RUF005
            self._devices[key] = rec
        else:
            event = presence.expire(rec, key, now_ms)
            if event is not None:
                events = (event,)
        only = self._presence_only
        if only is None or key in only:
            event = presence.observe(rec, key, rssi, now_ms)
            if event is not None:
                events += (event,)
        rec[0] = now

        out = None
        dedup = self._dedup
        verdict = dedup.check(rec, frame_id, now)
        if verdict == _DUPLICATE:
            counts["frames_duplicate"] += 1
        else:
            out = self._deadband.select(rec, readings, now, verdict == _NEW)
            if out is None:
                dedup.record(rec, frame_id, now)
            elif self._bucket.take(rec, now):
                dedup.record(rec, frame_id, now)
                grown = self._deadband.commit(rec, out, now)
                if grown is not rec:
                    self._devices[key] = grown
                counts["readings_out"] += len(out)
            else:
                counts["frames_rate_limited"] += 1
                out = None
        if events:
            counts["events_out"] += len(events)
        elif out is None:
            return None
        return Output(key, _NONE if out is None else out, events)

    def is_paired(self, address):
        """True when ``address`` (6 bytes) is a paired device, directly or as a resolvable
        private address of one."""
        return self._allow.identity(address) is not None

    def count_not_paired(self):
        """Count a frame dropped before ``process`` because its sender is not paired."""
        self._counts["frames_in"] += 1
        self._counts["frames_not_paired"] += 1

    def tick(self, now_ms):
        """Housekeeping at ``now_ms``; returns the presence events it caused (a list).

        Ends visits of devices not heard for ``presence_timeout_ms``, forgets devices not
        heard for ``device_ttl_ms`` and clears expired timestamps. Call it every second or
        so (timeouts are found no later than the next call), and at least every few days.
        """
        now = now_ms & MASK
        presence = self._presence
        events = []
        gone = []
        for key, rec in self._devices.items():
            event = presence.expire(rec, key, now_ms)
            if event is not None:
                events.append(event)
            if elapsed(now, rec[0]) >= self._ttl_ms:
                gone.append(key)
            else:
                self._bucket.age(rec, now)
                self._dedup.age(rec, now)
                self._deadband.age(rec, now)
        for key in gone:
            event = presence.leave_now(self._devices.pop(key), key, now_ms)
            if event is not None:
                events.append(event)
        self._counts["devices_expired"] += len(gone)
        self._counts["events_out"] += len(events)
        return events

    def _evict_oldest(self, now_ms):
        """Forget the least recently heard device; its ``leave`` event or None."""
        oldest = None
        oldest_age = -1
        for key, rec in self._devices.items():
            age = elapsed(now_ms, rec[0])
            if age > oldest_age:
                oldest = key
                oldest_age = age
        self._counts["devices_evicted"] += 1
        return self._presence.leave_now(self._devices.pop(oldest), oldest, now_ms)

    def reconfigure(self, config, now_ms):
        """Apply a new configuration (from the cloud); return the presence events it caused.

        The new configuration is checked first: on ConfigError nothing changes. Devices that
        are still paired keep their state (presence, last sent values, recent frame ids);
        devices no longer paired are forgotten at once (a ``leave`` if they were present),
        as are the least recently heard beyond a smaller ``max_devices``.
        """
        config = load_filter_config(config)
        old_presence = self._presence
        old_start = self._dedup.base
        old_end = old_start + self._dedup.slots
        resolved = self._allow.resolved
        self._apply(config)
        self._counts["rpa_resolved"] += resolved
        old_devices = self._devices
        slots = self._dedup.slots
        events = []
        self._devices = {}
        for key, rec in old_devices.items():
            identity = self._allow.paired_identity(key)
            if identity is None:
                self._counts["devices_unpaired"] += 1
                event = old_presence.leave_now(rec, key, now_ms)
                if event is not None:
                    events.append(event)
                continue
            frames = (rec[old_start:old_end] + self._dedup.fresh())[:slots]
            metrics = rec[old_end:][: 3 * self._deadband.max_metrics]
            rec = rec[:old_start] + frames + metrics
            self._bucket.clamp(rec)
            self._devices[identity] = rec
        while len(self._devices) > self._max_devices:
            event = self._evict_oldest(now_ms)
            if event is not None:
                events.append(event)
        self._counts["events_out"] += len(events)
        return events
