"""The push outbox, on SQLite and PostgreSQL: a committed notification reaches the bank's push
gateway, signed, at least once and never again once taken; a failed push is retried after
its backoff; a push that keeps failing is given up, counted and logged by id; two pushers
on PostgreSQL never push the same notification; the settings are refused at start.

The gateway is a real HTTP server on 127.0.0.1 (``http.server`` in a thread) that checks
nothing and records every request; the tests check the signature with ``hmac``. Time comes
in as an argument: a pass at ``now`` + the backoff is what a pusher does later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import select
from sqlalchemy.engine import URL

from cloud import up
from cloud.config import ConfigError, load_config
from cloud.customers.models import Customer
from cloud.db import Database
from cloud.ingest.models import utc
from cloud.notifications import background, inbox
from cloud.notifications.models import Notification
from cloud.notifications.push import LoggingChannel
from cloud.notifications.pusher import BACKOFF, MAX_ATTEMPTS, Pusher, backoff, channel_from
from cloud.notifications.webhook import WebhookChannel
from tests.cloud.customer_actions import database_of

SECRET = "a-test-secret-of-the-bank"
T0 = dt.datetime(2026, 12, 10, 9, 0, tzinfo=dt.UTC)
WAIT = 60.0  # seconds: the bound on waiting for a background pusher


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Gateway:
    """A push gateway on 127.0.0.1: answers each POST with the next of ``statuses`` (200
    once they run out) and keeps what it got."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[Received] = []
        self.got = threading.Condition()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with gateway.got:
                    gateway.received.append(Received(dict(self.headers.items()), data))
                    status = gateway.statuses.pop(0) if gateway.statuses else 200
                    gateway.got.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads what was received

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/push" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[int]:
        with self.got:
            return [int(r.headers["Idempotency-Key"]) for r in self.received]

    def wait_for(self, count: int) -> None:
        with self.got:
            assert self.got.wait_for(lambda: len(self.received) >= count, WAIT)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    found = Gateway()
    yield found
    found.close()


def add_customer(database: Database, email: str) -> int:
    with database.sessions() as session:
        row = Customer(email=email, password_hash="-", active=True)
        session.add(row)
        session.commit()
        return row.id


def store(
    database: Database, customer_id: int, channel: str = "app", n: int = 1, now: dt.datetime = T0
) -> list[int]:
    """Notifications committed as a decision commits them, and no post-commit hook called:
    what a process killed right after the commit leaves."""
    with database.sessions() as session:
        notes = [
            inbox.add(
                session,
                customer_id=customer_id,
                channel=channel,
                source="holdings",
                title="Price alert: ACME",
                text="ACME is up at 121 (your alert: above 120)",
                now=now,
            )
            for _ in range(n)
        ]
        session.commit()
    return [note.id for note in notes]


def row_of(database: Database, notification_id: int) -> Notification:
    with database.sessions() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        session.expunge(row)
        return row


def at(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else utc(moment)


def test_a_committed_notification_reaches_the_gateway_signed_and_only_once(
    cloud_app: APIFlask, gateway: Gateway
) -> None:
    database = database_of(cloud_app)
    anna = add_customer(database, "anna@example.com")
    (note,) = store(database, anna, "wearable")  # committed, the hook never ran
    pusher = Pusher(database, WebhookChannel(gateway.url, SECRET))
    assert pusher.push_due(T0) == 1

    (got,) = gateway.received
    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Bankiot-Signature"] == "sha256=" + expected
    assert got.headers["Idempotency-Key"] == str(note)
    assert got.headers["Content-Type"] == "application/json"
    assert got.json == {
        "id": note,
        "customer": anna,
        "channel": "wearable",
        "source": "holdings",
        "title": "Price alert: ACME",
        "text": "ACME is up at 121 (your alert: above 120)",
        "relay_to_wearable": True,
    }
    row = row_of(database, note)
    assert (at(row.pushed_at), row.next_push_at, row.push_attempts) == (T0, None, 1)

    # Taken: no pass pushes it again, now or later.
    assert pusher.push_due(T0) == 0
    assert pusher.push_due(T0 + dt.timedelta(days=1)) == 0
    assert gateway.ids() == [note] and pusher.pushed == 1


def test_a_failed_push_is_tried_again_after_its_backoff_and_delivered_once(
    cloud_app: APIFlask, gateway: Gateway
) -> None:
    database = database_of(cloud_app)
    first, second = store(database, add_customer(database, "anna@example.com"), n=2)
    gateway.statuses = [500]  # the first POST fails, every later one is taken
    pusher = Pusher(database, WebhookChannel(gateway.url, SECRET))
    assert pusher.push_due(T0) == 2
    assert gateway.ids() == [first, second]  # in id order; the failure stops nothing
    row = row_of(database, first)
    assert (row.pushed_at, row.push_attempts, at(row.next_push_at)) == (None, 1, T0 + BACKOFF)
    assert pusher.failed == 1

    assert pusher.push_due(T0 + BACKOFF / 2) == 0  # not before its time
    assert pusher.push_due(T0 + BACKOFF) == 1
    assert pusher.push_due(T0 + BACKOFF * 10) == 0
    assert gateway.ids() == [first, second, first]
    assert gateway.received[2].body == gateway.received[0].body  # the same push again
    row = row_of(database, first)
    assert (at(row.pushed_at), row.push_attempts, row.next_push_at) == (T0 + BACKOFF, 2, None)


def test_a_push_that_keeps_failing_is_given_up_counted_and_logged_by_id_only(
    cloud_app: APIFlask, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    database = database_of(cloud_app)
    (note,) = store(database, add_customer(database, "anna@example.com"))
    gateway.statuses = [503] * (MAX_ATTEMPTS + 5)
    pusher = Pusher(database, WebhookChannel(gateway.url, SECRET))
    now = T0
    with caplog.at_level(logging.WARNING, logger="cloud.notifications.pusher"):
        for attempt in range(1, MAX_ATTEMPTS + 1):
            assert pusher.push_due(now) == 1
            now += backoff(attempt)
    assert pusher.push_due(now + dt.timedelta(days=30)) == 0  # given up: never again
    assert len(gateway.received) == MAX_ATTEMPTS and pusher.given_up == 1
    row = row_of(database, note)
    assert (row.pushed_at, row.next_push_at, row.push_attempts) == (None, None, MAX_ATTEMPTS)
    assert caplog.messages[-1] == (
        "push of notification %d given up after %d attempts: the push gateway answered 503"
        % (note, MAX_ATTEMPTS)
    )
    logged = "\n".join(caplog.messages)
    assert "ACME" not in logged and "anna" not in logged and SECRET not in logged
    # The backoff doubles and is capped.
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 7, 8, 30)] == [
        60,
        120,
        240,
        3600,
        3600,
        3600,
    ]


