"""The gateway engine: the whole of a gateway's logic, sans I/O, for every kind of gateway.

The ESP32 and Pico W firmware and the Raspberry Pi gateway wrap this same object; their
drivers do the I/O (radio, clock, flash or SQLite, MQTT or CoAP) and call it::

    radio  -> advertisement() / heard() / gatt()    decode, filter, batch, seal, queue
    clock  -> poll(now_ms), due_in(now_ms)           presence timeouts, routine batches, health
    uplink <- next_to_send(now_ms)                   a sealed batch to send (or resend)
    link   -> link_reset()                           a new connection: resend what is in flight
    down   -> downlink(data, aad, now_ms)            acks, CONFIG, COMMAND, KEYS (returns Actions),
                                                     OFFERS (handed to ``offers_sink``)
    shell  -> report(command_id, status, detail, now_ms)   what became of an Action
    flash  <- state()                                what to persist before acting
    vault  <- bindings_state()                       wearables' keys, for the shell to
                                                     store encrypted (never in state())

Every batch is sealed when it is made (``cose.seal_with``, the uplink AAD given at
construction) and queued (``queue.Queue``); only an end-to-end acknowledgement from the
cloud removes it (``downlink.apply_ack``).

Configuration (``downlink.Config``): the whole gateway configuration, checked with
``gatewayconfig``; applied only if the gateway accepts all of it and its revision is above
the one running. Applying it closes the open batches first (nothing is lost), then rebuilds
the filters (their state starts afresh: duplicate windows, presence) and the batcher with the
new limits, and reports what it runs (a ``running`` record). A configuration it refuses is
counted (``configs_refused``) and the old one stays; the cloud sees the revision reported
not move.

Commands (``downlink.Command``): each id runs at most once (``downlink.CommandLog``). A
known command becomes an ``Action`` for the shell to carry out and ``report``; the shell
must persist ``state()`` first (the replay window and the command log), so that after a
power cut neither runs twice. An unknown command is refused at once (a ``result`` record
with ``batch.STATUS_REFUSED``).

Wearable bindings (``downlink.Keys``, KEYS): the whole set of wearables bound to the
gateway's branch, each with its identity address, optional IRK and optional BTHome bind
key, applied once every page of a revision above the one running has arrived. They join the
configuration's own ``paired`` and ``irks`` (the configuration's entry wins for an address
in both) and the intake's bind keys (the binding's key wins over one given as ``keys``),
without a configuration change: the filters keep the state of devices still paired
(``FilterPipeline.reconfigure``) and forget a removed wearable at once, and the intake
stops decoding its frames at once. The revision running is the health counter
``keys_revision`` (None before any), and a health record leaves at once after a set is
applied, so the cloud learns it within seconds. ``state()`` never holds them: the shell
persists ``bindings_state()`` encrypted at rest (on the Raspberry Pi,
``edge.bindings_store``) whenever ``keys_revision`` changes, and gives it back as
``bindings`` at start.

Offers (``downlink.Offers``, OFFERS): what the cloud decided to offer a customer who just
checked in at this gateway's kiosk. The engine only opens them and hands each to
``offers_sink`` (a callable the kiosk's shell sets); the attributes ``offers_received`` and
``offers_ignored`` count them, the latter those that came with no sink set, such as on a
gateway without a screen (not health counters, which boards send in every batch). They are
personal data: the engine keeps nothing of them, and ``state()`` never holds them.

The running record (software version, configuration revision) leaves at once at start and
after a configuration is applied, with a health record at start: the cloud configures a
gateway, and a rollout judges an update, only once it has heard what the gateway runs.

Open batches: readings wait in RAM in the routine lane for up to ``batch_max_delay_ms``
before their batch is sealed and queued; a power cut loses them. The shell keeps a marker on
flash while ``pending()`` is not 0 (written when the first entry arrives, removed when the
batch is queued: two small writes per batch, not one per reading), and at start reports a
marker it finds with ``lost(1)``: such a loss is counted and reported, never silent.

Health: every ``health_interval_ms`` a health record with the counters of the intake, the
filters, the batcher, the queue (its loss counters included, which let the cloud carry its
acknowledgement over lost batches), this engine, and whatever the shell adds with
``set_health`` (CPU temperature, free heap, RSSI: whole numbers). With
``health_in_every_batch`` (``gatewayconfig``; when the configuration leaves it null, the
``health_in_every_batch`` given at construction: boards pass True) every batch also carries
the ``VITALS`` as they stand when it closes (``batcher``: the room is kept free), so the
cloud sees a gateway's state with each batch, not once a minute.
"""

