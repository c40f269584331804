"""The durable store-and-forward queue: sealed batches wait here until the cloud has them.

Sans-I/O like the rest of the core: ``Queue`` decides what to keep, what to send, what to
resend and what to drop; a storage back end (below) keeps the bytes. Time comes in as
``now_ms``; the queue never reads a clock.

The promise, and how the queue keeps it:

- A batch enters with ``enqueue(seq, envelope)`` once it is sealed. When ``enqueue`` returns,
  the storage holds it durably (the back end's job), and it survives a crash or power cut.
- A batch leaves only on the cloud's end-to-end acknowledgement: ``ack(seq)`` for one batch
  (a CoAP response, an MQTT ack record naming one batch), ``ack_through(seq)`` for every batch
  up to and including ``seq`` (cumulative). Acks are idempotent: a repeated, stale or unknown
  ack changes nothing and is only counted (``acks_stale``). A broker's PUBACK is not an ack.
- ``next_to_send(now_ms)`` hands out what to transmit: at most ``max_in_flight`` batches are
  out at once; one not acknowledged within ``resend_ms`` goes again (``resent``). After a
  reconnect, ``link_reset()`` makes everything unacknowledged eligible at once. After a crash
  nothing about sending is remembered: every batch still stored is sent again, and the
  cloud, which commits idempotently on (gateway, sequence), keeps one copy.
- Bounded by bytes (``capacity_bytes``, the sum of the envelopes' lengths): to make room the
  oldest batches go first, and the loss is counted (``dropped_batches``, ``dropped_bytes``)
  with the range of sequence numbers it touched (``lost_first`` .. ``lost_last``). These
  counters live in the storage's meta record, so they survive crashes and never reset: they
  are totals since the storage was created, like SNMP counters, and the gateway puts them
  into every health record (``counters()``). The cloud sees the count change and knows
  that the lost batches are among the sequence numbers in ``lost_first .. lost_last`` it
  never received, and that none of those will come any more: drops always take the oldest
  batches, so nothing at or below ``lost_last`` is still queued. (Not every number missing
  there was a batch: the sealer skips numbers it reserved and never used. The count says
  how many were lost.)

Order: sequence numbers must ascend (the sealer never repeats one), so queue order is age.
Urgent batches (``enqueue(..., urgent=True)``: presence, button presses, alarms) are sent
before older routine ones, once; urgency is not stored and is forgotten on a crash.
Resends of overdue batches come next, then the oldest batch not yet out.

The storage interface (``MemoryStorage`` is the reference; ``queue_files.FileStorage`` keeps
one file per batch on littlefs, ``edge.queue_sqlite.SqliteStorage`` a SQLite database):

- ``entries()``: every stored batch as a list of ``(seq, nbytes)`` in ascending ``seq``;
- ``put(seq, data)``: store a new batch; atomic (after a crash it is there whole or not at
  all) and durable when it returns;
- ``get(seq)``: the stored bytes, or None;
- ``delete(seqs, meta=None)``: remove the batches ``seqs`` (a list, ascending) and, if
  ``meta`` is not None, replace the meta record with it. Atomic as a whole, or at least
  ordered: ``meta`` is durable before any batch is removed, so a crash part-way leaves a
  meta record from which the queue finishes the job on open (see "floor" below);
- ``load_meta()``: the meta record (bytes) or None when there is none yet;
- ``close()``.

Errors from the storage (``OSError``, ``sqlite3.Error``) pass through; the queue then re-reads
the storage so that what it remembers matches what is stored.

The meta record is a line of text: ``q1 floor dropped_batches dropped_bytes lost_first
lost_last`` (-1 for "none"). ``floor`` is the highest sequence number removed by a prefix
removal (a cumulative ack of several batches, or a drop). Such removals store the meta first;
on open, every batch at or below the floor is removed, so an interrupted removal completes
and acknowledged or counted-as-lost batches never come back. Removing a single batch is atomic
by itself and writes no meta record (one flash write fewer per acknowledged batch).
"""

from bankiot_core.errors import ConfigError, LocalError
from bankiot_core.ticks import MAX_DURATION_MS, elapsed, wrap

COUNTERS = (
    "depth",
    "bytes",
    "in_flight",
    "sent",
    "resent",
    "acked",
    "acks_stale",
    "dropped_batches",
    "dropped_bytes",
    "lost_first",
    "lost_last",
)
"""Keys of ``Queue.counters()``. ``depth``, ``bytes``, ``in_flight``: now. ``sent`` (first
transmissions), ``resent``, ``acked`` (batches removed by acks) and ``acks_stale`` (acks
that removed nothing): since this boot. ``dropped_*`` and ``lost_*``: totals kept in storage
(``lost_*`` None while nothing was lost)."""

