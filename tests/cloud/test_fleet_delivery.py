"""Configuration and commands from the cloud to a gateway and back, on SQLite and PostgreSQL.

The gateway is simulated with the portable core (``ingest_support.SimGateway``): it opens
what the cloud seals with ``downlink.open_downlink`` and its own replay window, and reports
with the batcher's result and running records, which go through the real ingest pipeline.
The end-to-end test publishes through a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import aiomqtt
import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from bankiot_core import downlink
from bankiot_core.batch import STATUS_ACCEPTED, STATUS_DONE, STATUS_REFUSED
from bankiot_core.errors import AuthenticationError, ReplayError
from cloud.audit import AuditEvent
from cloud.db import Database
from cloud.fleet import commands, configs, delivery, supervisor
from cloud.fleet.control_models import Command, DeviceConfig
from cloud.fleet.models import Branch, Device
from cloud.ingest.pipeline import Ingest
from tests.cloud.ingest_support import SimGateway, migrated

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
POLICY = delivery.Policy(resend_after=dt.timedelta(seconds=30), max_wait=dt.timedelta(minutes=4))


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


def add_gateways(database: Database, *uids: str) -> dict[str, int]:
    with database.sessions() as db:
        branch = Branch(code="north", name="North")
        db.add(branch)
        db.flush()
        devices = [
            Device(uid=uid, kind="gateway", branch_id=branch.id, status="active") for uid in uids
        ]
        db.add_all(devices)
        db.commit()
        return {d.uid: d.id for d in devices}


def uplink(ingest: Ingest, gateway: SimGateway) -> None:
    """Send what the gateway has queued; apply the acknowledgements it gets."""
    for _seq, envelope in gateway.outbox():
        result = ingest.handle(envelope, gateway.aad, "mqtt", gateway.gateway_id)
        assert result.status == "accepted" and result.ack is not None, result
        gateway.receive(result.ack)


def say_hello(ingest: Ingest, gateway: SimGateway) -> None:
    gateway.hear_many(1)
    gateway.flush()
    uplink(ingest, gateway)


def issue(database: Database, device_id: int, name: str, now: dt.datetime = T0, **kw) -> int:
    with database.sessions() as db:
        device = db.get(Device, device_id)
        assert device is not None
        group = commands.issue(db, [device], name, {}, actor="operator:ops", now=now, **kw)
        db.commit()
        return commands.group_members(db, group.id)[0].id


def configure(database: Database, device_id: int, settings: dict) -> int:
    with database.sessions() as db:
        device = db.get(Device, device_id)
        assert device is not None
        (row,) = configs.set_desired(db, [device], settings, actor="operator:ops", now=T0)
        db.commit()
        return row.revision


def prepare(database: Database, ingest: Ingest, now: dt.datetime) -> list[delivery.Outgoing]:
    with database.sessions() as db:
        out = delivery.prepare(db, ingest.key_source, now, POLICY)
        db.commit()
        return out


def opened(gateway: SimGateway, outgoing: list[delivery.Outgoing]) -> list[object]:
    """What the gateway reads in each message (every one must open)."""
    messages = []
    for item in outgoing:
        assert item.topic == "devices/%s/down" % gateway.gateway_id
        messages.append(
            downlink.open_downlink(item.payload, gateway.ring, gateway.window, item.topic).message
        )
    return messages


def command_row(database: Database, command_id: int) -> Command:
    with database.sessions() as db:
        command = db.get(Command, command_id)
        assert command is not None
        return command


def test_a_command_reaches_its_gateway_sealed_and_its_result_comes_back(
    database: Database,
) -> None:
    ids = add_gateways(database, "gw-1")
    gateway = SimGateway("gw-1")
    ingest = Ingest(database, gateway.keys())
    say_hello(ingest, gateway)
    command_id = issue(database, ids["gw-1"], "reboot")
    assert opened(gateway, prepare(database, ingest, T0)) == [
        downlink.Command(command_id, "reboot", {})
    ]
    assert command_row(database, command_id).status == "sent"
    assert prepare(database, ingest, T0 + dt.timedelta(seconds=5)) == []  # not due yet
    gateway._queue(
        gateway.batcher.add_result(command_id, STATUS_ACCEPTED, "rebooting", gateway.now_ms)
    )
    gateway.flush()
    uplink(ingest, gateway)
    assert command_row(database, command_id).status == "accepted"
    assert prepare(database, ingest, T0 + dt.timedelta(hours=1)) == []  # accepted: no resend
    gateway._queue(gateway.batcher.add_result(command_id, STATUS_DONE, "back", gateway.now_ms))
    gateway.flush()
    uplink(ingest, gateway)
    done = command_row(database, command_id)
    assert (done.status, done.detail, done.finished_at is not None) == ("done", "back", True)


def test_unanswered_commands_are_resent_with_back_off_until_the_deadline(
    database: Database,
) -> None:
    ids = add_gateways(database, "gw-1")
    gateway = SimGateway("gw-1")
    ingest = Ingest(database, gateway.keys())
    say_hello(ingest, gateway)
    command_id = issue(database, ids["gw-1"], "rescan", timeout=dt.timedelta(minutes=10))
    sent_at = []
    for second in range(0, 600, 5):
        now = T0 + dt.timedelta(seconds=second)
        for message in opened(gateway, prepare(database, ingest, now)):
            assert message == downlink.Command(command_id, "rescan", {})
            sent_at.append(second)
    # 30 s, then doubling (60, 120, 240) and capped at 4 minutes by the policy.
    assert sent_at == [0, 30, 90, 210, 450]
    with database.sessions() as db:
        assert commands.expire(db, T0 + dt.timedelta(minutes=10)) == 1
        db.commit()
    assert command_row(database, command_id).status == "timed_out"
    assert prepare(database, ingest, T0 + dt.timedelta(hours=1)) == []


def test_a_gateway_runs_each_command_id_once_even_when_resent(database: Database) -> None:
    ids = add_gateways(database, "gw-1")
    gateway = SimGateway("gw-1")
    ingest = Ingest(database, gateway.keys())
    say_hello(ingest, gateway)
    command_id = issue(database, ids["gw-1"], "rescan")
    first = prepare(database, ingest, T0)
    again = prepare(database, ingest, T0 + dt.timedelta(seconds=30))
    log = downlink.CommandLog()
    ran = []
    for message in opened(gateway, first + again):
        assert isinstance(message, downlink.Command)
        if not log.seen(message.id):
            log.record(message.id)
            ran.append(message.id)
    assert ran == [command_id]
    # Each send has its own downlink number: a captured copy replayed is refused.
    with pytest.raises(ReplayError):
        downlink.open_downlink(first[0].payload, gateway.ring, gateway.window, first[0].topic)


def test_configuration_is_pushed_until_the_gateway_reports_running_it(
    database: Database,
) -> None:
    ids = add_gateways(database, "gw-1")
    gateway = SimGateway("gw-1")
    ingest = Ingest(database, gateway.keys())
    revision = configure(database, ids["gw-1"], {"rate_per_min": 30, "uplink": "coap"})
    assert prepare(database, ingest, T0) == []  # never heard from: nothing to seal with yet
    say_hello(ingest, gateway)
    (config,) = opened(gateway, prepare(database, ingest, T0))
    assert config == downlink.Config(revision, {"rate_per_min": 30, "uplink": "coap"})
    # A newer revision is sent at once, not after the back-off of the old one.
    revision = configure(database, ids["gw-1"], {"rate_per_min": 60})
    (config,) = opened(gateway, prepare(database, ingest, T0 + dt.timedelta(seconds=1)))
    assert config == downlink.Config(2, {"rate_per_min": 60})
    gateway._queue(gateway.batcher.add_running("1.4.0", revision, gateway.now_ms))
    gateway.flush()
    uplink(ingest, gateway)
    with database.sessions() as db:
        row = db.get(DeviceConfig, ids["gw-1"])
        device = db.get(Device, ids["gw-1"])
        assert row is not None and device is not None
        assert configs.config_out(device, row)["in_sync"]
        assert device.firmware_version == "1.4.0"
    assert prepare(database, ingest, T0 + dt.timedelta(hours=1)) == []


def test_a_gateway_cannot_report_on_another_gateways_command(database: Database) -> None:
    ids = add_gateways(database, "gw-1", "gw-2")
    one, two = SimGateway("gw-1"), SimGateway("gw-2")
    keys = one.keys()
    two.keys(keys)
    ingest = Ingest(database, keys)
    command_id = issue(database, ids["gw-1"], "factory_reset")
    two._queue(two.batcher.add_result(command_id, STATUS_REFUSED, "not mine", two.now_ms))
    two.flush()
    uplink(ingest, two)
    assert command_row(database, command_id).status == "pending"
    with database.sessions() as db:
        refused = db.scalars(
            select(AuditEvent).where(AuditEvent.action == "command.report_refused")
        ).all()
        assert [(e.actor, e.target) for e in refused] == [
            ("device:gw-2", "command:%d" % command_id)
        ]


def test_revoked_gateways_get_nothing(database: Database) -> None:
    ids = add_gateways(database, "gw-1")
    gateway = SimGateway("gw-1")
    keys = gateway.keys()
    ingest = Ingest(database, keys)
    say_hello(ingest, gateway)
    issue(database, ids["gw-1"], "reboot")
    keys.revoke("gw-1")
    assert prepare(database, ingest, T0) == []


def test_the_supervisor_publishes_through_the_broker(database: Database, mosquitto) -> None:
    ids = add_gateways(database, "gw-1")
    gateway = SimGateway("gw-1")
    ingest = Ingest(database, gateway.keys())
    say_hello(ingest, gateway)
    command_id = issue(database, ids["gw-1"], "collect_diagnostics", now=dt.datetime.now(dt.UTC))
    topic = downlink.downlink_topic("gw-1")

    async def scenario() -> list[object]:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="gw-1") as client:
            await client.subscribe(topic, qos=1)
            publisher = supervisor.MqttPublisher(mosquitto.host, mosquitto.port)
            stop = asyncio.Event()
            task = asyncio.create_task(
                supervisor.supervise(database, ingest.key_source, publisher, stop, interval=0.2)
            )
            message = await asyncio.wait_for(anext(aiter(client.messages)), timeout=60)
            stop.set()
            await task
            payload = bytes(message.payload)  # type: ignore[arg-type]
            return [downlink.open_downlink(payload, gateway.ring, gateway.window, topic).message]

    assert asyncio.run(scenario()) == [downlink.Command(command_id, "collect_diagnostics", {})]
    assert command_row(database, command_id).status == "sent"


def test_ingest_marks_the_gateway_seen_and_the_inventory_shows_its_uplink(
    database: Database,
) -> None:
    from cloud.fleet.inventory import Filters, list_devices

    ids = add_gateways(database, "gw-1", "gw-2")
    gateway = SimGateway("gw-1", resource="batches")  # a CoAP gateway
    ingest = Ingest(database, gateway.keys())
    gateway.hear_many(1)
    gateway.flush()
    for _seq, envelope in gateway.outbox():
        assert ingest.handle(envelope, "batches", "coap").status == "accepted"
    with database.sessions() as db:
        devices = {d["uid"]: d for d in list_devices(db, Filters())["devices"]}
        seen = db.get(Device, ids["gw-1"])
        assert seen is not None and seen.last_seen_at is not None
    assert (devices["gw-1"]["uplink"], devices["gw-2"]["uplink"]) == ("coap", None)
    assert devices["gw-1"]["last_seen_at"] is not None and devices["gw-2"]["last_seen_at"] is None


def uplink_coap(ingest: Ingest, gateway: SimGateway) -> None:
    """Send what the gateway has queued over CoAP; apply the acknowledgements."""
    for _seq, envelope in gateway.outbox():
        result = ingest.handle(envelope, "batches", "coap")
        assert result.status == "accepted" and result.ack is not None, result
        gateway.receive(result.ack, "batches")


def prepare_for(
    database: Database, ingest: Ingest, now: dt.datetime, budget: int | None = None
) -> list[delivery.Outgoing]:
    with database.sessions() as db:
        out = delivery.prepare_for(db, ingest.key_source, "gw-1", "batches", now, POLICY, budget)
        db.commit()
        return out


def test_a_coap_gateway_gets_its_messages_in_responses_with_the_same_back_off(
    database: Database,
) -> None:
    ids = add_gateways(database, "gw-1")
    gateway = SimGateway("gw-1", resource="batches")
    ingest = Ingest(database, gateway.keys())
    gateway.hear_many(1)
    gateway.flush()
    uplink_coap(ingest, gateway)
    command_id = issue(database, ids["gw-1"], "rescan")
    revision = configure(database, ids["gw-1"], {"rate_per_min": 30})
    assert prepare(database, ingest, T0) == []  # its newest batch came by CoAP: no MQTT
    first = prepare_for(database, ingest, T0)
    assert {item.topic for item in first} == {"batches"}
    messages = [
        downlink.open_downlink(item.payload, gateway.ring, gateway.window, "batches").message
        for item in first
    ]
    assert messages == [
        downlink.Command(command_id, "rescan", {}),
        downlink.Config(revision, {"rate_per_min": 30}),
    ]
    assert command_row(database, command_id).status == "sent"
    assert prepare_for(database, ingest, T0 + dt.timedelta(seconds=29)) == []  # back-off
    again = prepare_for(database, ingest, T0 + dt.timedelta(seconds=30))
    assert len(again) == 2
    # Bound to the resource: it does not open as if it came on the MQTT topic.
    with pytest.raises(AuthenticationError):
        downlink.open_downlink(again[0].payload, gateway.ring, gateway.window, gateway_topic())
    # Back on MQTT (a newer batch by MQTT): the supervisor serves it again, on the topic.
    gateway.resource = None
    say_hello(ingest, gateway)
    published = prepare(database, ingest, T0 + dt.timedelta(seconds=90))
    assert {item.topic for item in published} == {gateway_topic()}
    assert len(published) == 2


def gateway_topic() -> str:
    return downlink.downlink_topic("gw-1")


def test_what_does_not_fit_in_a_response_stays_due(database: Database) -> None:
    ids = add_gateways(database, "gw-1")
    gateway = SimGateway("gw-1", resource="batches")
    ingest = Ingest(database, gateway.keys())
    gateway.hear_many(1)
    gateway.flush()
    uplink_coap(ingest, gateway)
    command_ids = [issue(database, ids["gw-1"], "rescan") for _ in range(3)]
    assert prepare_for(database, ingest, T0, budget=1) == []
    assert {command_row(database, c).status for c in command_ids} == {"pending"}
    assert len(prepare_for(database, ingest, T0)) == 3
    with pytest.raises(ValueError, match="whole configuration"):
        delivery.ResponseDownlinks(database, ingest.key_source, budget=4096)


def test_unknown_and_never_heard_gateways_get_nothing_in_a_response(database: Database) -> None:
    ids = add_gateways(database, "gw-1")
    ingest = Ingest(database, SimGateway("gw-1").keys())
    issue(database, ids["gw-1"], "reboot")
    assert prepare_for(database, ingest, T0) == []  # never sent a batch: no key version
    with database.sessions() as db:
        assert delivery.prepare_for(db, ingest.key_source, "gw-x", "batches", T0) == []
