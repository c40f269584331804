"""The batcher: what the filters let through, gathered into batches in two lanes.

Sans-I/O like the rest of the core: every call takes the time (``now_ms``, the same clock
as the filters: see ``ticks``) and returns the batches that are ready, as ``ReadyBatch(lane,
seq, payload)``; ``payload`` is the plaintext batch (``batch``), which the caller seals with
``seq`` as the Partial IV (``cose``) and queues. Nothing here reads a clock or writes a file,
except through the sequence numbers' store when a new block is reserved (``sequence``).

Two lanes, one sequence space (both take from the same ``SequenceNumbers``):

- **urgent** (``LANE_URGENT``): a frame with a presence event, an event reading (unit
  ``"event"``: a button press, a dimmer turn, a command) or a raised alarm (a reading of one
  of ``urgent_metrics`` whose value is true or non-zero) leaves at once, in a small batch of
  its own, returned by the call that added it. The whole frame goes urgent, so an event
  keeps its companions (``dimmer_steps``, ``command_args``) and the readings sent with it;
  ``add_events`` (the presence events ``tick`` returns) is always urgent. A cleared alarm
  is routine.
- **routine** (``LANE_ROUTINE``): everything else waits until the batch is full (it holds
  ``max_readings`` entries, or the next frame would take it over ``max_bytes``) or its
  oldest entry has waited ``max_delay_ms``. ``add`` and ``poll`` return it when due;
  ``due_in`` says how long the driver may sleep before calling ``poll``.

An entry is a reading, a presence event or one of the gateway's own records, which travel
in the gateway's group: a health record (``add_health``: the gateway's counters, loss counts
included; routine), a command's result (``add_result``: urgent, someone is waiting for it)
or what the gateway runs (``add_running``: software version and config revision; routine).
A frame that
does not fit in the room left closes the batch and starts the next one; a frame too large
for an empty batch is split into one record per entry, and an entry that alone does not
fit ``max_bytes`` is dropped and counted (``entries_too_large``), never silently.

Vital signs in every batch (``vitals``, a function returning the gateway's counters, and
``vitals_names``, the ones to carry): as it closes, every batch gets a health record of
those counters at that moment, unless it already holds a full one (``add_health``). Its
room is kept free from the start (``batch.health_bound``: the largest such record could
take), so a batch with it still fits ``max_bytes``; it counts as no entry.

Times in a batch: while the driver has not told the batcher the wall-clock time
(``set_clock``), batches carry the gateway's ticks (``batch.CLOCK_TICKS``); after, Unix
milliseconds (``batch.CLOCK_UNIX_MS``). A batch keeps the clock it was opened with. The
batcher keeps its reference tick recent itself, as long as it is called at least every few
days (``poll`` every second or so is what a driver does anyway).

If taking a sequence number fails (the store could not save a new block), the exception
propagates and the batch stays open, nothing lost: the next ``add`` or ``poll`` emits it.

Counters (``counters()``): ``batches_urgent``, ``batches_routine`` (emitted),
``entries_too_large`` (dropped).
"""

from collections import namedtuple

from bankiot_core._compat import const
from bankiot_core.batch import (
    CLOCK_TICKS,
    CLOCK_UNIX_MS,
    BatchBuilder,
    counter_pairs,
    event_pair,
    health_bound,
    kiosk_fields,
    reading_pairs,
    record_size,
    result_fields,
    running_fields,
)
from bankiot_core.decoded import EVENT_UNIT
from bankiot_core.errors import ConfigError, LocalError
from bankiot_core.ticks import MASK, MAX_DURATION_MS, elapsed

LANE_URGENT = "urgent"
LANE_ROUTINE = "routine"

ReadyBatch = namedtuple("ReadyBatch", ("lane", "seq", "payload"))
"""A batch to seal and queue: its lane, its sequence number and its plaintext (CBOR)."""

# Binary sensors that report something wrong: a raised one goes urgent.
URGENT_METRICS = (
    "smoke",
    "carbon_monoxide",
    "gas_detected",
    "moisture_detected",
    "tamper",
    "problem",
)

COUNTERS = ("batches_urgent", "batches_routine", "entries_too_large")