import binascii
from collections import namedtuple

from bankiot_core import cose, downlink
from bankiot_core.address import mac_to_str
from bankiot_core.batch import STATUS_REFUSED
from bankiot_core.batcher import LANE_URGENT, Batcher
from bankiot_core.bthome import BindKey
from bankiot_core.errors import ConfigError, CoreError, DecodeError
from bankiot_core.filterconfig import defaults
from bankiot_core.gatewayconfig import load_gateway_config
from bankiot_core.intake import Intake
from bankiot_core.replay import ReplayWindow
from bankiot_core.ticks import elapsed

# Commands a gateway carries out (the cloud's catalogue, ``cloud.fleet.commands``).
COMMANDS = ("reboot", "rescan", "collect_diagnostics", "rotate_key", "factory_reset", "update")

# Issue 8's "health in every batch": free heap, uptime, reset cause, queue depth, WiFi RSSI
# (the shell gives those but ``depth`` with ``set_health``; a board's names, app.health);
# and what the cloud reads from every health record, which must not go missing from the
# newest one (cloud.ingest.store: losses, keys_revision) nor between two of them
# (cloud.fleet.alert_rules: counters that rise).
VITALS = (
    "heap_free",
    "uptime_s",
    "reset_cause",
    "depth",
    "wifi_rssi",
    "dropped_batches",
    "dropped_bytes",
    "lost_first",
    "lost_last",
    "keys_revision",
    "frames_unauthenticated",
    "frames_replayed",
    "frames_malformed",
    "open_batches_lost",
)

Action = namedtuple("Action", ("command_id", "name", "args"))
"""A command for the shell to carry out, then ``report``."""

_FILTER_SETTINGS = defaults()
_COUNTERS = (
    "downlinks_refused",
    "configs_applied",
    "configs_refused",
    "commands_refused",
    "open_batches_lost",
    "keys_applied",
    "keys_refused",
)


