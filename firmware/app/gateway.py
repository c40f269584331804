"""The gateway application: the core's engine wired to the radio, the flash and the uplinks.

As the Raspberry Pi gateway (``edge.runtime``) does on CPython, with the board's parts:

- the BLE IRQ fills the ring (``scanner``); ``drain`` hands each advertisement to
  ``engine.advertisement`` (decode, filter, batch, seal, queue) in task context;
- ``tick`` gives the engine the board's figures (``health``) and polls it whenever
  ``due_in`` says: presence timeouts, routine batches, health and running records; and
  it sets the scan window (``duty``: less listening while no paired device is heard, and
  outside the configured opening hours once the wall clock is set);
- the uplinks (``uplinks``, ``mqttlink``) send what ``next_to_send`` hands out; downlink
  messages go to ``engine.downlink`` (``on_downlink``): an acknowledgement empties the
  queue (one file per batch under ``/data/queue``, ``bankiot_core.queue_files``), a
  configuration is applied whole, a command becomes an action carried out here;
- the engine's ``state()`` is written (atomically) before any action runs and whenever the
  configuration changes, and read at start, so nothing runs twice across a power cut;
- a marker file exists exactly while accepted readings wait in RAM (``engine.pending``);
  found at start, it is reported as a lost open batch;
- sequence numbers are reserved ahead on flash (``FileCounterStore``, blocks of 64).

Actions: ``rescan`` restarts the scan, ``collect_diagnostics`` reports counters,
``reboot`` saves and resets the board, ``update`` goes to the ``updates.Updater`` (when the
board has one); the others are refused with a reason.

The wall clock (``wallclock``, when the board has ``ntptime``) is set by NTP once the
network is up and before the first TLS connection: ``network_turn`` holds back a TLS
uplink until then, and hands the Unix time to the engine once it is known.
"""

from app import health, store
from app.duty import DutyCycle
from app.mqttlink import up_topic
from app.version import SOFTWARE
from bankiot_core import cbor
from bankiot_core.batch import STATUS_DONE, STATUS_REFUSED
from bankiot_core.errors import CoreError
from bankiot_core.gateway import Gateway
from bankiot_core.gatewayconfig import is_open
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import Queue
from bankiot_core.queue_files import FileStorage
from bankiot_core.sequence import FileCounterStore, SequenceNumbers

DATA_DIR = "/data"
STATE_FILE = "/data/engine-state.cbor"
MARKER_FILE = "/data/open-batch"
SEQUENCE_FILE = "/data/sequence"
QUEUE_DIR = "/data/queue"
QUEUE_CAPACITY = 64 * 1024  # bytes of sealed batches kept on flash; the oldest go first
NTP_PATIENCE = 3  # failed NTP queries before a TLS uplink is tried without the clock


def load_state(path=STATE_FILE):
    """The engine state saved at ``path``, or None (first start, or unreadable)."""
    data = store.read(path)
    if data is None:
        return None
    try:
        state = cbor.loads(data)
    except CoreError:
        return None
    return state if isinstance(state, dict) else None


def open_engine(identity, capacity_bytes=QUEUE_CAPACITY, software=SOFTWARE, resend_ms=30000):
    """The engine over the board's flash: the queue, the sequence file, the saved state."""
    store.makedirs(DATA_DIR)
    queue = Queue(FileStorage(QUEUE_DIR), capacity_bytes, resend_ms=resend_ms, max_in_flight=4)
    sequence = SequenceNumbers(FileCounterStore(SEQUENCE_FILE), block=64)
    ring = KeyRing(identity.uid, identity.key_version, identity.secret)
    return Gateway(
        ring,
        sequence,
        queue,
        up_topic(identity.uid),
        software,
        settings=identity.settings or None,
        state=load_state(),
        health_in_every_batch=True,  # a board's vitals travel with every batch (issue 8)
    )