DEFAULT_MAX_READINGS = const(64)
# Plaintext budget: with the COSE envelope (25 bytes plus the gateway id, see cose) a batch
# still fits the 1024-byte payload RFC 7252 4.6 suggests for one CoAP datagram.
DEFAULT_MAX_BYTES = const(960)
DEFAULT_MAX_DELAY_MS = const(30000)

_MIN_BYTES = const(32)
_MAX_BYTES = const(0x10000)
_MAX_READINGS = const(4096)
_CLOCK_STEP_MS = const(86400000)  # move the wall-clock reference forward once a day
# Beside the vitals record itself, a batch may grow by: the top array's head (2), the
# gateway group's head and its null (2), or that group's head (2) if it exists already.
_VITALS_SLACK = const(4)


class _Lane:
    """One lane's open batch and when it opened (a tick)."""

    def __init__(self, name, counter):
        self.name = name
        self.counter = counter
        self.builder = None
        self.opened = 0
        self.offset = 0  # ms from the batch's base to ``opened`` (a Unix base is a second)
        self.last = 0  # dt of the newest record
        self.health = False  # the open batch holds a full health record

    def waiting(self):
        """Entries in the open batch."""
        return 0 if self.builder is None else self.builder.entries


def _check_int(name, value, low, high):
    if type(value) is not int or not low <= value <= high:
        raise ConfigError("%s is an int in %d..%d, got %r" % (name, low, high, value))


