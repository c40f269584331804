"""Running ingest as a service: what ``bankiot cloud ingest-mqtt`` and ``ingest-coap`` start.

``open_ingest(config)`` builds an ``Ingest`` on the configured database with the identity
area's keys; ``serve_mqtt`` and ``serve_coap`` run a transport until ``stop`` is set, with
``keep_partitions`` alongside (PostgreSQL's monthly partitions made ahead, hourly);
``run_until_signalled`` runs one of them until SIGINT or SIGTERM, then shuts down within
``SHUTDOWN_SECONDS`` and says what was still pending. ``purge`` is the retention run
(``bankiot cloud ingest-purge``, daily from cron or a timer).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

from cloud.db import Database
from cloud.ingest import coap_server, ingest_on, partitions
from cloud.ingest.keys import KeySource
from cloud.ingest.mqtt_worker import MqttWorker
from cloud.ingest.pipeline import Ingest
from cloud.ingest.retention import (
    RetentionPolicy,
    purge_expired,
    purge_operations,
    purge_records,
)

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 10.0
PARTITION_CHECK_SECONDS = 3600.0


class ServiceError(ValueError):
    """A service setting that cannot be used; the message says which."""


def open_ingest(config: Mapping[str, Any], key_source: KeySource | None = None) -> Ingest:
    """An ``Ingest`` on ``config``'s database, with the identity area's keys by default and
    the configured thresholds (a bad ``INGEST_THRESHOLDS`` raises ``ConfigError``)."""
    return ingest_on(Database(config["DATABASE_URL"]), config, key_source)


def purge(
    config: Mapping[str, Any],
    keep: tuple[str, ...],
    as_json: bool,
    now: dt.datetime | None = None,
) -> str:
    """``bankiot cloud ingest-purge``: delete what outlived its retention; the report.

    ``keep`` items are ``CLASS=DURATION`` (``health=7d``, ``presence=12h``); classes not
    given keep their defaults (``retention``). On PostgreSQL, months whose every class has
    expired are first dropped whole (``partitions.drop_expired_partitions``, committed at
    once: it locks ``readings``); the rest is deleted row by row. Kiosks' pairing offers
    that were used or expired go too (``cloud.customers.pairing.purge_offers``), and
    the records of what was decided about customers by their classes
    (``retention.purge_records``: decisions, closed staff requests, offer results,
    notifications, the applications' decisions, ended life events), and the counts of
    rejected envelopes (``retention.purge_operations``).
    """
    from cloud.customers.pairing import purge_offers  # the customers area, cloud only

    items = {}
    for item in keep:
        name, sep, value = item.partition("=")
        if not sep:
            raise ServiceError("--keep %r is not CLASS=DURATION (for example health=7d)" % item)
        items[name.strip()] = value
    policy = RetentionPolicy.parse(items)
    now = now or dt.datetime.now(dt.UTC)
    database = Database(config["DATABASE_URL"])
    try:
        postgres = database.engine.dialect.name == "postgresql"
        with database.engine.begin() as connection:
            dropped = partitions.drop_expired_partitions(connection, now, policy)
        with database.sessions() as session:
            deleted = purge_expired(session, now, policy)
            deleted.update(purge_records(session, now, policy))
            deleted.update(purge_operations(session, now, policy))
            offers = purge_offers(session, now)
            session.commit()
    finally:
        database.dispose()
    if as_json:
        report: dict[str, Any] = {
            name: {"deleted": count, "kept_for": str(policy.period(name))}
            for name, count in deleted.items()
        }
        report["partitions_dropped"] = dropped
        report["pairing_offers"] = {"deleted": offers}
        return json.dumps(report, indent=2)
    lines = [
        "%-12s %8d deleted (kept for %s)" % (name, count, policy.period(name))
        for name, count in deleted.items()
    ]
    lines.append("%-12s %8d deleted (used or expired)" % ("offers", offers))
    if postgres:
        lines.append(
            "%-12s %8d dropped whole%s"
            % ("months", len(dropped), (": " + ", ".join(dropped)) if dropped else "")
        )
    return "\n".join(lines)


def broker_address(url: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of ``mqtt://host:port`` or ``mqtts://host:port``."""
    parts = urlsplit(url if "://" in url else "mqtt://" + url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ServiceError("broker %r is not mqtt://HOST:PORT or mqtts://HOST:PORT" % url)
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ServiceError("broker %r has no valid port" % url) from None
    return parts.hostname, port, tls


def tls_context(cafile: Path | None, certfile: Path | None, keyfile: Path | None):
    """A client TLS context: the broker's CA, and the cloud's client certificate if given."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if certfile is not None:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return context


def serve_metrics(stats: Collector, host: str, port: int) -> None:
    """Serve ``stats`` in Prometheus text format on ``http://host:port/`` (a thread)."""
    registry = CollectorRegistry()
    registry.register(stats)
    start_http_server(port, host, registry)


async def keep_partitions(database: Database, stop: asyncio.Event) -> None:
    """Make PostgreSQL's monthly ``readings`` partitions ahead, now and every hour."""
    while not stop.is_set():
        try:
            made = await asyncio.to_thread(_make_partitions, database)
            if made:
                log.info("made partitions %s", ", ".join(made))
        except Exception as exc:  # the database may be away: try again next time
            log.warning("could not check partitions: %s", str(exc).splitlines()[0])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARTITION_CHECK_SECONDS)


def _make_partitions(database: Database) -> list[str]:
    with database.engine.begin() as connection:
        return partitions.create_partitions(connection)


async def serve_mqtt(worker: MqttWorker, stop: asyncio.Event) -> None:
    """Run ``worker`` (and partition upkeep) until ``stop`` is set."""
    await asyncio.gather(worker.run(stop), keep_partitions(worker.ingest.database, stop))


async def serve_coap(ingest: Ingest, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve CoAP ingest on ``host:port`` (and partition upkeep) until ``stop`` is set."""
    context = await coap_server.start(ingest, host, port)
    try:
        await asyncio.gather(stop.wait(), keep_partitions(ingest.database, stop))
    finally:
        await context.shutdown()


def run_until_signalled(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``serve(stop)`` until SIGINT or SIGTERM sets ``stop``; bounded shutdown."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.ensure_future(serve(stop))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # ended by itself: an error (a port taken, a bad certificate)
            stopping.cancel()
            task.result()
            return
        try:
            await asyncio.wait_for(task, SHUTDOWN_SECONDS)
        except TimeoutError:
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            log.warning("shut down with %d task(s) still pending", len(pending))

    asyncio.run(main())