def test_an_unreachable_gateway_is_a_failure_to_try_again(cloud_app: APIFlask) -> None:
    database = database_of(cloud_app)
    (note,) = store(database, add_customer(database, "anna@example.com"))
    closed = Gateway()
    url = closed.url
    closed.close()  # nothing listens there any more
    pusher = Pusher(database, WebhookChannel(url, SECRET, timeout=2.0))
    assert pusher.push_due(T0) == 1 and pusher.failed == 1
    assert at(row_of(database, note).next_push_at) == T0 + BACKOFF


@pytest.mark.postgres
def test_two_pushers_on_postgresql_never_push_the_same_notification(
    migrated_postgres_url: URL, gateway: Gateway
) -> None:
    database = Database(migrated_postgres_url.render_as_string(hide_password=False))
    try:
        ids = store(database, add_customer(database, "anna@example.com"), n=60)
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def work() -> None:
            pusher = Pusher(database, WebhookChannel(gateway.url, SECRET), batch=3)
            try:
                start.wait(WAIT)
                while pusher.push_due(T0):
                    pass
            except BaseException as exc:  # reported below, with the thread's error
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert errors == []
        assert sorted(gateway.ids()) == ids  # each once: none twice, none missed
        with database.sessions() as session:
            assert session.scalars(select(Notification.push_attempts).distinct()).all() == [1]
    finally:
        database.dispose()


def test_cloud_ups_background_pusher_pushes_to_the_configured_gateway(
    cloud_app: APIFlask, gateway: Gateway
) -> None:
    assert background in up.BACKGROUND_TASKS  # registered when the app is built
    database = database_of(cloud_app)
    stored = dt.datetime.now(dt.UTC)  # the task runs on the clock
    (note,) = store(database, add_customer(database, "anna@example.com"), now=stored)
    config = {"PUSH_URL": gateway.url, "PUSH_SECRET": SECRET}

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        context = up.Background(None, None, loop, config)  # type: ignore[arg-type]
        task = asyncio.ensure_future(background(database, stop, context))
        await asyncio.to_thread(gateway.wait_for, 1)
        stop.set()
        await asyncio.wait_for(task, WAIT)

    asyncio.run(main())
    assert gateway.ids() == [note]


def test_push_settings_are_refused_at_start_in_one_line(tmp_path: Path) -> None:
    def settings(**values: str) -> dict[str, Any]:
        return load_config(environ={}, overrides={"data_dir": str(tmp_path), **values})

    refused = {
        "http://push.bank.example/v1": "push_url must be https:// (plain http only to this "
        "machine)",
        "ftp://push.bank.example/": "push_url must be an https:// URL",
        "https://": "push_url must be an https:// URL",
    }
    for url, message in refused.items():
        with pytest.raises(ConfigError) as caught:
            settings(push_url=url, push_secret=SECRET)
        assert str(caught.value) == message
    with pytest.raises(ConfigError, match=r"^push_url is set but push_secret is not"):
        settings(push_url="https://push.bank.example/v1")
    env = {"BANKIOT_PUSH_URL": "https://push.bank.example/v1", "BANKIOT_PUSH_SECRET": SECRET}
    config = load_config(environ=env, overrides={"data_dir": str(tmp_path)})
    channel = channel_from(config)
    assert isinstance(channel, WebhookChannel)
    assert channel.where == "https://push.bank.example"
    assert isinstance(
        channel_from(settings(push_url="http://[::1]:9/x", push_secret="s")), (WebhookChannel)
    )
    assert isinstance(channel_from(settings()), LoggingChannel)  # unset: only logged
