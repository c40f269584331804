"""Wearables bound to branches: stored sealed, never shown, delivered to the branch's gateways
as KEYS until they report running them; on SQLite and PostgreSQL.

The end-to-end test goes through a real Mosquitto: an operator binds a wearable over the
HTTP API, the fleet supervisor publishes the set, the portable core's gateway engine applies
it and decodes the wearable's encrypted frames (sealed independently with
``cryptography``'s AESCCM, bthome.io's recipe); unbinding stops that with the next delivery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import aiomqtt
import pytest
from apiflask import APIFlask
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from sqlalchemy import select

from bankiot_core import batch, cose, downlink
from bankiot_core.gateway import Gateway
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers
from cloud.audit import AuditEvent
from cloud.db import Database
from cloud.fleet import bindings, delivery, supervisor
from cloud.fleet.bindings_models import GatewayKeys, WearableBinding
from cloud.fleet.errors import Conflict, Invalid, NotFound
from cloud.fleet.models import Device
from cloud.identity.keys import KeyWrapper, load_wrapper
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import Ingest
from tests.cloud.people_actions import add_branch, add_device, add_operator, sign_in

SECRET = bytes(range(7, 39))  # the gateway's envelope secret (a test value)
WEARABLE = "54:48:E6:8F:80:A5"  # bthome.io's encryption example
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")  # its bind key
IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")  # the Core spec's sample IRK
T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
POLICY = delivery.Policy(resend_after=dt.timedelta(seconds=30), max_wait=dt.timedelta(minutes=4))


class KekKeySource(MemoryKeySource):
    """Gateways' keys in memory, and the cloud's KEK, as ``IdentityKeySource`` holds it."""

    def __init__(self, wrapper: KeyWrapper, rings: list[KeyRing]) -> None:
        super().__init__(rings)
        self.wrapper = wrapper


def database(app: APIFlask) -> Database:
    return app.extensions["bankiot.db"]


def data_dir(app: APIFlask) -> Path:
    return Path(app.config["DATA_DIR"])


def cipher(app: APIFlask) -> bindings.BindingCipher:
    return bindings.BindingCipher.from_wrapper(load_wrapper(data_dir(app), {}))


def frame(counter: int) -> bytes:
    """The wearable's encrypted BTHome frame (25.06 °C) as advertising data."""
    mac = bytes.fromhex(WEARABLE.replace(":", ""))
    ctr = counter.to_bytes(4, "little")
    sealed = AESCCM(KEY, tag_length=4).encrypt(
        mac + b"\xd2\xfc\x41" + ctr, bytes.fromhex("02ca09"), None
    )
    body = b"\xd2\xfc\x41" + sealed[:-4] + ctr + sealed[-4:]
    return bytes.fromhex("020106") + bytes([len(body) + 1, 0x16]) + body


class Branch1:
    """Branch north with gateway gw-n1 (the core's engine) known to ingest."""

    def __init__(self, app: APIFlask) -> None:
        self.app = app
        self.branch = add_branch(app, "north")
        self.device = add_device(app, "gw-n1", self.branch)
        self.ring = KeyRing("gw-n1", 1, SECRET)
        self.keys = KekKeySource(load_wrapper(data_dir(app), {}), [self.ring])
        self.ingest = Ingest(database(app), self.keys)
        self.topic = downlink.downlink_topic("gw-n1")
        self.engine = Gateway(
            KeyRing("gw-n1", 1, SECRET),
            SequenceNumbers(MemoryCounterStore(), block=16),
            Queue(MemoryStorage(), 1 << 20, resend_ms=60_000, max_in_flight=64),
            "devices/gw-n1/up",
            "1.0.0",
            {"presence": False, "batch_max_delay_ms": 1000},
        )
        self.now = 0
        self.readings: list[tuple[str, str, object]] = []

    def uplink(self) -> None:
        """Send what the engine queued through the real ingest; apply the acks."""
        while (item := self.engine.next_to_send(self.now)) is not None:
            envelope = item[1]
            result = self.ingest.handle(envelope, "devices/gw-n1/up", "mqtt", "gw-n1")
            assert result.status == "accepted" and result.ack is not None, result
            opened = cose.open_envelope(envelope, self.ring.lookup, "devices/gw-n1/up")
            for record in batch.decode_batch(opened.plaintext).records:
                if isinstance(record, batch.BatchReading):
                    self.readings.append((record.address.hex(), record.metric, record.value))
            self.engine.downlink(result.ack, self.topic, self.now)

    def tick(self, ms: int = 10) -> None:
        self.now += ms
        self.engine.poll(self.now)

    def hear(self, counter: int) -> None:
        self.tick()
        mac = bytes.fromhex(WEARABLE.replace(":", ""))
        self.engine.advertisement(mac, -55, frame(counter), self.now)
        self.engine.flush()
        self.uplink()


