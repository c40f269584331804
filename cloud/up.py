"""``bankiot cloud up``: the whole cloud in one process, for one machine.

Start, in order: the database schema (``db upgrade``), the fleet CA (made on first start,
like ``ca init``), the CRL (re-signed when stale), the broker (a private Mosquitto, see
``cloud.embedded_broker``, unless ``--broker URL`` names one), the web application
(werkzeug's threaded server in a thread), CoAP ingest, the MQTT ingest worker, the fleet
supervisor (``cloud.fleet.supervisor``: command timeouts, downlink delivery of configuration
and commands, alerts) and the background tasks. On SIGINT or SIGTERM everything stops in
the reverse order and the command exits 0.

Ports: an address given explicitly (flag, configuration file or environment) that is taken
is a one-line error. A default one that is taken (``127.0.0.1:5000`` with another service
on it, or a Mosquitto already on the MQTT port) is reported, and a free port is taken and
printed instead. A broker already listening is never used unasked: nothing says it requires
client certificates and keeps gateways to their own topics; ``--broker URL`` uses it.

Background tasks: ``BACKGROUND_TASKS`` is the hook list for periodic work that runs beside
ingest (a fleet supervisor, for example). Each is ``task(database, stop)``, a coroutine that
runs until the ``asyncio.Event`` ``stop`` is set and then returns promptly; an exception
in one is logged and does not stop the others. A task that takes a third parameter is
called ``task(database, stop, context)`` with a ``Background``: ingest's key source, a
publisher of sealed downlink messages (a connection of its own to the broker), usable from
the loop or, through ``publish_from_thread``, from a worker thread, and ``up``'s settings.
Append to the list before ``run`` starts (at import time of the module that provides the
task).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud.config import DEFAULTS
from cloud.db import Database

if TYPE_CHECKING:
    from cloud.fleet.delivery import Outgoing
    from cloud.ingest.keys import KeySource

log = logging.getLogger(__name__)

# ``task(database, stop)``, or ``task(database, stop, context)`` (module docstring).
BackgroundTask = Callable[..., Awaitable[None]]

# Periodic work run beside ingest by ``bankiot cloud up`` (module docstring).
BACKGROUND_TASKS: list[BackgroundTask] = []

DEFAULT_MQTT = "127.0.0.1:8883"  # MQTT over TLS: the embedded broker offers nothing else
SHUTDOWN_SECONDS = 10.0


class UpError(Exception):
    """``up`` cannot start; the message is one line for the operator."""


@dataclass(frozen=True)
class Listen:
    """Where one part listens: ``host``, ``port``, and a note if the default was taken."""

    host: str
    port: int
    note: str | None = None

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)


def parse_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``UpError`` if it is not one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UpError("%r is not HOST:PORT" % text)
    return host or "127.0.0.1", int(port)


def _bindable(host: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM:  # as servers do: TIME_WAIT leftovers do not count
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str, kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def choose(what: str, text: str, explicit: bool, kind: socket.SocketKind) -> Listen:
    """Where ``what`` listens: ``text`` (HOST:PORT) if free; taken and ``explicit`` is an
    ``UpError``; taken by default means a free port on the same host, with a note."""
    host, port = parse_address(text)
    try:
        free = _bindable(host, port, kind)
    except OSError as exc:  # an address this machine does not have
        raise UpError("cannot listen on %s for %s: %s" % (text, what, exc.strerror)) from None
    if free:
        return Listen(host, port)
    if explicit:
        raise UpError("%s:%d for %s is taken by another program" % (host, port, what))
    other = _free_port(host, kind)
    return Listen(
        host,
        other,
        "%s:%d is taken by another program; %s uses port %d" % (host, port, what, other),
    )


@dataclass(frozen=True)
class Plan:
    """What ``up`` starts: listening addresses, and the broker (None: the embedded one)."""

    http: Listen
    coap: Listen
    mqtt: Listen | None
    broker_url: str | None


def plan(config: dict[str, Any], mqtt: str | None, broker_url: str | None) -> Plan:
    """The addresses for ``config`` (``HTTP``, ``COAP``) and ``--mqtt`` / ``--broker``."""
    if mqtt and broker_url:
        raise UpError("give --mqtt (the embedded broker) or --broker (yours), not both")
    http = choose("HTTP", config["HTTP"], config["HTTP"] != DEFAULTS["http"], socket.SOCK_STREAM)
    coap = choose("CoAP", config["COAP"], config["COAP"] != DEFAULTS["coap"], socket.SOCK_DGRAM)
    listen = None
    if not broker_url:
        listen = choose("MQTT", mqtt or DEFAULT_MQTT, mqtt is not None, socket.SOCK_STREAM)
    return Plan(http, coap, listen, broker_url)


def ensure_ca(config: dict[str, Any]) -> list[str]:
    """Make the fleet CA on first start (as ``bankiot cloud ca init``); the lines to print."""
    from cloud.identity import commands
    from cloud.identity.ca import CAPaths

    if CAPaths.of(Path(config["DATA_DIR"])).issuing_cert.exists():
        return []
    return commands.ca_init(config, None)


def refresh_stale_crl(config: dict[str, Any], now: dt.datetime | None = None) -> str | None:
    """Re-sign ``crl.pem`` when it is missing or past half its life and the CA exists (for
    ``serve`` and ``up`` at start); the line to print, or None when nothing was done."""
    from cloud.identity.ca import CAPaths, load_ca
    from cloud.identity.errors import IdentityError
    from cloud.identity.revocation import crl_needs_refresh, publish_crl
    from cloud.people.commands import database

    data_dir = Path(config["DATA_DIR"])
    now = now or dt.datetime.now(dt.UTC)
    if not CAPaths.of(data_dir).issuing_cert.exists() or not crl_needs_refresh(data_dir, now):
        return None
    try:
        ca = load_ca(data_dir)
    except IdentityError as exc:  # a wrong passphrase, say: serve anyway, say so
        return "CRL is stale and could not be re-signed: %s" % exc
    with database(config) as session:
        path = publish_crl(session, ca, data_dir, now)
    return "CRL was stale or missing: re-signed %s" % path


def migrate(config: dict[str, Any]) -> None:
    """Bring the database up to date (``UpError`` with the driver's first line)."""
    from cloud.migrations import upgrade

    try:
        upgrade(config["DATABASE_URL"])
    except Exception as exc:  # a driver's error: say it in one line
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UpError("migration failed: %s" % message) from None


def summary(plan: Plan, broker_url: str, data_dir: Path) -> list[str]:
    """The block printed once everything listens."""
    coap_host = "[%s]" % plan.coap.host if ":" in plan.coap.host else plan.coap.host
    mqtt = broker_url + ("" if plan.mqtt else " (external)")
    return [
        "bankiot cloud up",
        "  web   http://%s (API docs at /docs)" % plan.http.address,
        "  coap  coap://%s:%d/batches" % (coap_host, plan.coap.port),
        "  mqtt  %s" % mqtt,
        "  data  %s" % data_dir.absolute(),
        "Ctrl-C stops everything.",
    ]


PUBLISH_SECONDS = 10.0


@dataclass(frozen=True)
class Background:
    """What ``up`` gives the background tasks that take a third parameter: ingest's key
    source, ``publish`` (a coroutine sending sealed downlink messages, QoS 1), the loop
    it runs on, and ``up``'s settings (``cloud.config``)."""

    key_source: KeySource
    publish: Callable[[Sequence[Outgoing]], Awaitable[None]]
    loop: asyncio.AbstractEventLoop
    config: Mapping[str, Any] = field(default_factory=dict)

    def publish_from_thread(self, outgoing: Outgoing) -> None:
        """Publish one message from a thread other than the loop's (a worker's
        ``asyncio.to_thread``), waiting until the broker has it; raises what publishing
        raised, or ``TimeoutError`` after ``PUBLISH_SECONDS``."""

        async def send() -> None:
            await self.publish([outgoing])

        future = asyncio.run_coroutine_threadsafe(send(), self.loop)
        try:
            future.result(PUBLISH_SECONDS)
        except TimeoutError:
            future.cancel()
            raise


def _takes_context(task: BackgroundTask) -> bool:
    try:
        parameters = inspect.signature(task).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the two-argument form
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in parameters if p.kind in positional) >= 3 or any(
        p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters
    )


