"""``bankiot events run``, the worker on its own: with a broker configured it publishes a
rule's offer sealed for the kiosk (QoS 1, a connection of its own), as ``cloud up`` does; a
subscriber on a private Mosquitto opens it with the kiosk's key. Without a broker it says
so once at start. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from apiflask import APIFlask
from click.testing import CliRunner
from sqlalchemy import select

from bankiot_core import downlink
from bankiot_core.batch import KIOSK_CHECKIN, KioskEvent
from cloud import events
from cloud.events.cli import events as events_cli
from cloud.events.library import RuleLibrary
from cloud.events.models import RuleCursor
from cloud.events.stats import WorkerStats
from cloud.ingest import service
from tests.cloud.test_events_up import offer_rules
from tests.cloud.test_events_worker import (  # noqa: F401  (``branch`` is a fixture)
    ANNA,
    Kiosk,
    branch,
    database_of,
    travel_campaign,
)
from tests.support.mosquitto import MosquittoBroker


def cursor_exists(app: APIFlask) -> bool:
    with database_of(app).sessions() as session:
        return session.scalar(select(RuleCursor.name)) is not None


async def offer_from_the_standalone_worker(
    app: APIFlask, kiosk: Kiosk, folder: Path, broker: MosquittoBroker, stats: WorkerStats
) -> downlink.Downlink:
    topic = downlink.downlink_topic("kiosk-n1")
    stop = asyncio.Event()
    worker = asyncio.ensure_future(
        events.standalone(
            database_of(app),
            RuleLibrary(folder),
            kiosk.ingest.key_source,
            (broker.host, broker.port, None),
            stop,
            stats,
        )
    )
    try:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.subscribe(topic, qos=1)
            async with asyncio.timeout(90):  # a bound under load, not a measurement
                while not await asyncio.to_thread(cursor_exists, app):
                    await asyncio.sleep(0.05)  # the first pass puts the cursor at the newest
                now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
                await asyncio.to_thread(kiosk.send, KioskEvent(now_ms, KIOSK_CHECKIN, 1, ANNA, ""))
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    ring, window = kiosk.gateway.ring, kiosk.gateway.window
                    return downlink.open_downlink(message.payload, ring, window, topic)
    finally:
        stop.set()
        await worker
    raise AssertionError("no downlink message")


@pytest.mark.usefixtures("branch")  # kiosk-n1 at branch north; Anna, who consents
def test_the_standalone_worker_publishes_a_rules_offer_sealed_for_the_kiosk(
    cloud_app: APIFlask, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    travel = travel_campaign(cloud_app, dt.datetime.now(dt.UTC))
    folder = offer_rules(tmp_path)
    stats = WorkerStats()
    opened = asyncio.run(
        offer_from_the_standalone_worker(cloud_app, Kiosk(cloud_app), folder, mosquitto, stats)
    )
    assert opened.kind == downlink.KIND_OFFERS
    assert opened.message.wearable == ANNA
    assert [(o.id, o.title) for o in opened.message.items] == [(travel, "Travel card")]
    assert stats.snapshot()["action_failures"] == 0


def test_events_run_says_once_whether_offers_are_published(
    cloud_app: APIFlask, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Any] = []

    def once(serve: Any) -> None:
        async def main() -> None:
            stop = asyncio.Event()
            stop.set()  # the worker returns at once: only the start is under test
            await serve(stop)

        asyncio.run(main())
        ran.append(True)

    monkeypatch.setattr(service, "run_until_signalled", once)
    env = {"BANKIOT_DATABASE_URL": str(database_of(cloud_app).url)}
    data = ["--data-dir", cloud_app.config["DATA_DIR"]]
    quiet = CliRunner().invoke(events_cli, ["run", *data], env=env)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output.splitlines()[1:] == [
        "no broker configured (--broker or broker_url): offers are only logged",
        "no push gateway configured (push_url): notifications are only logged",
    ]
    url = "mqtt://%s:%d" % (mosquitto.host, mosquitto.port)
    loud = CliRunner().invoke(events_cli, ["run", *data, "--broker", url], env=env)
    assert loud.exit_code == 0, loud.output
    assert loud.output.splitlines()[1:] == [
        "publishing offers to %s:%d" % (mosquitto.host, mosquitto.port),
        "no push gateway configured (push_url): notifications are only logged",
    ]
    pushing = {**env, "BANKIOT_PUSH_URL": "https://push.bank.example/v1?token=x"}
    unsigned = CliRunner().invoke(events_cli, ["run", *data], env=pushing)
    assert (unsigned.exit_code, unsigned.output.strip()) == (
        1,
        "Error: push_url is set but push_secret is not: pushes must be signed",
    )
    signed = {**pushing, "BANKIOT_PUSH_SECRET": "s3cret"}
    pushes = CliRunner().invoke(events_cli, ["run", *data], env=signed)
    assert pushes.exit_code == 0, pushes.output
    assert pushes.output.splitlines()[-1] == "pushing notifications to https://push.bank.example"
    bad = CliRunner().invoke(events_cli, ["run", *data, "--broker", "http://x"], env=env)
    assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1
    assert ran == [True, True, True]