_META_TAG = "q1"


def _find(seqs, seq):
    """Index of the first element of the ascending list ``seqs`` that is >= ``seq``."""
    lo = 0
    hi = len(seqs)
    while lo < hi:
        mid = (lo + hi) // 2
        if seqs[mid] < seq:
            lo = mid + 1
        else:
            hi = mid
    return lo


def encode_meta(floor, dropped_batches, dropped_bytes, lost_first, lost_last):
    """The meta record's bytes (see the module docstring); None is stored as -1."""
    if lost_first is None:
        lost_first = lost_last = -1
    return (
        "%s %d %d %d %d %d"
        % (_META_TAG, floor, dropped_batches, dropped_bytes, lost_first, lost_last)
    ).encode()


def decode_meta(data):
    """``(floor, dropped_batches, dropped_bytes, lost_first, lost_last)`` from a meta record.

    None gives the record of a new storage. Raises LocalError for a record that is not one
    (the storage is not a queue's, or is damaged: the loss counters cannot be trusted).
    """
    if data is None:
        return (-1, 0, 0, None, None)
    try:
        fields = bytes(data).decode().split()
        if len(fields) != 6 or fields[0] != _META_TAG:
            raise ValueError("layout")
        floor, batches, nbytes, first, last = [int(f) for f in fields[1:]]
    except (ValueError, UnicodeError):
        raise LocalError("the queue's meta record is damaged: %r" % bytes(data)[:40]) from None
    if first < 0:
        first = last = None
    return (floor, batches, nbytes, first, last)


class MemoryStorage:
    """Storage in RAM: the reference for the interface, for tests and for a board without a
    filesystem. It survives a new ``Queue`` (what a test calls a crash) but not a reboot."""

    def __init__(self):
        self._data = {}
        self._meta = None

    def entries(self):
        """Every stored batch, ``(seq, nbytes)`` in ascending ``seq``."""
        return sorted([(seq, len(data)) for seq, data in self._data.items()])

    def put(self, seq, data):
        """Store batch ``seq``."""
        self._data[seq] = bytes(data)

    def get(self, seq):
        """Batch ``seq``'s bytes, or None."""
        return self._data.get(seq)

    def delete(self, seqs, meta=None):
        """Store ``meta`` (if given), then remove ``seqs``."""
        if meta is not None:
            self._meta = bytes(meta)
        for seq in seqs:
            self._data.pop(seq, None)

    def load_meta(self):
        """The meta record, or None."""
        return self._meta

    def close(self):
        """Nothing to release."""