class Batcher:
    """Two-lane batching over one sequence space (see the module docstring).

    ``sequence``: an object whose ``take()`` returns the next sequence number
    (``sequence.SequenceNumbers``). Limits: ``max_readings`` entries and ``max_bytes`` bytes
    of plaintext per batch, ``max_delay_ms`` of waiting in the routine lane (0 sends every
    frame at once). ``urgent_metrics``: metric names whose raised value is an alarm.
    ``vitals`` (a function returning a dict of counters, or None) and ``vitals_names``:
    the health record every batch carries (module docstring). Raises ConfigError for a
    limit out of range, or a ``max_bytes`` that leaves the vitals too little room.
    """

    def __init__(
        self,
        sequence,
        max_readings=DEFAULT_MAX_READINGS,
        max_bytes=DEFAULT_MAX_BYTES,
        max_delay_ms=DEFAULT_MAX_DELAY_MS,
        urgent_metrics=URGENT_METRICS,
        vitals=None,
        vitals_names=(),
    ):
        _check_int("max_readings", max_readings, 1, _MAX_READINGS)
        _check_int("max_bytes", max_bytes, _MIN_BYTES, _MAX_BYTES)
        _check_int("max_delay_ms", max_delay_ms, 0, MAX_DURATION_MS - 1000)
        if not hasattr(sequence, "take"):
            raise ConfigError("sequence needs a take() method, got %r" % (sequence,))
        urgent = {}
        for name in urgent_metrics:
            if type(name) is not str:
                raise ConfigError("urgent_metrics holds metric names, got %r" % (name,))
            urgent[name] = True
        self.max_readings = max_readings
        self.max_bytes = max_bytes
        self.max_delay_ms = max_delay_ms
        self._sequence = sequence
        self._urgent_metrics = urgent
        self._vitals = vitals
        self._vitals_names = tuple(vitals_names)
        self._reserve = 0
        if vitals is not None:
            self._reserve = health_bound(self._vitals_names) + _VITALS_SLACK
            if max_bytes < 2 * self._reserve:
                raise ConfigError(
                    "max_bytes %d leaves too little room beside the vitals (%d bytes)"
                    % (max_bytes, self._reserve)
                )
        self._urgent = _Lane(LANE_URGENT, "batches_urgent")
        self._routine = _Lane(LANE_ROUTINE, "batches_routine")
        self._clock_tick = None  # the tick ...
        self._clock_unix = 0  # ... that was this Unix time in ms
        self._counts = {}
        for name in COUNTERS:
            self._counts[name] = 0

    # ---- what the driver calls -----------------------------------------------------------

    def add(self, output, now_ms):
        """Add what the filters let through for one frame (a ``filters.Output``).

        Returns the batches that are ready (a list of ``ReadyBatch``, maybe empty).
        """
        ready = []
        now = self._tick(now_ms, ready)
        address = output[0]
        readings = output[1]
        events = output[2]
        lane = self._urgent if events or self._is_urgent(readings) else self._routine
        pairs = []
        n = 0
        for event in events:
            if event[1] == address:
                event_pair(event, pairs)
                n += 1
            else:  # a leave of another device, evicted to make room for this one
                self._put(lane, event[1], now, event_pair(event, []), 1, ready)
        if readings:
            reading_pairs(readings, pairs)
            n += len(readings)
        if n:
            self._put(lane, address, now, pairs, n, ready)
        self._finish(now, ready)
        return ready

    def add_events(self, events, now_ms):
        """Add presence events (from ``FilterPipeline.tick``): urgent. Returns ready batches."""
        ready = []
        now = self._tick(now_ms, ready)
        for event in events:
            self._put(self._urgent, event[1], now, event_pair(event, []), 1, ready)
        self._finish(now, ready)
        return ready

    def add_health(self, counters, now_ms):
        """Add the gateway's counters (a dict of name -> int or None) as a health record.

        Routine; one entry. Returns ready batches.
        """
        ready = []
        now = self._tick(now_ms, ready)
        pairs = counter_pairs(counters, [])
        if pairs:
            lane = self._routine
            self._put(lane, None, now, pairs, 1, ready)
            if lane.waiting():
                lane.health = True
        self._finish(now, ready)
        return ready

    def add_result(self, command_id, status, detail, now_ms):
        """Add what became of downlink command ``command_id``: ``status`` (a
        ``batch.STATUS_*`` code) and ``detail`` (text of at most 200 bytes, see
        ``batch.clip_detail``). Urgent; one entry. Returns ready batches. LocalError for
        values the wire cannot carry (``batch.result_fields``), before anything changes."""
        fields = result_fields(command_id, status, detail, [])
        ready = []
        now = self._tick(now_ms, ready)
        self._put(self._urgent, None, now, fields, 1, ready)
        self._finish(now, ready)
        return ready

    def add_running(self, software, config_revision, now_ms):
        """Add what the gateway runs: its ``software`` version (text of 1 to 32 bytes) and
        the downlink CONFIG revision it runs (None: none yet). Routine; one entry. Returns
        ready batches. LocalError for values the wire cannot carry, before anything changes."""
        fields = running_fields(software, config_revision, [])
        ready = []
        now = self._tick(now_ms, ready)
        self._put(self._routine, None, now, fields, 1, ready)
        self._finish(now, ready)
        return ready

    def add_kiosk(self, kind, event_id, wearable, detail, now_ms):
        """Add a customer's action at the kiosk (``batch.KioskEvent``'s fields). Urgent: a
        check-in is awaited at the counter; one entry. Returns ready batches. LocalError for
        values the wire cannot carry (``batch.kiosk_fields``), before anything changes."""
        fields = kiosk_fields(kind, event_id, wearable, detail, [])
        ready = []
        now = self._tick(now_ms, ready)
        self._put(self._urgent, None, now, fields, 1, ready)
        self._finish(now, ready)
        return ready

    def poll(self, now_ms):
        """The batches due at ``now_ms`` (the routine lane's delay has passed)."""
        ready = []
        self._tick(now_ms, ready)
        return ready

    def due_in(self, now_ms):
        """Milliseconds until ``poll`` has a batch to return (0: now), or None (nothing waits)."""
        if self._urgent.waiting():
            return 0
        lane = self._routine
        if not lane.waiting():
            return None
        waited = elapsed(now_ms & MASK, lane.opened)
        return self.max_delay_ms - waited if waited < self.max_delay_ms else 0

    def flush(self):
        """Every batch still open, ready now (before a planned shutdown)."""
        ready = []
        self._emit(self._urgent, ready, None)
        self._emit(self._routine, ready, None)
        return ready

    def set_clock(self, now_ms, unix_ms):
        """Tell the batcher that tick ``now_ms`` is ``unix_ms`` ms after the Unix epoch (from
        NTP or the cloud). Batches opened from now on carry Unix times."""
        if type(unix_ms) is not int or unix_ms < 0:
            raise LocalError("unix_ms is an int >= 0, got %r" % (unix_ms,))
        self._clock_tick = now_ms & MASK
        self._clock_unix = unix_ms

    def pending(self):
        """Entries waiting in open batches."""
        return self._urgent.waiting() + self._routine.waiting()

    def counters(self):
        """A new dict of the counters (see the module docstring)."""
        return dict(self._counts)

    # ---- inside ----------------------------------------------------------------------------

    def _pick_vitals(self, counters):
        out = {}
        for name in self._vitals_names:
            if name in counters:
                out[name] = counters[name]
        return out

    def _is_urgent(self, readings):
        urgent = self._urgent_metrics
        for reading in readings:
            if reading[2] == EVENT_UNIT or (reading[0] in urgent and reading[1]):
                return True
        return False

    def _tick(self, now_ms, ready):
        """Housekeeping at every call: the clock reference, batches now due. Returns the tick."""
        now = now_ms & MASK
        if self._clock_tick is not None:
            step = elapsed(now, self._clock_tick)
            if step >= _CLOCK_STEP_MS:
                self._clock_tick = now
                self._clock_unix += step
        self._emit(self._urgent, ready, now)  # left open only when taking a number failed
        lane = self._routine
        if lane.waiting() and elapsed(now, lane.opened) >= self.max_delay_ms:
            self._emit(lane, ready, now)
        return now

    def _finish(self, now, ready):
        """After an addition: urgent leaves now; routine if full by count or due."""
        self._emit(self._urgent, ready, now)
        lane = self._routine
        waiting = lane.waiting()
        if waiting and (
            waiting >= self.max_readings or elapsed(now, lane.opened) >= self.max_delay_ms
        ):
            self._emit(lane, ready, now)

    def _open(self, lane, now):
        if self._clock_tick is None:
            builder = BatchBuilder(CLOCK_TICKS, now)
            lane.offset = 0
        else:
            unix = self._clock_unix + elapsed(now, self._clock_tick)
            lane.offset = unix % 1000
            builder = BatchBuilder(CLOCK_UNIX_MS, unix - lane.offset)
        lane.builder = builder
        lane.opened = now
        lane.health = False
        return builder

    def _put(self, lane, address, now, pairs, n, ready):
        """Add one record (``pairs`` of ``n`` entries), split per entry if it cannot fit."""
        if self._fit(lane, address, now, pairs, n, ready):
            return
        if n > 1:
            for i in range(0, len(pairs), 2):
                if not self._fit(lane, address, now, pairs[i : i + 2], 1, ready):
                    self._counts["entries_too_large"] += 1
        else:
            self._counts["entries_too_large"] += 1

    def _fit(self, lane, address, now, pairs, n, ready):
        """Add the record to the lane's batch, closing a full one first; False if it cannot
        fit even an empty batch."""
        builder = lane.builder
        if builder is None or not builder.entries:
            builder = self._open(lane, now)
        limit = self.max_bytes - self._reserve  # the vitals' room stays free
        record = [elapsed(now, lane.opened) + lane.offset]
        record.extend(pairs)
        size = record_size(record)
        fits = builder.entries + n <= self.max_readings
        if fits and builder.size + builder.cost(address, size) <= limit:
            builder.add(address, record, size, n)
            lane.last = record[0]
            return True
        if not builder.entries:
            return False
        self._emit(lane, ready, now)
        builder = self._open(lane, now)
        record[0] = lane.offset
        size = record_size(record)
        if n <= self.max_readings and builder.size + builder.cost(address, size) <= limit:
            builder.add(address, record, size, n)
            lane.last = record[0]
            return True
        return False

    def _emit(self, lane, ready, now):
        """Close the lane's batch, if it has anything, and append it to ``ready``. ``now``
        is the tick it closes at (None: at its newest record), the vitals' time."""
        builder = lane.builder
        if builder is None or not builder.entries:
            return
        vitals = None
        source = self._vitals
        if source is not None and not lane.health:
            dt = lane.last if now is None else elapsed(now, lane.opened) + lane.offset
            if dt > MAX_DURATION_MS:  # not called for days: the newest record's time
                dt = lane.last
            vitals = counter_pairs(self._pick_vitals(source()), [dt])  # checked before a number
        seq = self._sequence.take()  # may raise: then the batch stays open
        if vitals is not None and len(vitals) > 1:
            builder.add(None, vitals, record_size(vitals), 0)
        payload = builder.payload()
        lane.builder = None
        self._counts[lane.counter] += 1
        ready.append(ReadyBatch(lane.name, seq, payload))
