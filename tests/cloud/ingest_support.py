"""What the ingest tests share: a gateway simulated with the portable core, a migrated
database, and queries of what ingest stored.

``SimGateway`` is the gateway's side of the delivery promise, built from the same core a
board runs: ``Batcher`` (two lanes) over ``SequenceNumbers``, ``cose.seal_with``, a
``Queue`` over ``MemoryStorage``, and ``downlink.open_downlink`` + ``apply_ack`` with a
``ReplayWindow`` for the cloud's acknowledgements. It records every reading it accepted, so
a test can compare the database with what the gateway took in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from bankiot_core import cose, downlink
from bankiot_core.batcher import LANE_URGENT, Batcher
from bankiot_core.errors import CoreError
from bankiot_core.filters import Output
from bankiot_core.keyring import KeyRing
from bankiot_core.queue import MemoryStorage, Queue
from bankiot_core.readings import Reading as CoreReading
from bankiot_core.replay import ReplayWindow
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers
from cloud.db import Database
from cloud.fleet.models import Branch, Device
from cloud.identity.keys import issue_envelope_key, load_wrapper
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.models import BatchReceipt, Reading
from cloud.migrations import upgrade

SENSOR = bytes.fromhex("A4C138000001")
WEARABLE = bytes.fromhex("C0FFEE000002")


def url_text(url: URL | str) -> str:
    """A database URL as a string a fresh engine accepts (password included)."""
    return url.render_as_string(hide_password=False) if isinstance(url, URL) else url


@contextmanager
def migrated(url: URL | str) -> Iterator[Database]:
    """A ``Database`` on ``url`` after every migration; disposed afterwards."""
    text = url_text(url)
    upgrade(text)
    database = Database(text)
    try:
        yield database
    finally:
        database.dispose()


def secret_for(gateway: str, version: int = 1) -> bytes:
    """A fixed 32-byte test secret per gateway and version (never a real key)."""
    return (("%s/%d/" % (gateway, version)).encode() * 32)[:32]


@dataclass
class SimGateway:
    """A gateway built from the portable core (module docstring)."""

    gateway_id: str
    version: int = 1
    resource: str | None = None  # the AAD it seals for; None: its MQTT uplink topic
    capacity: int = 1 << 20
    max_in_flight: int = 64
    max_readings: int = 8
    max_bytes: int = 960  # plaintext per batch (the batcher's default)
    unix_ms: int | None = None  # a Unix clock from the start, or ticks only
    accepted: list[tuple[str, str, object]] = field(default_factory=list)
    now_ms: int = 0

    def __post_init__(self) -> None:
        self.ring = KeyRing(
            self.gateway_id, self.version, secret_for(self.gateway_id, self.version)
        )
        self.sequence = SequenceNumbers(MemoryCounterStore(), block=16)
        self.batcher = Batcher(
            self.sequence,
            max_readings=self.max_readings,
            max_bytes=self.max_bytes,
            max_delay_ms=60_000,  # tests flush() explicitly
        )
        if self.unix_ms is not None:
            self.batcher.set_clock(0, self.unix_ms)
        self.queue = Queue(
            MemoryStorage(), self.capacity, resend_ms=5000, max_in_flight=self.max_in_flight
        )
        self.window = ReplayWindow(size=256)
        self.acks = 0
        self.refused_acks = 0

    @property
    def aad(self) -> str:
        return self.resource or "devices/%s/up" % self.gateway_id

    @property
    def down_aad(self) -> str:
        return self.resource or downlink.downlink_topic(self.gateway_id)

    def _queue(self, ready: list) -> None:
        for batch in ready:
            envelope = cose.seal_with(self.ring, batch.seq, batch.payload, self.aad)
            self.queue.enqueue(batch.seq, envelope, urgent=batch.lane == LANE_URGENT)

    def hear(self, address: bytes, metric: str, value: object, unit: str = "") -> None:
        """The radio heard one reading; it goes into a batch (urgent if an event)."""
        self.now_ms += 10
        self.accepted.append((address.hex(), metric, value))
        frame = Output(address, (CoreReading(metric, value, unit),), ())
        self._queue(self.batcher.add(frame, self.now_ms))

    def hear_many(self, count: int, address: bytes = SENSOR) -> None:
        """``count`` temperature readings, each a different value."""
        for i in range(count):
            self.hear(address, "temperature", 20.0 + i / 100, "°C")

    def flush(self) -> None:
        """Close open batches (the routine lane's delay has passed)."""
        self._queue(self.batcher.flush())

    def outbox(self) -> list[tuple[int, bytes]]:
        """Everything the queue hands out to send now."""
        self.now_ms += 1
        out = []
        while True:
            item = self.queue.next_to_send(self.now_ms)
            if item is None:
                return out
            out.append(item)

    def receive(self, envelope: bytes, aad: str | None = None) -> int:
        """An acknowledgement arrived: open it and release what it covers."""
        opened = downlink.open_downlink(envelope, self.ring, self.window, aad or self.down_aad)
        self.acks += 1
        return downlink.apply_ack(self.queue, opened.message)

    def keys(self, source: MemoryKeySource | None = None) -> MemoryKeySource:
        """A key source that knows this gateway (added to ``source`` if given)."""
        source = source or MemoryKeySource()
        source.add(
            KeyRing(self.gateway_id, self.version, secret_for(self.gateway_id, self.version))
        )
        return source


def enroll_key(database: Database, data_dir: Path, uid: str, branch: str = "B001") -> KeyRing:
    """A gateway of the fleet as enrollment leaves it: a device record in ``branch`` and an
    envelope key wrapped with the data folder's key (``ca init`` must have run); its ring."""
    now = dt.datetime.now(dt.UTC)
    with database.sessions() as session:
        row = session.query(Branch).filter_by(code=branch).one_or_none()
        row = row or Branch(code=branch, name="Branch %s" % branch)
        device = Device(uid=uid, kind="gateway", branch=row, status="active")
        session.add(device)
        session.flush()
        key, secret = issue_envelope_key(session, device, load_wrapper(data_dir), now)
        session.commit()
        return KeyRing(uid, key.version, secret)


def stored_readings(database: Database) -> list[tuple[str, str, object]]:
    """Every reading stored: (device hex lower case, metric, value)."""
    with database.sessions() as session:
        rows = session.execute(
            select(Reading.device, Reading.metric, Reading.value_num, Reading.value_text)
        ).all()
    return [
        (device.replace(":", "").lower(), metric, num if text is None else text)
        for device, metric, num, text in rows
    ]


def receipt_count(database: Database) -> int:
    """Batch receipts stored."""
    with database.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(BatchReceipt)) or 0)