class Queue:
    """Store-and-forward of sealed batches over a storage back end (module docstring).

    ``capacity_bytes``: the most envelope bytes kept (choose it below the free space of the
    storage, with room for the file system's own overhead). ``resend_ms``: how long to wait
    for the end-to-end ack before sending a batch again. ``max_in_flight``: batches out at
    once without an ack (1 sends strictly one at a time).

    Opening recovers from an interrupted removal, and drops (counted) the oldest batches if
    the storage holds more than ``capacity_bytes`` (after the capacity was lowered).
    """

    def __init__(self, storage, capacity_bytes, resend_ms=30000, max_in_flight=4):
        if not isinstance(capacity_bytes, int) or capacity_bytes < 1:
            raise ConfigError("capacity_bytes must be a positive int, not %r" % (capacity_bytes,))
        if not isinstance(resend_ms, int) or not 0 < resend_ms <= MAX_DURATION_MS:
            raise ConfigError(
                "resend_ms must be an int in 1..%d, not %r" % (MAX_DURATION_MS, resend_ms)
            )
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ConfigError("max_in_flight must be a positive int, not %r" % (max_in_flight,))
        self._storage = storage
        self.capacity_bytes = capacity_bytes
        self.resend_ms = resend_ms
        self.max_in_flight = max_in_flight
        self._sent = 0
        self._resent = 0
        self._acked = 0
        self._stale = 0
        self._flight = {}  # seq -> tick of the last transmission
        self._urgent = []  # urgent seqs not yet sent, ascending
        self._top = -1  # highest seq enqueued since this Queue was made
        self._load()
        if self._bytes > capacity_bytes:
            self._make_room(0)

    # -- state -------------------------------------------------------------------------

    def _load(self):
        """Read the storage into memory, finishing an interrupted removal."""
        meta = self._storage.load_meta()
        floor, batches, nbytes, first, last = decode_meta(meta)
        seqs = []
        sizes = []
        for seq, size in self._storage.entries():
            seqs.append(seq)
            sizes.append(size)
        stale = _find(seqs, floor + 1)
        if stale:
            # A prefix removal was cut short: its meta record is stored, some batches are not
            # yet gone. They were acknowledged or counted as lost: remove them now.
            self._storage.delete(seqs[:stale])
            seqs = seqs[stale:]
            sizes = sizes[stale:]
        self._seqs = seqs
        self._sizes = sizes
        self._bytes = sum(sizes)
        self._floor = floor
        self._dropped_batches = batches
        self._dropped_bytes = nbytes
        self._lost_first = first
        self._lost_last = last
        if self._flight or self._urgent:  # a resync: keep what is still stored
            present = set(seqs)
            for seq in list(self._flight):
                if seq not in present:
                    del self._flight[seq]
            self._urgent = [seq for seq in self._urgent if seq in present]

    def _resync(self):
        """After a storage error: believe the storage again (best effort)."""
        try:  # noqa: SIM105 - no contextlib on MicroPython
            self._load()
        except Exception:  # the caller re-raises the first error
            pass

    def _meta(self):
        return encode_meta(
            self._floor,
            self._dropped_batches,
            self._dropped_bytes,
            self._lost_first,
            self._lost_last,
        )

    def _forget(self, count):
        """Drop the first ``count`` entries from memory (already removed from storage)."""
        for seq in self._seqs[:count]:
            self._flight.pop(seq, None)
        if self._urgent:
            cut = self._seqs[count - 1]
            self._urgent = [seq for seq in self._urgent if seq > cut]
        self._bytes -= sum(self._sizes[:count])
        del self._seqs[:count]
        del self._sizes[:count]

    def _remove_prefix(self, count, dropped):
        """Remove the ``count`` oldest batches, as acknowledged or (``dropped``) as lost."""
        gone = self._seqs[:count]
        old = (
            self._floor,
            self._dropped_batches,
            self._dropped_bytes,
            self._lost_first,
            self._lost_last,
        )
        if dropped:
            self._dropped_batches += count
            self._dropped_bytes += sum(self._sizes[:count])
            if self._lost_first is None:
                self._lost_first = gone[0]
            self._lost_last = gone[-1]
        # The floor moves in memory always; it is stored when several batches go at once
        # (so that a cut-off removal can be finished) or with new loss counters.
        self._floor = max(self._floor, gone[-1])
        meta = None
        if dropped or count > 1:
            meta = self._meta()
        try:
            self._storage.delete(gone, meta)
        except Exception:
            (
                self._floor,
                self._dropped_batches,
                self._dropped_bytes,
                self._lost_first,
                self._lost_last,
            ) = old
            self._resync()
            raise
        self._forget(count)

    def _make_room(self, need):
        """Drop the oldest batches until ``need`` more bytes fit; return how many went."""
        room = self.capacity_bytes - need
        count = 0
        total = self._bytes
        while total > room:
            total -= self._sizes[count]
            count += 1
        if count:
            self._remove_prefix(count, True)
        return count

    # -- in ----------------------------------------------------------------------------

    @property
    def last_seq(self):
        """The highest sequence number the queue knows of, or -1: the last one stored or
        enqueued since open, or the stored floor. (After a reboot with an empty queue it may
        be lower than the last one ever used: keeping sequence numbers unique is the sealer's
        job; this is only a guard.)"""
        top = max(self._top, self._floor)
        if self._seqs:
            return max(self._seqs[-1], top)
        return top

    def enqueue(self, seq, data, urgent=False):
        """Store sealed batch ``seq`` (bytes); return how many old batches were dropped
        (counted as lost) to make room.

        Raises LocalError if ``seq`` is not above every sequence number the queue knows of
        or if ``data`` alone is larger than the capacity; nothing changes then.
        """
        if not isinstance(seq, int) or seq < 0:
            raise LocalError("a sequence number is an int >= 0, not %r" % (seq,))
        size = len(data)
        if size > self.capacity_bytes:
            raise LocalError(
                "batch %d is %d bytes, more than the queue's capacity of %d"
                % (seq, size, self.capacity_bytes)
            )
        top = self.last_seq
        if seq <= top:
            raise LocalError(
                "batch %d is not above %d, the last sequence number queued" % (seq, top)
            )
        dropped = self._make_room(size)
        try:
            self._storage.put(seq, data)
        except Exception:
            self._resync()  # a put that failed late (syncing) may have stored the batch
            raise
        self._top = seq
        self._seqs.append(seq)
        self._sizes.append(size)
        self._bytes += size
        if urgent:
            self._urgent.append(seq)
        return dropped

    # -- out ---------------------------------------------------------------------------

    def next_to_send(self, now_ms):
        """``(seq, envelope)`` to transmit now, or None (nothing, or the window is full).

        The batch counts as in flight from ``now_ms``; call again until None.
        """
        now = wrap(now_ms)
        flight = self._flight
        seq = None
        if self._urgent and len(flight) < self.max_in_flight:
            seq = self._urgent.pop(0)
            self._sent += 1
        if seq is None:
            for s in flight:
                if elapsed(now, flight[s]) >= self.resend_ms and (seq is None or s < seq):
                    seq = s
            if seq is not None:
                self._resent += 1
        if seq is None and len(flight) < self.max_in_flight:
            for s in self._seqs:
                if s not in flight:
                    seq = s
                    self._sent += 1
                    break
        if seq is None:
            return None
        data = self._storage.get(seq)
        if data is None:
            self._resync()
            raise LocalError("batch %d vanished from the queue's storage" % seq)
        flight[seq] = now
        return (seq, data)

    def wait_ms(self, now_ms):
        """Milliseconds until ``next_to_send`` has something (0: now), or None if the queue
        is empty: how long a driver may sleep when no ack or new batch wakes it first."""
        if not self._seqs:
            return None
        flight = self._flight
        if len(flight) < self.max_in_flight and len(flight) < len(self._seqs):
            return 0
        now = wrap(now_ms)
        wait = self.resend_ms
        for s in flight:
            wait = min(wait, max(0, self.resend_ms - elapsed(now, flight[s])))
        return wait

    def link_reset(self):
        """The link went down and came back: every unacknowledged batch may go at once."""
        self._flight = {}

    def in_flight(self):
        """Sequence numbers sent and not yet acknowledged, ascending."""
        return sorted(self._flight)

    # -- acknowledgements --------------------------------------------------------------

    def ack(self, seq):
        """The cloud has batch ``seq``: remove it. True if it was queued, else False
        (a duplicate or stale ack, counted in ``acks_stale``)."""
        seqs = self._seqs
        i = _find(seqs, seq)
        if i == len(seqs) or seqs[i] != seq:
            self._stale += 1
            return False
        if i == 0:
            self._remove_prefix(1, False)
        else:
            try:
                self._storage.delete([seq])
            except Exception:
                self._resync()
                raise
            self._flight.pop(seq, None)
            if seq in self._urgent:
                self._urgent.remove(seq)
            self._bytes -= self._sizes[i]
            del seqs[i]
            del self._sizes[i]
        self._acked += 1
        return True

    def ack_through(self, seq):
        """The cloud has every batch up to and including ``seq``: remove them. Returns how
        many were removed (0 for a repeated or stale ack, counted in ``acks_stale``)."""
        count = _find(self._seqs, seq + 1)
        if count == 0:
            self._stale += 1
            return 0
        self._remove_prefix(count, False)
        self._acked += count
        return count

    # -- reporting ---------------------------------------------------------------------

    def __len__(self):
        return len(self._seqs)

    @property
    def bytes_used(self):
        """Envelope bytes queued."""
        return self._bytes

    def seqs(self):
        """Sequence numbers queued, ascending (a copy)."""
        return list(self._seqs)

    def loss(self):
        """``(dropped_batches, dropped_bytes, lost_first, lost_last)``: totals since the
        storage was created (``lost_*`` None while nothing was lost)."""
        return (self._dropped_batches, self._dropped_bytes, self._lost_first, self._lost_last)

    def counters(self):
        """The figures for a health record (keys: ``COUNTERS``)."""
        return {
            "depth": len(self._seqs),
            "bytes": self._bytes,
            "in_flight": len(self._flight),
            "sent": self._sent,
            "resent": self._resent,
            "acked": self._acked,
            "acks_stale": self._stale,
            "dropped_batches": self._dropped_batches,
            "dropped_bytes": self._dropped_bytes,
            "lost_first": self._lost_first,
            "lost_last": self._lost_last,
        }

    def close(self):
        """Close the storage."""
        self._storage.close()