def prepare(site: Branch1, now: dt.datetime) -> list[delivery.Outgoing]:
    with database(site.app).sessions() as db:
        out = delivery.prepare(db, site.keys, now, POLICY)
        db.commit()
        return out


def test_bindings_are_sealed_at_rest_and_audited_without_secrets(cloud_app: APIFlask) -> None:
    branch = add_branch(cloud_app, "north")
    box = cipher(cloud_app)
    with database(cloud_app).sessions() as db:
        bindings.bind(
            db,
            branch,
            "54:48:e6:8f:80:a5",
            irk=IRK,
            key=KEY.hex(),
            actor="test",
            now=T0,
            cipher=box,
        )
        db.commit()
        (row,) = db.scalars(select(WearableBinding)).all()
        assert row.address == WEARABLE
        for sealed in (row.irk_sealed, row.key_sealed):
            assert sealed is not None and KEY not in sealed and IRK not in sealed
        # Sealed for its own row: another branch or field does not open it.
        with pytest.raises(bindings.BindingSecretError, match="does not open"):
            box.open(branch + 1, WEARABLE, "key", row.key_sealed or b"")
        with pytest.raises(bindings.BindingSecretError):
            box.open(branch, WEARABLE, "irk", row.key_sealed or b"")
        # Binding the same values again changes nothing; new values raise the set version.
        bindings.bind(db, branch, WEARABLE, irk=IRK, key=KEY, actor="test", now=T0, cipher=box)
        assert bindings.set_version(db, branch) == 1
        bindings.bind(db, branch, WEARABLE, key=KEY, actor="test", now=T0, cipher=box)
        assert bindings.set_version(db, branch) == 2
        assert bindings.unbind(db, branch, WEARABLE, actor="test", now=T0)
        assert not bindings.unbind(db, branch, WEARABLE, actor="test", now=T0)
        db.commit()
        events = db.scalars(select(AuditEvent).where(AuditEvent.action.like("wearable.%"))).all()
        text = json.dumps([e.details for e in events])
        assert [e.action for e in events] == ["wearable.bind", "wearable.bind", "wearable.unbind"]
        assert KEY.hex() not in text.lower() and IRK.hex() not in text.lower()
        with pytest.raises(NotFound):
            bindings.bind(db, 999, WEARABLE, key=KEY, actor="t", now=T0, cipher=box)
        for bad in ({"key": "00" * 15}, {"irk": bytes(16)}, {"key": "zz" * 16}):
            with pytest.raises(Invalid) as caught:
                bindings.bind(db, branch, WEARABLE, actor="t", now=T0, cipher=box, **bad)
            assert "zz" not in caught.value.message
        with pytest.raises(Invalid, match="not a wearable address"):
            bindings.bind(db, branch, "54:48", key=KEY, actor="t", now=T0, cipher=box)