def reading_count(database: Database) -> int:
    """Readings stored."""
    with database.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Reading)) or 0)


def utc(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    """An aware UTC time."""
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


async def drive_over_mqtt(
    gateway: SimGateway,
    host: str,
    port: int,
    seconds: float = 60.0,  # a bound for a loaded machine; only a hang reaches it
    step_ms: int = 250,
    produce: Callable[[SimGateway], bool] | None = None,
) -> None:
    """Connect ``gateway`` to the broker and send until its queue is empty: publish what the
    queue hands out on its uplink topic (QoS 1), apply acks from its downlink topic. Each
    0.05 s of real time is ``step_ms`` of the gateway's clock, so unacknowledged batches are
    resent after ``resend_ms / step_ms * 0.05`` s. Reconnects after a lost connection and
    resends everything unacknowledged, as a gateway does. Fails after ``seconds``.
    ``produce``: called every tick to hear more (traffic that goes on during faults); it
    returns False once it has nothing more to add."""
    deadline = asyncio.get_running_loop().time() + seconds
    producing = produce is not None

    def busy() -> bool:
        return producing or len(gateway.queue) > 0

    while busy():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("%s still holds %s" % (gateway.gateway_id, gateway.queue.seqs()))
        try:
            async with aiomqtt.Client(host, port, identifier=gateway.gateway_id) as client:
                await client.subscribe(gateway.down_aad, qos=1)
                gateway.queue.link_reset()
                reader = asyncio.ensure_future(_read_acks(gateway, client))
                try:
                    while busy():
                        if asyncio.get_running_loop().time() > deadline:
                            break
                        if producing and produce is not None:
                            producing = produce(gateway)
                        for _seq, envelope in gateway.outbox():
                            await client.publish(gateway.aad, envelope, qos=1)
                        await asyncio.sleep(0.05)
                        gateway.now_ms += step_ms
                        if reader.done():
                            reader.result()  # the connection is gone: raise its error
                finally:
                    reader.cancel()
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)


async def _read_acks(gateway: SimGateway, client: aiomqtt.Client) -> None:
    async for message in client.messages:
        if isinstance(message.payload, bytes):
            try:
                gateway.receive(message.payload, message.topic.value)
            except CoreError:
                gateway.refused_acks += 1