class Gateway:
    """One gateway's logic (module docstring).

    ``ring``: its ``keyring.KeyRing``; ``sequence``: its ``sequence.SequenceNumbers``;
    ``queue``: its ``queue.Queue``; ``uplink_aad``: what batches are bound to (the MQTT
    topic ``devices/<id>/up`` or the CoAP resource ``batches``); ``software``: its version
    (1 to 32 bytes); ``settings``: the configuration to start with (``gatewayconfig``) and
    ``config_revision`` its revision (None: none from the cloud yet); ``keys``: bind keys of
    encrypted devices for the intake; ``state``: what ``state()`` returned before a reboot
    (its configuration, the last the cloud sent, wins over ``settings``); ``bindings``:
    what ``bindings_state()`` returned before it (the wearables, kept encrypted by the
    shell); ``health_in_every_batch``: whether batches carry the ``VITALS`` when the
    configuration does not say. Raises ConfigError for settings or state that do not fit.
    """

    def __init__(
        self,
        ring,
        sequence,
        queue,
        uplink_aad,
        software,
        settings=None,
        config_revision=None,
        keys=None,
        block_cipher=None,
        state=None,
        repeat_cache=0,
        bindings=None,
        health_in_every_batch=False,
    ):
        self.ring = ring
        self.vitals_default = health_in_every_batch
        self.queue = queue
        self.uplink_aad = uplink_aad
        self.software = software
        self.keys = keys if keys is not None else {}
        self._sequence = sequence
        self._block_cipher = block_cipher
        self._repeat_cache = repeat_cache
        self._counts = {}
        for name in _COUNTERS:
            self._counts[name] = 0
        self._extra = {}
        self.window = ReplayWindow()
        self.commands = downlink.CommandLog()
        self.settings = dict(settings or {})
        self.config_revision = config_revision
        if state is not None:  # what the cloud configured last wins over what was provisioned
            self._restore(state)
        self.keys_revision = None  # the wearable bindings' revision running (KEYS)
        self.bindings = ()  # and the bindings: a tuple of downlink.Binding
        self._keys_pages = downlink.KeysPages()
        if bindings is not None:
            self._restore_bindings(bindings)
        self._bound = {}  # the intake's bind keys (BindKey objects keep replay state)
        self._build(self.settings)
        self._health_at = None  # tick of the last health record; None: one is due now
        self._running_due = True
        self._flush_due = False  # a health record must leave at once (after KEYS)
        # Called as observer(address, readings, events) with what the filters let through:
        # a kiosk screen follows presence and button presses this way (None: nobody).
        self.observer = None
        # Called as offers_sink(offers) with each OFFERS message (``downlink.Offers``):
        # the kiosk's shell keeps them in memory (module docstring).
        self.offers_sink = None
        self.offers_received = 0
        self.offers_ignored = 0

    # ---- set-up ------------------------------------------------------------------------

    def _build(self, settings):
        gateway, _ = load_gateway_config(settings)  # checks all of it before anything changes
        self.options = gateway
        self.intake = Intake(
            self._filters(settings), self._bind_keys(), self._block_cipher, self._repeat_cache
        )
        vitals = gateway["health_in_every_batch"]
        if vitals is None:
            vitals = self.vitals_default
        self.batcher = Batcher(
            self._sequence,
            max_readings=gateway["batch_max_readings"],
            max_bytes=gateway["batch_max_bytes"],
            max_delay_ms=gateway["batch_max_delay_ms"],
            vitals=self._vitals if vitals else None,
            vitals_names=VITALS,
        )

    def _filters(self, settings):
        """The filter settings of ``settings`` with the bound wearables joined in."""
        filters = {}
        for name in settings:
            if name in _FILTER_SETTINGS:
                filters[name] = settings[name]
        if not self.bindings:
            return filters
        paired = list(filters.get("paired", ()))
        irks = dict(filters.get("irks", {}))
        for binding in self.bindings:
            text = mac_to_str(binding.address)
            if binding.irk is None:
                paired.append(text)  # a repeat of a configured address is harmless
            elif text not in irks:  # the configuration's own entry wins
                irks[text] = binascii.hexlify(binding.irk).decode()
        filters["paired"] = paired
        filters["irks"] = irks
        return filters

    def _bind_keys(self):
        """The intake's bind keys: those given as ``keys``, and the wearables'. A key that
        did not change keeps its object, and with it its replay state."""
        current = self._bound
        keys = dict(self.keys)
        for binding in self.bindings:
            if binding.key is None:
                continue
            old = current.get(binding.address)
            if old is not None and old.key == binding.key:
                keys[binding.address] = old
            else:
                keys[binding.address] = BindKey(binding.key)
        self._bound = keys
        return keys

    def _restore_bindings(self, saved):
        if (type(saved) is not list and type(saved) is not tuple) or len(saved) != 2:
            raise ConfigError("saved wearable bindings must be [revision, bindings]")
        revision = saved[0]
        if type(revision) is not int or not 0 <= revision <= downlink.MAX_SEQ:
            raise ConfigError("saved wearable bindings: revision %r is out of range" % (revision,))
        self.bindings = downlink.check_bindings(saved[1], ConfigError)
        self.keys_revision = revision

    def bindings_state(self):
        """The wearable bindings running, ``[revision, [[address, irk, key], ...]]``, or None
        before any: secrets, for the shell to persist encrypted (never in plaintext) whenever
        ``keys_revision`` changes and give back as ``bindings`` after a reboot."""
        if self.keys_revision is None:
            return None
        return [self.keys_revision, [[b.address, b.irk, b.key] for b in self.bindings]]

    def _restore(self, state):
        if not isinstance(state, dict):
            raise ConfigError("gateway state must be a map, as state() made it")
        try:
            self.window = ReplayWindow.from_state(state["window"])
            self.commands = downlink.CommandLog(state=state["commands"])
            self.config_revision = state["config_revision"]
            self.settings = dict(state["settings"])
        except (KeyError, TypeError, DecodeError):
            raise ConfigError("gateway state does not fit: window, commands, config") from None

    def state(self):
        """What to persist (a map of plain values and bytes: CBOR holds it) and give back as
        ``state`` after a reboot: the downlink replay window, the commands run, and the
        configuration running. Persist it before carrying out an ``Action``. It holds no
        wearable binding (``bindings_state``)."""
        return {
            "window": self.window.state(),
            "commands": self.commands.state(),
            "config_revision": self.config_revision,
            "settings": dict(self.settings),
        }

    def set_clock(self, now_ms, unix_ms):
        """The wall-clock time is known: batches carry Unix times from now on."""
        self.batcher.set_clock(now_ms, unix_ms)

    def set_health(self, name, value):
        """A value the shell measures for health records (a whole number, or None)."""
        self._extra[name] = value

    # ---- radio in ------------------------------------------------------------------------

    def _queue(self, ready):
        for batch in ready:
            envelope = cose.seal_with(self.ring, batch.seq, batch.payload, self.uplink_aad)
            self.queue.enqueue(batch.seq, envelope, batch.lane == LANE_URGENT)
        return len(ready)

    def _take(self, output, now_ms):
        if output is None:
            return 0
        if self.observer is not None:
            self.observer(output[0], output[1], output[2])
        return self._queue(self.batcher.add(output, now_ms))

    def advertisement(self, address, rssi, payload, now_ms):
        """Raw advertising data heard from ``address``; returns batches queued."""
        return self._take(self.intake.advertisement(address, rssi, payload, now_ms), now_ms)

    def heard(self, address, rssi, adv, now_ms):
        """An ``advdata.Advertisement`` (from bleak) heard; returns batches queued."""
        return self._take(self.intake.heard(address, rssi, adv, now_ms), now_ms)

    def gatt(self, address, uuid, value, now_ms):
        """A GATT notification from a connected wearable; returns batches queued."""
        return self._take(self.intake.gatt(address, uuid, value, now_ms), now_ms)

    # ---- time ------------------------------------------------------------------------------

    def poll(self, now_ms):
        """Presence timeouts, due routine batches, health and running records; returns
        batches queued. Call it at least every ``due_in(now_ms)`` ms."""
        queued = 0
        events = self.intake.tick(now_ms)
        if events:
            if self.observer is not None:
                for event in events:
                    self.observer(event[1], (), (event,))
            queued += self._queue(self.batcher.add_events(events, now_ms))
        announce = self._running_due or self._flush_due
        self._flush_due = False
        if self._running_due:
            self._running_due = False
            queued += self._queue(
                self.batcher.add_running(self.software, self.config_revision, now_ms)
            )
        interval = self.options["health_interval_ms"]
        if self._health_at is None or elapsed(now_ms, self._health_at) >= interval:
            self._health_at = now_ms
            queued += self._queue(self.batcher.add_health(self.health_counters(), now_ms))
        if announce:
            # What the gateway runs goes at once (at start, after a configuration): the cloud
            # configures a gateway, and a rollout judges an update, only once it has heard it.
            queued += self._queue(self.batcher.flush())
        queued += self._queue(self.batcher.poll(now_ms))
        return queued

    def due_in(self, now_ms):
        """Milliseconds until ``poll`` has something to do (0: now)."""
        if self._running_due or self._health_at is None:
            return 0
        wait = self.options["health_interval_ms"] - elapsed(now_ms, self._health_at)
        batch = self.batcher.due_in(now_ms)
        if batch is not None and batch < wait:
            wait = batch
        return wait if wait > 0 else 0

    def flush(self):
        """Close the open batches now (before a reboot); returns batches queued."""
        return self._queue(self.batcher.flush())

    def pending(self):
        """Entries accepted and still in an open batch: in RAM only, not yet sealed and
        queued. The shell keeps a marker on flash while this is not 0 (see ``lost``)."""
        return self.batcher.pending()

    def lost(self, batches):
        """At start: the shell found its marker, so the last run ended (power cut, crash)
        with ``batches`` open batches whose readings never reached the queue. Counted in
        ``open_batches_lost``, reported in health: loss is never silent."""
        self._counts["open_batches_lost"] += batches

    def _vitals(self):
        """The counters a batch's vitals come from (the batcher picks ``VITALS``)."""
        out = self.queue.counters()
        intake = self.intake.counters()
        for name in ("frames_unauthenticated", "frames_replayed", "frames_malformed"):
            out[name] = intake.get(name)
        out["open_batches_lost"] = self._counts["open_batches_lost"]
        out["keys_revision"] = self.keys_revision
        out.update(self._extra)
        return out

    def health_counters(self):
        """Every counter a health record carries (name -> whole number or None)."""
        out = self.intake.counters()
        out.update(self.batcher.counters())
        out.update(self.queue.counters())
        out.update(self._counts)
        out["keys_revision"] = self.keys_revision
        out.update(self._extra)
        return out

    # ---- uplink --------------------------------------------------------------------------

    def next_to_send(self, now_ms):
        """``(seq, envelope)`` to send now, or None (see ``queue.Queue.next_to_send``)."""
        return self.queue.next_to_send(now_ms)

    def link_reset(self):
        """The uplink connection was lost and made again: resend what was in flight."""
        self.queue.link_reset()

    # ---- downlink ------------------------------------------------------------------------

    def downlink(self, data, aad, now_ms):
        """Open and act on one downlink message that arrived on ``aad`` (the topic, or the
        resource the request went to). Returns the ``Action``s for the shell (a list, maybe
        empty); persist ``state()`` before carrying them out. Raises the core's
        DecodeError, AuthenticationError or ReplayError for a message it refuses (counted
        in ``downlinks_refused``): forged, replayed, malformed."""
        try:
            opened = downlink.open_downlink(data, self.ring, self.window, aad)
        except CoreError:
            self._counts["downlinks_refused"] += 1
            raise
        message = opened.message
        if opened.kind == downlink.KIND_ACK:
            downlink.apply_ack(self.queue, message)
            return []
        if opened.kind == downlink.KIND_CONFIG:
            self._apply_config(message, now_ms)
            return []
        if opened.kind == downlink.KIND_KEYS:
            self._keys(message, now_ms)
            return []
        if opened.kind == downlink.KIND_OFFERS:
            if self.offers_sink is None:
                self.offers_ignored += 1
            else:
                self.offers_received += 1
                self.offers_sink(message)
            return []
        return self._command(message, now_ms)

    def _keys(self, page, now_ms):
        if self.keys_revision is not None and page.revision <= self.keys_revision:
            return  # already running it or a newer set: idempotent
        try:
            bindings = self._keys_pages.add(page)
        except DecodeError:
            self._counts["keys_refused"] += 1
            return
        if bindings is None:
            return  # more pages of this revision to come
        self.bindings = bindings
        self.keys_revision = page.revision
        intake = self.intake
        intake.set_keys(self._bind_keys())
        events = intake.filters.reconfigure(self._filters(self.settings), now_ms)
        if events:
            if self.observer is not None:
                for event in events:
                    self.observer(event[1], (), (event,))
            self._queue(self.batcher.add_events(events, now_ms))
        self._counts["keys_applied"] += 1
        self._health_at = None  # the cloud learns the revision running at once
        self._flush_due = True
        self.poll(now_ms)

    def _apply_config(self, config, now_ms):
        if self.config_revision is not None and config.revision <= self.config_revision:
            return  # already running it or a newer one: idempotent
        try:
            load_gateway_config(config.settings)
        except ConfigError:
            self._counts["configs_refused"] += 1
            return
        self.flush()
        self.settings = dict(config.settings)
        self.config_revision = config.revision
        self._build(self.settings)
        self._counts["configs_applied"] += 1
        self._running_due = True
        self.poll(now_ms)

    def _command(self, command, now_ms):
        if self.commands.seen(command.id):
            return []
        self.commands.record(command.id)
        if command.name not in COMMANDS:
            self._counts["commands_refused"] += 1
            self.report(command.id, STATUS_REFUSED, "unknown command %s" % command.name, now_ms)
            return []
        return [Action(command.id, command.name, command.args)]

    def kiosk(self, kind, event_id, wearable, detail, now_ms):
        """A customer's action at the kiosk (``batch.KioskEvent``'s fields), queued at once
        (urgent). LocalError for values the wire cannot carry, before anything changes."""
        return self._queue(self.batcher.add_kiosk(kind, event_id, wearable, detail, now_ms))

    def report(self, command_id, status, detail, now_ms):
        """What became of an ``Action`` (``batch.STATUS_*``), queued at once (urgent)."""
        return self._queue(self.batcher.add_result(command_id, status, detail, now_ms))
