"""``bankiot gateway run``: the Raspberry Pi gateway, wired.

The logic is the core's engine (``bankiot_core.gateway.Gateway``); this module only connects
it to the machine, on one asyncio loop:

- the radio sources (``edge.ble_source``, ``edge.serial_source``) hand each ``Heard`` to
  the engine (``heard`` or ``advertisement``); a batch queued wakes the uplinks;
- a ticker calls ``engine.poll`` whenever ``due_in`` says (presence timeouts, routine
  batches, health records carrying the sources' and uplinks' counters, each adapter's
  smoothed RSSI, uptime and the CPU temperature);
- the uplinks (``edge.uplink``) send what the engine hands out and bring back the
  downlink, which goes to ``engine.downlink``; an acknowledgement empties the queue (in the
  SQLite file, ``edge.queue_sqlite``), a configuration is applied by the engine, and a
  command becomes an action carried out here, then reported;
- while accepted readings wait in RAM for their batch to close (``engine.pending``), a
  marker file exists; a run that ends without closing them (power cut, SIGKILL) leaves it,
  and the next start counts the lost batch (``open_batches_lost`` in health);
- the engine's ``state()`` (downlink replay window, commands run, configuration) is written
  (atomically, 0600) before any action runs and whenever the configuration changes, and
  read back at start, so that nothing runs twice across a power cut;
- the wearables bound to the gateway (KEYS: addresses, IRKs, bind keys) are never in that
  state: they are stored encrypted (``edge.bindings_store``) whenever their revision
  changes, and read back at start;
- with a ``[kiosk]`` table, the branch kiosk's page is served (``edge.kiosk``): it follows
  what the filters let through (``engine.observer``) and queues its events with
  ``engine.kiosk``, like readings.

Actions: ``rescan`` restarts the BLE scans; ``collect_diagnostics`` reports the gateway's
counters in brief; ``reboot`` restarts the gateway process (systemd's ``Restart=always``
brings it back; the machine is not rebooted: the service has no such right); ``update``
installs a signed release and restarts into it on trial (``edge.updates``, which also keeps
the trial at start and rolls back a version that does not report healthy).
``rotate_key`` renews the certificate with a new key at once (``edge.renewal``, which also
renews the certificate when it is due, checking hourly); ``factory_reset`` reports done,
waits (bounded) for the cloud to acknowledge that, stops, wipes the identity and data and
exits with ``edge.factory_reset.UNPROVISIONED``, which systemd does not restart
(``edge.factory_reset``).

Sequence numbers are reserved ahead in a file (``bankiot_core.sequence.FileCounterStore``),
so a gateway that dies never reuses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bankiot_core import cbor
from bankiot_core.batch import STATUS_DONE, STATUS_REFUSED
from bankiot_core.errors import CoreError
from bankiot_core.gateway import Action, Gateway
from bankiot_core.queue import Queue
from bankiot_core.sequence import FileCounterStore, SequenceNumbers
from edge.bindings_store import BindingsStore, BindingsUnreadable
from edge.factory_reset import FactoryReset
from edge.heard import Heard
from edge.identity import write_private

if TYPE_CHECKING:
    from edge.kiosk.server import KioskPage
    from edge.renewal import Renewer
    from edge.updates import Updater

log = logging.getLogger(__name__)

STATE_FILE = "engine-state.cbor"
OPEN_MARKER = "open-batch"  # present while accepted readings wait in RAM (engine.pending)
SEQUENCE_FILE = "sequence"
QUEUE_FILE = "queue.sqlite3"
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
RESTART = 75  # exit status asking systemd to start the gateway again (EX_TEMPFAIL)


def monotonic_ms() -> int:
    """The engine's clock: milliseconds of ``time.monotonic``."""
    return int(time.monotonic() * 1000)


class Source(Protocol):
    """A radio source (``BleSource``, ``SerialSource``)."""

    async def run(self, stop: asyncio.Event) -> None: ...

    def counters(self) -> dict[str, int]: ...


class UplinkLike(Protocol):
    """What the runtime needs of ``edge.uplink.Uplinks``."""

    async def run(self, stop: asyncio.Event | None = None) -> None: ...

    def wake(self) -> None: ...

    def set_preferred(self, name: str) -> None: ...

    def counters(self) -> dict[str, int]: ...


