"""The fleet supervisor: the periodic work of fleet management, in one loop.

Each pass, in its own transaction: time out commands past their deadline, then seal what
is due on the downlink (``delivery.prepare``), commit, and publish it; then every other
check (``checks_for(config)``: alerts, rollouts), each in its own transaction so that one
failing does not stop the others. Passes run every ``interval`` seconds.

Several supervisors may run (one per ``bankiot cloud up`` or ``supervise`` process): the
row locks taken by ``take_downlink_seq`` and the per-row updates keep them from
corrupting anything, and a message sealed twice is a harmless repeat (``delivery``).
Publishing is QoS 1 to the broker, which queues for gateways that are offline
(persistent sessions); what the broker loses, the back-off sends again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from cloud.db import Database
from cloud.fleet import commands, delivery
from cloud.identity.models import utcnow
from cloud.ingest.keys import KeySource

log = logging.getLogger(__name__)

Check = Callable[[Session, dt.datetime], object]
"""A periodic check: given a session and the time, does its work (the pass commits)."""


def checks_for(config: Mapping[str, Any]) -> dict[str, Check]:
    """The periodic checks of the fleet areas, set up from the cloud's ``config`` (a bad
    setting raises ``cloud.config.ConfigError`` here, at start, not on the first pass)."""
    from cloud.fleet import alerts, rollouts

    return {"rollouts": rollouts.advance_all, "alerts": alerts.alert_check(config)}


Publish = Callable[[Sequence[delivery.Outgoing]], Awaitable[None]]


@dataclass
class PassResult:
    """What one pass did."""

    expired: int = 0
    published: int = 0
    failed_checks: list[str] = field(default_factory=list)


def run_pass_sync(
    database: Database,
    keys: KeySource,
    now: dt.datetime,
    policy: delivery.Policy | None = None,
) -> tuple[int, list[delivery.Outgoing]]:
    """Expire and seal in one committed transaction; return (expired, to publish)."""
    with database.sessions() as session:
        expired = commands.expire(session, now)
        outgoing = delivery.prepare(session, keys, now, policy)
        session.commit()
    return expired, outgoing


def run_checks(database: Database, checks: Mapping[str, Check], now: dt.datetime) -> list[str]:
    """Run each check in its own transaction; return the names of those that failed."""
    failed = []
    for name, check in checks.items():
        try:
            with database.sessions() as session:
                check(session, now)
                session.commit()
        except Exception:  # one broken check must not stop delivery or the others
            log.exception("fleet check %s failed", name)
            failed.append(name)
    return failed


async def run_pass(
    database: Database,
    keys: KeySource,
    publish: Publish | None,
    now: dt.datetime,
    policy: delivery.Policy | None = None,
    checks: Mapping[str, Check] | None = None,
) -> PassResult:
    """One pass (module docstring); the database work runs in a worker thread."""
    expired, outgoing = await asyncio.to_thread(run_pass_sync, database, keys, now, policy)
    result = PassResult(expired=expired)
    if outgoing and publish is not None:
        try:
            await publish(outgoing)
            result.published = len(outgoing)
        except Exception as exc:  # the back-off sends them again
            log.warning("downlink publish failed (%s): %d messages wait", exc, len(outgoing))
    if checks:
        result.failed_checks = await asyncio.to_thread(run_checks, database, checks, now)
    return result


class MqttPublisher:
    """Publishes sealed downlink messages with QoS 1 over one kept-open connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        identifier: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls_context = tls_context
        self.username = username
        self.password = password
        self.identifier = identifier or "bankiot-fleet-%s" % uuid.uuid4().hex[:12]
        self._client = None  # an entered aiomqtt.Client, or None

    async def __call__(self, outgoing: Sequence[delivery.Outgoing]) -> None:
        import aiomqtt

        try:
            if self._client is None:
                client = aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.identifier,
                    tls_context=self.tls_context,
                    username=self.username,
                    password=self.password,
                    timeout=10,
                )
                await client.__aenter__()
                self._client = client
            for message in outgoing:
                await self._client.publish(message.topic, message.payload, qos=1)
                log.debug("published %s", message.what)
        except aiomqtt.MqttError:
            await self.close()
            raise

    async def close(self) -> None:
        """Disconnect (quietly if the connection is gone already)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)


async def supervise(
    database: Database,
    keys: KeySource,
    publish: Publish | None,
    stop: asyncio.Event,
    *,
    interval: float = 2.0,
    policy: delivery.Policy | None = None,
    checks: Mapping[str, Check] | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> None:
    """Run passes every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            result = await run_pass(database, keys, publish, clock(), policy, checks)
            if result.expired or result.published:
                log.info(
                    "fleet pass: %d commands timed out, %d messages published",
                    result.expired,
                    result.published,
                )
        except Exception as exc:  # the database may be down: try again next pass
            log.warning("fleet pass failed: %s", str(exc).splitlines()[0] if str(exc) else exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
    if isinstance(publish, MqttPublisher):
        await publish.close()