class GatewayApp:
    """One running board gateway (module docstring).

    ``engine``: the core ``Gateway``; ``ring``: the ``AdvRing`` the scanner fills;
    ``scanner``: the ``Scanner``; ``uplinks``: the ``Uplinks`` (or None, offline);
    ``wifi``: the ``WifiLink`` (or None: the network is always there, tests);
    ``clock``: ticks in ms (``time.ticks_ms``); ``reset_cause``: ``machine.reset_cause()``;
    ``updater``: the ``updates.Updater`` (or None); ``wall``: the ``wallclock.WallClock``
    (or None: no NTP, batches keep board time).
    """

    def __init__(
        self,
        engine,
        ring,
        scanner,
        clock,
        uplinks=None,
        wifi=None,
        reset_cause=0,
        updater=None,
        wall=None,
    ):
        self.engine = engine
        self.clock = clock
        self.ring = ring
        self.scanner = scanner
        self.uplinks = uplinks
        self.wifi = wifi
        self.reset_cause = reset_cause
        self.uptime = None
        self.refused_downlinks = 0
        self.duty = DutyCycle()
        self.reboot_requested = False
        self.updater = updater  # an updates.Updater, if the board can update
        self.wall = wall  # a wallclock.WallClock, if the board has ntptime
        self.needs_clock = False  # the preferred uplink is TLS: wait for the clock
        self._marked = store.exists(MARKER_FILE)

    # ---- start -------------------------------------------------------------------------

    def start(self, now_ms):
        """Count a batch lost by the last run, start scanning, announce what runs."""
        self.uptime = health.Uptime(now_ms)
        if self._marked:
            self.engine.lost(1)
            store.remove(MARKER_FILE)
            self._marked = False
        options = self.engine.options
        self.scanner.interval_ms = options["scan_interval_ms"]
        self.scanner.window_ms = options["scan_window_ms"]
        self.scanner.start(now_ms)
        if self.updater is not None:
            self.updater.start(self.engine, now_ms)  # counts a start on trial
        self.tick(now_ms)  # queues the running record, in a batch of its own
        if self.updater is not None:
            self.updater.attach(self.engine)

    # ---- radio in ----------------------------------------------------------------------

    def drain(self, now_ms, limit=32):
        """Hand up to ``limit`` advertisements from the ring to the engine; batches queued."""
        queued = 0
        engine = self.engine
        for _ in range(limit):
            item = self.ring.take()
            if item is None:
                break
            try:
                queued += engine.advertisement(item[0], item[2], item[3], now_ms)
            except CoreError:  # the engine counts what it refuses; the radio goes on
                continue
        self.track_open_batch()
        return queued

    # ---- what a power cut would lose ---------------------------------------------------

    def track_open_batch(self):
        """Keep the marker on flash exactly while readings wait in RAM."""
        pending = self.engine.pending() > 0
        if pending and not self._marked:
            store.write(MARKER_FILE, b"")
            self._marked = True
        elif not pending and self._marked:
            store.remove(MARKER_FILE)
            self._marked = False

    # ---- time --------------------------------------------------------------------------

    def tick(self, now_ms):
        """Board figures in, engine polled; returns ms until the next tick is due."""
        engine = self.engine
        uptime = self.uptime.tick(now_ms) if self.uptime is not None else 0
        rssi = self.wifi.rssi() if self.wifi is not None else None
        sets = [self.ring.counters(), {"scan_on_ms": self.scanner.radio_on_ms(now_ms)}]
        sets.append({"downlinks_dropped": self.refused_downlinks})
        if self.uplinks is not None:
            sets.append(self.uplinks.counters())
        if self.wall is not None:
            sets.append(self.wall.counters())
        health.refresh(engine, health.board_figures(uptime, self.reset_cause, rssi), *sets)
        engine.poll(now_ms)
        options = engine.options
        frames_in = engine.intake.counters().get("frames_in", 0)
        window = self.duty.window(now_ms, frames_in, options["scan_window_ms"], self.is_open())
        self.scanner.set_duty(options["scan_interval_ms"], window, now_ms)
        self.scanner.check(now_ms)
        updater = self.updater
        if updater is not None:
            updater.check_trial(engine, now_ms)
            if updater.reboot:
                self.reboot_requested = True
        self.track_open_batch()
        wait = engine.due_in(now_ms)
        return wait if wait < 1000 else 1000

    # ---- network ---------------------------------------------------------------------

    def network_turn(self, now_ms):
        """With the network up: the clock first (before TLS), the uplinks, a piece of an
        update under way. Returns ms until the next turn is useful."""
        wall = self.wall
        if wall is not None and not wall.set and wall.step(now_ms):
            self.engine.set_clock(now_ms, wall.unix_ms())
        wait = 100
        uplinks = self.uplinks
        if uplinks is not None:
            # TLS waits for the clock; after NTP_PATIENCE failed queries the uplinks go on
            # (TLS then fails on the certificate's dates, and the board falls back to CoAP).
            waiting = wall is not None and not wall.set and wall.failures < NTP_PATIENCE
            if not (waiting and self.needs_clock) or uplinks.choice != uplinks.prefer:
                wait = uplinks.step(now_ms)
        updater = self.updater
        if updater is not None and updater.step(self.engine, now_ms):
            wait = 10
        if updater is not None and updater.reboot:
            self.reboot_requested = True
        return wait

    # ---- downlink ----------------------------------------------------------------------

    def on_downlink(self, data, aad):
        """A downlink message arrived: the engine acts on it; actions are carried out."""
        now = self.now()
        engine = self.engine
        revision = engine.config_revision
        try:
            actions = engine.downlink(bytes(data), aad, now)
        except CoreError:
            self.refused_downlinks += 1
            return
        if actions or engine.config_revision != revision:
            store.write(STATE_FILE, cbor.dumps(engine.state(), True))  # before acting
        if engine.config_revision != revision:
            options = engine.options
            self.scanner.set_duty(options["scan_interval_ms"], options["scan_window_ms"], now)
            if self.uplinks is not None:
                self.uplinks.prefer = options["uplink"]
        for action in actions:
            self.carry_out(action, now)
        self.track_open_batch()

    def carry_out(self, action, now_ms):
        """Do what a command asks, and report it."""
        name = action.name
        engine = self.engine
        if name == "rescan":
            self.scanner.stop(now_ms)
            self.scanner.start(now_ms)
            engine.report(action.command_id, STATUS_DONE, "scan restarted", now_ms)
        elif name == "collect_diagnostics":
            c = engine.health_counters()
            text = "%s heard=%s in=%s depth=%s heap_free=%s" % (
                engine.software,
                c.get("scan_heard"),
                c.get("frames_in"),
                c.get("depth"),
                c.get("heap_free"),
            )
            engine.report(action.command_id, STATUS_DONE, text[:200], now_ms)
        elif name == "reboot":
            engine.report(action.command_id, STATUS_DONE, "rebooting", now_ms)
            self.reboot_requested = True
        elif name == "update" and self.updater is not None:
            self.updater.accept(engine, action, now_ms)
        else:
            engine.report(
                action.command_id,
                STATUS_REFUSED,
                "%s is not supported on this board yet" % name,
                now_ms,
            )

    def is_open(self):
        """True within the configured opening hours; also before the clock is set (the
        hours are local time: without a date, the board listens as if open)."""
        wall = self.wall
        if wall is None or not wall.set:
            return True
        return is_open(self.engine.options, wall.unix_ms() // 1000)

    def now(self):
        """The board's tick count (ms)."""
        return self.clock()

    def shutdown(self):
        """Before a reset: close open batches into the queue, save the state."""
        self.engine.flush()
        self.track_open_batch()
        store.write(STATE_FILE, cbor.dumps(self.engine.state(), True))
        if self.uplinks is not None:
            self.uplinks.close()
