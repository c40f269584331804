"""A rule's offer under ``bankiot cloud up``: the event worker gets ``up``'s ``Background``
(ingest's keys, an MQTT publisher on ``up``'s loop), seals the OFFERS message for the kiosk
and publishes it from its thread; a subscriber on the broker sees it on the kiosk's
downlink topic and opens it with the kiosk's key. Assembled as ``up`` assembles it: the
worker's pass in ``asyncio.to_thread``, the publisher (``supervisor.MqttPublisher``) on the
running loop, a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import aiomqtt
import pytest
from apiflask import APIFlask

from bankiot_core import downlink
from bankiot_core.batch import KIOSK_CHECKIN, KioskEvent
from cloud import events
from cloud.apps import background as apps_background
from cloud.events.library import RuleLibrary
from cloud.events.worker import EventWorker
from cloud.fleet.supervisor import MqttPublisher
from cloud.up import Background, _guard, _takes_context
from tests.cloud.test_events_worker import (  # noqa: F401  (``branch`` is a fixture)
    ANNA,
    NOW,
    Kiosk,
    at_ms,
    branch,
    database_of,
    travel_campaign,
)
from tests.support.mosquitto import MosquittoBroker

RULE = (
    '[[rule]]\nid = "travel-at-kiosk"\nversion = 1\npurpose = "presence_branch"\n'
    'on = "kiosk_checkin"\n[[rule.actions]]\ndo = "offer"\noffer = "travel"\n'
)


def offer_rules(tmp_path: Path) -> Path:
    """A rules folder with ``RULE``: offer "travel" when a customer checks in."""
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "offer.toml").write_text(RULE, encoding="utf-8")
    return folder


async def offer_through_the_broker(
    app: APIFlask, kiosk: Kiosk, folder: Path, broker: MosquittoBroker
) -> downlink.Downlink:
    topic = downlink.downlink_topic("kiosk-n1")
    publisher = MqttPublisher(broker.host, broker.port)
    context = Background(kiosk.ingest.key_source, publisher, asyncio.get_running_loop())
    worker = EventWorker(database_of(app), RuleLibrary(folder), events.executor_for(context))
    try:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.subscribe(topic, qos=1)
            await asyncio.to_thread(worker.run_once, NOW)  # the cursor starts here
            kiosk.send(KioskEvent(at_ms(0), KIOSK_CHECKIN, 1, ANNA, ""))
            await asyncio.to_thread(worker.run_once, NOW + dt.timedelta(seconds=1))
            async with asyncio.timeout(15):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    assert message.topic.value == topic
                    ring, window = kiosk.gateway.ring, kiosk.gateway.window
                    return downlink.open_downlink(message.payload, ring, window, topic)
    finally:
        await publisher.close()
    raise AssertionError("no downlink message")


@pytest.mark.usefixtures("branch")  # kiosk-n1 at branch north; Anna, who consents
def test_a_rules_offer_reaches_the_kiosks_downlink_topic_sealed(
    cloud_app: APIFlask, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    travel = travel_campaign(cloud_app, NOW)
    kiosk = Kiosk(cloud_app)
    folder = offer_rules(tmp_path)
    opened = asyncio.run(offer_through_the_broker(cloud_app, kiosk, folder, mosquitto))
    assert opened.kind == downlink.KIND_OFFERS
    assert opened.message.wearable == ANNA
    assert [(o.id, o.title) for o in opened.message.items] == [(travel, "Travel card")]
    # Without ``up``'s context the worker's offers are only logged, as before.
    assert events.executor_for(None).offers is None


def test_up_passes_its_context_only_to_tasks_that_take_one() -> None:
    seen: list[str] = []

    async def two(database: object, stop: asyncio.Event) -> None:
        seen.append("two")

    async def three(database: object, stop: asyncio.Event, context: object = None) -> None:
        seen.append("three with context" if context is not None else "three without")

    async def main() -> None:
        context = Background(None, None, asyncio.get_running_loop())  # type: ignore[arg-type]
        for task in (two, three):
            await _guard(task, None, asyncio.Event(), context)  # type: ignore[arg-type]

    asyncio.run(main())
    assert seen == ["two", "three with context"]
    assert _takes_context(events.background)
    assert not _takes_context(apps_background)