def test_a_branch_holds_at_most_what_a_gateway_can(
    cloud_app: APIFlask, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = add_branch(cloud_app, "north")
    monkeypatch.setattr(downlink, "MAX_BINDINGS", 2)
    with database(cloud_app).sessions() as db:
        for n in (1, 2):
            address = "C0:00:00:00:00:%02X" % n
            bindings.bind(db, branch, address, actor="t", now=T0, cipher=cipher(cloud_app))
        with pytest.raises(Conflict, match="holds 2 wearables already"):
            bindings.bind(
                db, branch, "C0:00:00:00:00:03", actor="t", now=T0, cipher=cipher(cloud_app)
            )


def test_the_api_is_for_operations_and_shows_no_secret(cloud_app: APIFlask) -> None:
    site_branch = add_branch(cloud_app, "north")
    add_operator(cloud_app, "ops", "operations")
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    ops, maria = sign_in(cloud_app, "ops"), sign_in(cloud_app, "maria")
    url = "/api/fleet/branches/%d/wearables/%s" % (site_branch, WEARABLE)
    body = {"bind_key": KEY.hex(), "irk": None}
    assert maria.client.put(url, json=body, headers=maria.csrf).status_code == 403
    answer = ops.client.put(url, json=body, headers=ops.csrf)
    assert answer.status_code == 200, answer.json
    assert answer.json is not None
    assert {k: answer.json[k] for k in ("branch", "address", "irk", "bind_key", "set_version")} == {
        "branch": site_branch,
        "address": WEARABLE,
        "irk": False,
        "bind_key": True,
        "set_version": 1,
    }
    assert KEY.hex() not in answer.get_data(as_text=True).lower()
    bad = ops.client.put(url, json={"bind_key": "00" * 15}, headers=ops.csrf)
    assert bad.status_code == 422
    missing = "/api/fleet/branches/999/wearables/%s" % WEARABLE
    assert ops.client.put(missing, json=body, headers=ops.csrf).status_code == 404
    assert ops.client.delete(url, headers=ops.csrf).status_code == 204
    assert ops.client.delete(url, headers=ops.csrf).status_code == 404


def test_the_set_goes_to_every_gateway_of_the_branch_until_reported(cloud_app: APIFlask) -> None:
    site = Branch1(cloud_app)
    site.engine.poll(0)
    site.uplink()  # the gateway's first batch: the cloud now has a key version to seal with
    with database(cloud_app).sessions() as db:
        bindings.bind(
            db, site.branch, WEARABLE, key=KEY, actor="t", now=T0, cipher=cipher(cloud_app)
        )
        db.commit()
    (first,) = prepare(site, T0)
    assert prepare(site, T0 + dt.timedelta(seconds=29)) == []  # back-off
    (again,) = prepare(site, T0 + dt.timedelta(seconds=30))
    for item in (first, again):
        site.engine.downlink(item.payload, item.topic, site.now)
    assert site.engine.keys_revision == 1
    site.tick()
    site.uplink()  # its health record says keys_revision 1: in sync, nothing more to send
    assert prepare(site, T0 + dt.timedelta(hours=1)) == []
    # The gateway moves to another branch with no bindings: it gets the empty set.
    other = add_branch(cloud_app, "south")
    with database(cloud_app).sessions() as db:
        device = db.get(Device, site.device)
        assert device is not None
        device.branch_id = other
        db.commit()
    (moved,) = prepare(site, T0 + dt.timedelta(hours=2))
    site.engine.downlink(moved.payload, moved.topic, site.now)
    assert (site.engine.keys_revision, site.engine.bindings) == (2, ())
    with database(cloud_app).sessions() as db:
        row = db.get(GatewayKeys, site.device)
        assert row is not None and (row.revision, row.branch_id) == (2, other)


def test_without_the_kek_no_keys_are_sent(cloud_app: APIFlask) -> None:
    site = Branch1(cloud_app)
    site.engine.poll(0)
    site.uplink()
    with database(cloud_app).sessions() as db:
        bindings.bind(
            db, site.branch, WEARABLE, key=KEY, actor="t", now=T0, cipher=cipher(cloud_app)
        )
        db.commit()
    with database(cloud_app).sessions() as db:
        assert delivery.prepare(db, MemoryKeySource([site.ring]), T0, POLICY) == []
        wrong = bindings.BindingCipher(bytes(32))
        assert delivery.prepare(db, site.keys, T0, POLICY, cipher=wrong) == []  # logged


def test_bind_decode_unbind_through_mosquitto(cloud_app: APIFlask, mosquitto) -> None:
    site = Branch1(cloud_app)
    add_operator(cloud_app, "ops", "operations")
    ops = sign_in(cloud_app, "ops")
    site.engine.poll(0)
    site.uplink()
    url = "/api/fleet/branches/%d/wearables/%s" % (site.branch, WEARABLE)

    async def deliver_once() -> None:
        """Run the supervisor until the gateway got one message; the engine applies it."""
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="gw-n1") as client:
            await client.subscribe(site.topic, qos=1)
            publisher = supervisor.MqttPublisher(mosquitto.host, mosquitto.port)
            stop = asyncio.Event()
            task = asyncio.create_task(
                supervisor.supervise(database(cloud_app), site.keys, publisher, stop, interval=0.2)
            )
            message = await asyncio.wait_for(anext(aiter(client.messages)), timeout=60)
            stop.set()
            await task
            site.engine.downlink(bytes(message.payload), site.topic, site.now)  # type: ignore[arg-type]

    site.hear(0x100)  # not bound yet: a stranger
    assert site.readings == []
    answer = ops.client.put(url, json={"bind_key": KEY.hex()}, headers=ops.csrf)
    assert answer.status_code == 200, answer.json
    asyncio.run(deliver_once())
    assert site.engine.keys_revision == 1
    site.hear(0x101)
    assert site.readings == [("5448e68f80a5", "temperature", 25.06)]
    assert ops.client.delete(url, headers=ops.csrf).status_code == 204
    asyncio.run(deliver_once())
    assert (site.engine.keys_revision, site.engine.bindings) == (2, ())
    site.hear(0x102)
    assert site.readings == [("5448e68f80a5", "temperature", 25.06)]  # no more
    assert site.engine.health_counters()["frames_not_paired"] == 2