def load_state(path: Path) -> dict[str, Any] | None:
    """The engine state saved at ``path``, or None if there is none (first start)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    state = cbor.loads(data)
    return state if isinstance(state, dict) else None


def save_state(path: Path, engine: Gateway) -> None:
    """Write the engine's state atomically, readable by the gateway's user only."""
    write_private(path, cbor.dumps(engine.state(), True))


def cpu_temperature_c(path: Path = THERMAL) -> int | None:
    """The SoC temperature in whole degrees Celsius (Raspberry Pi OS), or None."""
    try:
        return round(int(path.read_text().strip()) / 1000)
    except (OSError, ValueError):
        return None


@dataclass
class GatewayRuntime:
    """One running gateway (module docstring). ``sources`` take ``on_heard`` at
    construction, so they are made by a factory given ``self.on_heard``; ``uplinks`` take
    ``self.on_downlink`` likewise."""

    engine: Gateway
    state_path: Path
    clock: Callable[[], int] = monotonic_ms
    sources: list[Source] = field(default_factory=list)
    uplinks: UplinkLike | None = None
    restart_requested: bool = False
    refused_downlinks: int = 0
    started_ms: int | None = None
    _marked: bool = False
    rssi: dict[str, float] = field(default_factory=dict)  # per source, smoothed
    updater: Updater | None = None
    renewer: Renewer | None = None
    _stop: asyncio.Event | None = None
    _work: set[asyncio.Future[None]] = field(default_factory=set)  # updates, key rotations
    kiosk: KioskPage | None = None  # the branch kiosk's page, with [kiosk] (edge.kiosk)
    bindings: BindingsStore | None = None  # the wearables' keys, encrypted at rest
    reset: FactoryReset = field(default_factory=FactoryReset)  # factory_reset

    # ---- radio in ------------------------------------------------------------------------

    def on_heard(self, heard: Heard) -> None:
        """A source heard an advertisement (called on the loop's thread)."""
        now = self.clock()
        # RSSI per adapter, smoothed (1/16 of each new sample): a dying antenna or an
        # adapter moved behind a cabinet shows in health before readings stop.
        previous = self.rssi.get(heard.source)
        self.rssi[heard.source] = (
            heard.rssi if previous is None else previous + (heard.rssi - previous) / 16
        )
        try:
            if heard.adv is not None:
                queued = self.engine.heard(heard.address, heard.rssi, heard.adv, now)
            elif heard.payload is not None:
                queued = self.engine.advertisement(heard.address, heard.rssi, heard.payload, now)
            else:
                return
        except CoreError:  # the engine counts what it refuses; a source never dies of it
            return
        self.track_open_batch()
        if queued and self.uplinks is not None:
            self.uplinks.wake()

    # ---- what a power cut would lose -------------------------------------------------------

    @property
    def marker_path(self) -> Path:
        return self.state_path.with_name(OPEN_MARKER)

    def track_open_batch(self) -> None:
        """Keep the marker on disk exactly while the engine holds accepted readings in RAM."""
        pending = self.engine.pending() > 0
        if pending and not self._marked:
            write_private(self.marker_path, b"")
            self._marked = True
        elif not pending and self._marked:
            self.marker_path.unlink(missing_ok=True)
            self._marked = False

    def count_lost_open_batch(self) -> bool:
        """At start: a marker left by the last run means its open batch was lost; count it."""
        if not self.marker_path.exists():
            return False
        self.engine.lost(1)
        self.marker_path.unlink()
        log.warning("the last run ended with an open batch: its readings were lost (counted)")
        return True

    # ---- downlink ------------------------------------------------------------------------

    def on_downlink(self, data: bytes, aad: str) -> None:
        """A downlink message arrived: the engine acts on it; actions are carried out."""
        now = self.clock()
        revision = self.engine.config_revision
        keys_revision = self.engine.keys_revision
        uplink = self.engine.options["uplink"]
        try:
            actions = self.engine.downlink(data, aad, now)
        except CoreError as exc:
            self.refused_downlinks += 1
            log.info("downlink refused: %s", exc)
            return
        if self.engine.keys_revision != keys_revision and self.bindings is not None:
            self.bindings.save(self.engine.bindings_state())
        if actions or self.engine.config_revision != revision:
            save_state(self.state_path, self.engine)  # before acting: nothing runs twice
        if self.engine.options["uplink"] != uplink and self.uplinks is not None:
            self.uplinks.set_preferred(self.engine.options["uplink"])
        for action in actions:
            self.carry_out(action, now)
        self.track_open_batch()
        if self.uplinks is not None:
            self.uplinks.wake()

    def carry_out(self, action: Action, now: int) -> None:
        """Do what a command asks, and report it (module docstring)."""
        name = action.name
        if name == "rescan":
            for source in self.sources:
                rescan = getattr(source, "rescan", None)
                if rescan is not None:
                    rescan()
            self.engine.report(action.command_id, STATUS_DONE, "scans restarted", now)
        elif name == "collect_diagnostics":
            self.engine.report(action.command_id, STATUS_DONE, self.diagnostics(), now)
        elif name == "reboot":
            self.engine.report(action.command_id, STATUS_DONE, "restarting the gateway", now)
            self.request_restart()
        elif name == "update" and self.updater is not None:
            task = self.updater.accept(self, action, now)  # reports accepted or refused
            if task is not None:
                self._work.add(task)
                task.add_done_callback(self._work.discard)
        elif name == "rotate_key" and self.renewer is not None:
            task = self.renewer.accept(self, action, now)  # reports done or failed
            self._work.add(task)
            task.add_done_callback(self._work.discard)
        elif name == "factory_reset":
            task = self.reset.accept(self, action, now)  # reports done, then waits and wipes
            if task is not None:
                self._work.add(task)
                task.add_done_callback(self._work.discard)
        else:
            reason = "%s is not supported by this gateway yet" % name
            self.engine.report(action.command_id, STATUS_REFUSED, reason, now)

    def request_restart(self) -> None:
        """Stop, and exit with ``RESTART`` (systemd starts the gateway again)."""
        self.restart_requested = True
        if self._stop is not None:
            self._stop.set()

    def wake(self) -> None:
        """Something was queued outside a downlink or a tick: let the uplinks send it."""
        if self.uplinks is not None:
            self.uplinks.wake()

    def diagnostics(self) -> str:
        """A short summary for ``collect_diagnostics`` (at most 200 bytes on the wire)."""
        counters = self.engine.health_counters()
        keys = ("frames_heard", "frames_in", "depth", "dropped_batches", "downlinks_refused")
        text = " ".join("%s=%s" % (k, counters.get(k)) for k in keys)
        return ("%s %s" % (self.engine.software, text))[:200]

    # ---- health and time -------------------------------------------------------------------

    def refresh_health(self) -> None:
        """Give the engine the values only the machine knows, for the next health record."""
        self.engine.set_health("cpu_temp_c", cpu_temperature_c())
        self.engine.set_health("downlinks_dropped", self.refused_downlinks)
        if self.started_ms is not None:
            self.engine.set_health("uptime_s", (self.clock() - self.started_ms) // 1000)
        for index, source in enumerate(self.sources):
            name = getattr(source, "source", None)
            if name in self.rssi:
                self.engine.set_health("source%d_rssi" % index, round(self.rssi[name]))
        parts: list[tuple[str, dict[str, int]]] = []
        for index, source in enumerate(self.sources):
            parts.append(("source%d_" % index, source.counters()))
        if self.uplinks is not None:
            parts.append(("uplink_", self.uplinks.counters()))
        for prefix, counters in parts:
            for name, value in counters.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self.engine.set_health(prefix + name, value)

    async def tick(self, stop: asyncio.Event) -> None:
        """Poll the engine whenever it is due (at least every second)."""
        while not stop.is_set():
            self.refresh_health()
            now = self.clock()
            if self.engine.poll(now) and self.uplinks is not None:
                self.uplinks.wake()
            self.track_open_batch()
            wait = min(self.engine.due_in(self.clock()), 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 10) / 1000)

    # ---- the whole -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set (or a reboot is asked); return the exit status."""
        self._stop = stop
        self.started_ms = self.clock()
        self.count_lost_open_batch()
        tasks = [asyncio.ensure_future(self.tick(stop))]
        tasks += [asyncio.ensure_future(source.run(stop)) for source in self.sources]
        if self.uplinks is not None:
            tasks.append(asyncio.ensure_future(self.uplinks.run(stop)))
        if self.renewer is not None:
            tasks.append(asyncio.ensure_future(self.renewer.watch(self, stop)))
        if self.kiosk is not None:
            tasks.append(asyncio.ensure_future(self.kiosk.run(stop)))
        try:
            await stop.wait()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self.reset.requested:  # (factory_reset keeps nothing)
                self.engine.flush()  # open batches go to the queue, which keeps them
                self.track_open_batch()
                save_state(self.state_path, self.engine)
            self.engine.queue.close()
        if self.reset.requested:
            return self.reset.finish(self)  # wipe; a status systemd does not restart
        return RESTART if self.restart_requested else 0


def open_engine(
    data_dir: Path,
    keyring: Any,
    uplink_aad: str,
    software: str,
    capacity_bytes: int,
    settings: dict[str, Any] | None = None,
    resend_ms: int = 30_000,
    bindings: Any = None,
) -> Gateway:
    """The engine over the data folder: the SQLite queue, the sequence file, the saved
    state (whose configuration, the cloud's latest, wins over ``settings``); ``bindings``:
    the wearables as ``edge.bindings_store`` gives them back."""
    from edge.queue_sqlite import SqliteStorage

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    queue = Queue(
        SqliteStorage(data_dir / QUEUE_FILE), capacity_bytes, resend_ms=resend_ms, max_in_flight=8
    )
    sequence = SequenceNumbers(FileCounterStore(str(data_dir / SEQUENCE_FILE)), block=64)
    state = load_state(data_dir / STATE_FILE)
    return Gateway(
        keyring,
        sequence,
        queue,
        uplink_aad,
        software,
        settings=settings,
        state=state,
        repeat_cache=256,
        bindings=bindings,
    )


def build(settings: Any, identity: Any, updater: Updater | None = None) -> GatewayRuntime:
    """The runtime ``gateway.toml`` and the enrolled identity describe (``updater``: its
    software updates, by default made from ``settings``)."""
    from edge.ble_source import BleSource
    from edge.renewal import Renewer
    from edge.serial_source import SerialSource
    from edge.updates import Updater
    from edge.uplink import GatewayOutbox, Uplinks, make_links, uplink_aad

    updater = updater or Updater.from_settings(settings)
    store = BindingsStore.for_identity(Path(settings.data_dir), identity)
    try:
        saved = store.load()
    except BindingsUnreadable as exc:  # the cloud sends them again: it hears no revision
        log.warning("wearable bindings not loaded: %s", exc.message)
        saved = None
    engine = open_engine(
        Path(settings.data_dir),
        identity.keyring(),
        uplink_aad(identity.uid),
        updater.software,  # the release it runs from, else software_version
        settings.queue_capacity_bytes,
        settings=dict(identity.config or {}) or None,
        bindings=saved,
    )
    runtime = GatewayRuntime(engine, Path(settings.data_dir) / STATE_FILE, updater=updater)
    runtime.bindings = store
    runtime.renewer = Renewer.from_settings(settings, identity)
    sources: list[Source] = [BleSource(ble.adapter, runtime.on_heard) for ble in settings.ble]
    sources += [SerialSource(s.port, s.baud, runtime.on_heard) for s in settings.serial]
    runtime.sources = sources
    links = make_links(settings, identity)
    runtime.uplinks = Uplinks(
        GatewayOutbox(engine), links, runtime.on_downlink, engine.options["uplink"]
    )
    if settings.kiosk is not None:  # the page, and the engine's observer
        from edge.kiosk.server import open_page

        runtime.kiosk = open_page(settings.kiosk, runtime)
    return runtime


def serve(settings: Any, identity: Any, signals: Sequence[int] = ()) -> int:
    """Run the gateway until a signal in ``signals`` arrives; the exit status."""

    from edge import update_plan
    from edge.updates import Updater

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        updater = Updater.from_settings(settings)
        trial = updater.start(time.time())  # a software update on trial: count this start
        if trial.do == update_plan.ROLL_BACK:
            log.warning("update rolled back: %s; restarting", trial.detail)
            return RESTART
        runtime = build(settings, identity, updater)
        updater.attach(runtime, trial)
        log.info("gateway %s running (pid %d)", identity.uid, os.getpid())
        watch = asyncio.ensure_future(updater.watch(runtime, stop))
        status = await runtime.run(stop)
        await watch
        return status

    return asyncio.run(main())
