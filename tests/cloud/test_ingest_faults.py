"""Faults that fit in seconds: the database away for a while (a failing session factory, and
PostgreSQL's connections killed with ``pg_terminate_backend`` mid-stream). Nothing is lost,
nothing is stored twice, and the transports tell senders to come back (MQTT: the worker
holds the message and retries; HTTP: 503 with Retry-After; CoAP: 5.03 with Max-Age)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bankiot_core import cose
from cloud.db import Database
from cloud.ingest import set_key_source
from cloud.ingest.coap_server import response_for
from cloud.ingest.mqtt_worker import MqttWorker
from cloud.ingest.pipeline import Envelope, Ingest, Result
from tests.cloud.ingest_support import SimGateway, drive_over_mqtt, migrated, url_text
from tests.cloud.test_ingest_mqtt import assert_stored_once, fleet, run_workers
from tests.support.mosquitto import MosquittoBroker


class Outage:
    """Makes ``database.sessions()`` fail like a database that does not answer, while on."""

    def __init__(self, database: Database) -> None:
        self.on = False
        self.refused = 0
        self._real = database.sessions
        database.sessions = self  # type: ignore[assignment]

    def __call__(self) -> Session:
        if self.on:
            self.refused += 1
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        return self._real()


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def test_a_database_outage_holds_the_worker_back_and_loses_nothing(
    database: Database, mosquitto: MosquittoBroker
) -> None:
    gateways, keys = fleet(3, readings=64)
    ingest = Ingest(database, keys)
    outage = Outage(database)
    worker = MqttWorker(
        ingest, mosquitto.host, mosquitto.port, group=uuid.uuid4().hex[:8], receive_maximum=4
    )

    def published() -> int:
        return sum(gw.queue.counters()["sent"] for gw in gateways)

    async def body() -> None:
        outage.on = True
        sending = [
            asyncio.ensure_future(drive_over_mqtt(gw, mosquitto.host, mosquitto.port))
            for gw in gateways
        ]
        # Refusals, and more batches published than the worker may hold: how soon both come
        # depends on the machine's load, so wait for them rather than assume.
        while outage.refused < 5 or published() <= worker.receive_maximum:
            await asyncio.sleep(0.02)
        assert worker.processed == 0  # it holds the first messages and takes no other
        # MQTT 5 Receive Maximum with PUBACK after the commit: the broker keeps the rest.
        assert 0 < worker.unacknowledged() <= worker.receive_maximum < published()
        outage.on = False
        await asyncio.gather(*sending)

    asyncio.run(run_workers([worker], body))
    assert_stored_once(database, gateways)
    assert ingest.stats.batches("unavailable") >= 5


def test_postgresql_connections_killed_mid_stream_lose_nothing(
    postgres_url: URL, mosquitto: MosquittoBroker
) -> None:
    url = url_text(postgres_url)
    admin = create_engine(url)
    gateways, keys = fleet(3, readings=48)

    def kill_connections() -> int:
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            conn.commit()
        return int(killed)

    with migrated(postgres_url) as database:
        ingest = Ingest(database, keys)
        worker = MqttWorker(ingest, mosquitto.host, mosquitto.port, group=uuid.uuid4().hex[:8])
        killed: list[int] = []

        async def body() -> None:
            sending = asyncio.gather(
                *(drive_over_mqtt(gw, mosquitto.host, mosquitto.port) for gw in gateways)
            )
            for goal in (2, 5, 8):
                while ingest.stats.batches("accepted") < goal:
                    await asyncio.sleep(0.005)
                killed.append(await asyncio.to_thread(kill_connections))
            await sending

        asyncio.run(run_workers([worker], body))
        assert_stored_once(database, gateways)
        assert sum(killed) >= 1
    admin.dispose()


def test_http_says_503_with_retry_after_while_the_database_is_away(
    cloud_app: APIFlask, client: FlaskClient
) -> None:
    gw = SimGateway("gw-503", resource="batches")
    set_key_source(cloud_app, gw.keys())
    outage = Outage(cloud_app.extensions["bankiot.db"])
    gw.hear_many(4)
    gw.flush()
    [(_s, envelope)] = gw.outbox()
    outage.on = True
    response = client.post("/ingest/v1/batches", data=envelope, content_type="application/cose")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    outage.on = False
    response = client.post("/ingest/v1/batches", data=envelope, content_type="application/cose")
    assert response.status_code == 200 and gw.receive(response.data) == 1


def test_coap_says_503_with_max_age_when_the_database_is_away() -> None:
    message = response_for(Result("unavailable", None, "", "database unavailable"))
    assert (str(message.code), message.opt.max_age, message.payload) == (
        "5.03 Service Unavailable",
        5,
        b"database unavailable",
    )


def test_concurrent_workers_threads_never_repeat_a_downlink_number(database: Database) -> None:
    """Many threads acknowledging one gateway's batches: every downlink number distinct."""
    gw = SimGateway("gw-many", max_readings=1)
    gw.hear_many(24)
    gw.flush()
    ingest = Ingest(database, gw.keys())
    sent = gw.outbox()
    acks: list[bytes] = []
    lock = threading.Lock()

    def send(items: list[tuple[int, bytes]]) -> None:
        for _seq, envelope in items:
            result = ingest.handle(envelope, gw.aad, "mqtt", gw.gateway_id)
            assert result.ack is not None, result
            with lock:
                acks.append(result.ack)

    threads = [threading.Thread(target=send, args=(sent[i::4] + sent[:2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = [cose.peek_envelope(ack).seq for ack in acks]
    assert len(numbers) == len(set(numbers)) == len(sent) + 8


def test_concurrent_groups_over_the_same_gateways_do_not_deadlock(database: Database) -> None:
    """Two workers' groups hold batches of the same gateways in opposite orders; each group
    is written in (gateway, key version, sequence) order, so neither waits for the other
    in a cycle (PostgreSQL would abort one as a deadlock, SQLite serialises them)."""
    gateways = [SimGateway("gw-dl-a", max_readings=2), SimGateway("gw-dl-b", max_readings=2)]
    keys = gateways[0].keys()
    gateways[1].keys(keys)
    ingest = Ingest(database, keys)
    for gw in gateways:
        gw.hear_many(40)
        gw.flush()
    envelopes = [
        Envelope(envelope, gw.aad, "mqtt", gw.gateway_id)
        for gw in gateways
        for _seq, envelope in gw.outbox()
    ]
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def worker(group: list[Envelope]) -> None:
        start.wait()
        for i in range(0, len(group), 8):
            outcomes.extend(r.status for r in ingest.handle_many(group[i : i + 8]))

    threads = [
        threading.Thread(target=worker, args=(envelopes,)),
        threading.Thread(target=worker, args=(envelopes[::-1],)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(outcomes) == {"accepted": len(envelopes), "duplicate": len(envelopes)}