async def _guard(
    task: BackgroundTask,
    database: Database,
    stop: asyncio.Event,
    context: Background,
) -> None:
    """Run one background task (with ``context`` if it takes one); its failure is logged,
    not spread."""
    try:
        if _takes_context(task):
            await task(database, stop, context)
        else:
            await task(database, stop)
    except Exception:
        log.exception("background task %s failed", getattr(task, "__name__", task))


class _WebThread:
    """werkzeug's threaded server in a thread of its own."""

    def __init__(self, app: Any, listen: Listen) -> None:
        from werkzeug.serving import make_server

        try:
            self.server = make_server(listen.host, listen.port, app, threaded=True)
        except (OSError, SystemExit) as exc:  # werkzeug exits when the port is taken
            raise UpError("cannot listen on %s for HTTP: %s" % (listen.address, exc)) from None
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="bankiot-web", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(SHUTDOWN_SECONDS)


async def _serve(
    config: dict[str, Any],
    plan: Plan,
    tls: tuple[Path | None, Path | None, Path | None],
    echo: Callable[[str], None],
    stop: asyncio.Event,
) -> None:
    from cloud import embedded_broker
    from cloud.app import create_app
    from cloud.fleet import supervisor
    from cloud.ingest import coap_server, service
    from cloud.ingest.mqtt_worker import MqttWorker

    async with contextlib.AsyncExitStack() as stack:  # stops in the reverse order
        broker = None
        if plan.mqtt is not None:
            try:
                broker = await asyncio.to_thread(
                    embedded_broker.prepare, config, plan.mqtt.host, plan.mqtt.port
                )
                await asyncio.to_thread(broker.start)
            except embedded_broker.BrokerError as exc:
                raise UpError(str(exc)) from None
            stack.callback(broker.stop)
            config = {**config, "BROKER_URL": broker.url}
            host, port = embedded_broker.connect_host(broker.host), broker.port
            tls_context, group = broker.client_tls(), "bankiot-up"
        else:
            try:
                host, port, secure = service.broker_address(config["BROKER_URL"])
            except ValueError as exc:
                raise UpError(str(exc)) from None
            tls_context = service.tls_context(*tls) if secure or tls[0] else None
            group = "bankiot-ingest"

        web = _WebThread(create_app(config), plan.http)
        stack.callback(web.stop)

        ingest = service.open_ingest(config)
        stack.callback(ingest.database.dispose)
        try:
            coap = await coap_server.start(ingest, plan.coap.host, plan.coap.port)
        except OSError as exc:
            raise UpError("cannot listen on %s for CoAP: %s" % (plan.coap.address, exc)) from None
        stack.push_async_callback(coap.shutdown)

        worker = MqttWorker(ingest, host, port, group=group, tls_context=tls_context)
        publisher = supervisor.MqttPublisher(host, port, tls_context=tls_context)
        # Its own connection: two users of one lazily connecting client could open two
        # under one client id, and the broker drops the older.
        background_publisher = supervisor.MqttPublisher(host, port, tls_context=tls_context)
        stack.push_async_callback(background_publisher.close)
        context = Background(
            ingest.key_source, background_publisher, asyncio.get_running_loop(), config
        )
        tasks = [
            worker.run(stop),
            service.keep_partitions(ingest.database, stop),
            supervisor.supervise(
                ingest.database,
                ingest.key_source,
                publisher,
                stop,
                checks=supervisor.checks_for(config),
            ),
            *(_guard(task, ingest.database, stop, context) for task in BACKGROUND_TASKS),
        ]
        if broker is not None:
            tasks.append(embedded_broker.watch(broker, stop))
        running = asyncio.ensure_future(asyncio.gather(*tasks))

        for line in [note for note in (plan.http.note, plan.coap.note) if note] + (
            [plan.mqtt.note] if plan.mqtt and plan.mqtt.note else []
        ):
            echo(line)
        for line in summary(plan, config["BROKER_URL"], Path(config["DATA_DIR"])):
            echo(line)
        try:
            await asyncio.wait(
                {running, asyncio.ensure_future(stop.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            stop.set()
            await asyncio.wait_for(running, SHUTDOWN_SECONDS)
        except TimeoutError:
            log.warning("ingest did not stop within %.0f s", SHUTDOWN_SECONDS)


def run(
    config: dict[str, Any],
    mqtt: str | None = None,
    broker_url: str | None = None,
    tls: tuple[Path | None, Path | None, Path | None] = (None, None, None),
    echo: Callable[[str], None] = print,
) -> None:
    """``bankiot cloud up`` (module docstring): returns after SIGINT/SIGTERM once everything
    has stopped; ``UpError`` (one line) when something cannot start."""
    if broker_url:
        config = {**config, "BROKER_URL": broker_url}
    chosen = plan(config, mqtt, broker_url)
    migrate(config)
    for line in ensure_ca(config):
        echo(line)
    refreshed = refresh_stale_crl(config)
    if refreshed:
        echo(refreshed)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _serve(config, chosen, tls, echo, stop)

    asyncio.run(main())
