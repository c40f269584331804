"""The MQTT ingest worker against a real private Mosquitto, on SQLite and PostgreSQL.

Simulated gateways (the portable core's batcher, sealing, queue and downlink) publish on
``devices/<id>/up`` with QoS 1 and apply the acknowledgements the worker publishes on
``devices/<id>/down``; every batch must leave every gateway queue and be stored once, also
with two workers in one shared-subscription group and across a broker killed mid-stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import aiomqtt
import pytest
from sqlalchemy.engine import URL

from cloud.db import Database
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.mqtt_worker import MqttWorker, shared_filter, topic_gateway
from cloud.ingest.pipeline import Ingest
from tests.cloud.ingest_support import (
    SimGateway,
    drive_over_mqtt,
    migrated,
    receipt_count,
    stored_readings,
)
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def fleet(count: int, readings: int) -> tuple[list[SimGateway], MemoryKeySource]:
    """``count`` gateways with fresh ids, each with ``readings`` readings queued."""
    tag = uuid.uuid4().hex[:6]
    keys = MemoryKeySource()
    gateways = []
    for i in range(count):
        gw = SimGateway("gw-%s-%d" % (tag, i))
        gw.hear_many(readings)
        gw.hear(bytes.fromhex("A4C13800000B"), "button", "press", "event")
        gw.flush()
        gw.keys(keys)
        gateways.append(gw)
    return gateways, keys


async def run_workers(
    workers: list[MqttWorker], body: Callable[[], object], timeout: float = 100
) -> None:
    """Run ``workers`` until they are subscribed, await ``body()``, then stop them."""
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(w.run(stop)) for w in workers]
    try:
        async with asyncio.timeout(timeout):
            for worker in workers:
                await worker.subscribed.wait()
            await body()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)


def assert_stored_once(database: Database, gateways: list[SimGateway]) -> None:
    for gw in gateways:
        assert len(gw.queue) == 0, gw.gateway_id
    expected = Counter(item for gw in gateways for item in gw.accepted)
    assert Counter(stored_readings(database)) == expected


def test_topics_and_groups() -> None:
    assert shared_filter("ingest") == "$share/ingest/devices/+/up"
    with pytest.raises(ValueError, match="group"):
        shared_filter("a/b")
    assert topic_gateway("devices/gw-1/up") == "gw-1"
    assert [topic_gateway(t) for t in ("devices/gw-1/down", "devices//up", "x/gw/up")] == [
        None,
        None,
        None,
    ]


def test_gateways_deliver_through_mosquitto_and_every_batch_is_acknowledged(
    database: Database, mosquitto: MosquittoBroker
) -> None:
    gateways, keys = fleet(3, readings=40)
    ingest = Ingest(database, keys)
    worker = MqttWorker(ingest, mosquitto.host, mosquitto.port, group=uuid.uuid4().hex[:8])

    async def body() -> None:
        await asyncio.gather(
            *(drive_over_mqtt(gw, mosquitto.host, mosquitto.port) for gw in gateways)
        )

    asyncio.run(run_workers([worker], body))
    assert_stored_once(database, gateways)
    batches = sum(gw.acks for gw in gateways)
    assert receipt_count(database) == ingest.stats.batches("accepted") <= batches
    assert ingest.stats.batches("rejected") == 0


def test_two_workers_in_one_group_share_the_load_and_store_each_batch_once(
    database: Database, mosquitto: MosquittoBroker
) -> None:
    gateways, keys = fleet(4, readings=32)
    ingest = Ingest(database, keys)
    group = uuid.uuid4().hex[:8]
    workers = [MqttWorker(ingest, mosquitto.host, mosquitto.port, group=group) for _ in range(2)]

    async def body() -> None:
        await asyncio.gather(
            *(drive_over_mqtt(gw, mosquitto.host, mosquitto.port) for gw in gateways)
        )

    asyncio.run(run_workers(workers, body))
    assert_stored_once(database, gateways)
    assert all(w.processed > 0 for w in workers)
    assert sum(w.processed for w in workers) == ingest.stats.batches()


class SlowIngest(Ingest):
    """Ingest on a database that takes 20 ms per transaction."""

    def handle_many(self, envelopes):  # type: ignore[override]
        time.sleep(0.02)
        return super().handle_many(envelopes)


def test_a_broker_killed_mid_stream_loses_and_duplicates_nothing(
    database: Database, mosquitto_factory: Callable[..., MosquittoBroker]
) -> None:
    broker = mosquitto_factory()
    gateways, keys = fleet(2, readings=160)
    ingest = SlowIngest(database, keys)  # a slow database: the restart lands mid-stream
    worker = MqttWorker(ingest, broker.host, broker.port, group="restart")

    async def body() -> None:
        sending = [
            asyncio.ensure_future(drive_over_mqtt(gw, broker.host, broker.port, seconds=60))
            for gw in gateways
        ]
        while ingest.stats.batches("accepted") < 3:  # mid-stream
            await asyncio.sleep(0.01)
        await asyncio.to_thread(broker.restart, kill=True)
        at_restart.append(receipt_count(database))
        await asyncio.gather(*sending)

    at_restart: list[int] = []
    asyncio.run(run_workers([worker], body, timeout=90))
    assert_stored_once(database, gateways)
    assert receipt_count(database) == ingest.stats.batches("accepted") > at_restart[0]


class Killed(Exception):
    """The worker process died."""


def test_a_worker_killed_between_commit_and_ack_is_covered_by_the_gateways_resend(
    database: Database, mosquitto: MosquittoBroker
) -> None:
    gateways, keys = fleet(1, readings=24)
    [gw] = gateways
    ingest = Ingest(database, keys)
    group = uuid.uuid4().hex[:8]

    class DiesAfterCommit(MqttWorker):
        """Commits a batch, then dies before publishing its acknowledgement."""

        async def _judge(self, items, stop):  # type: ignore[override]
            await super()._judge(items, stop)
            raise Killed("after the commit, before the ack")

    doomed = DiesAfterCommit(ingest, mosquitto.host, mosquitto.port, group=group)
    survivor = MqttWorker(ingest, mosquitto.host, mosquitto.port, group=group)

    async def scenario() -> None:
        crashed = asyncio.ensure_future(doomed.run())
        await asyncio.wait_for(doomed.subscribed.wait(), 60)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            _seq, envelope = gw.outbox()[0]
            await client.publish(gw.aad, envelope, qos=1)
        with pytest.raises(Killed):
            await asyncio.wait_for(crashed, 60)
        assert receipt_count(database) == 1 and gw.acks == 0  # committed, never acknowledged
        await run_workers([survivor], lambda: drive_over_mqtt(gw, mosquitto.host, mosquitto.port))

    asyncio.run(scenario())
    assert_stored_once(database, gateways)
    assert ingest.stats.batches("duplicate") >= 1
