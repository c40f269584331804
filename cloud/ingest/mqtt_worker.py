"""MQTT ingest worker (aiomqtt, MQTT 5): takes gateways' batches from a shared subscription
and publishes each acknowledgement on the gateway's downlink topic.

Gateways publish sealed batches with QoS 1 on ``devices/<gateway>/up`` (the broker's ACL
lets each gateway write only its own); every worker subscribes to
``$share/<group>/devices/+/up``, so the broker hands each message to one worker of the group
and any number of workers split the load. For each message, in order:

1. ``Ingest.handle_many`` with the topic as external AAD and the topic's gateway as the one
   the kid must name; while the database is unavailable, the same messages are tried again
   with backoff, and nothing else is taken;
2. the sealed acknowledgement (accepted or duplicate) is published with QoS 1 on
   ``devices/<gateway>/down``, then any other sealed message the pipeline made for the
   batch (``Result.downlinks``: offers for a kiosk check-in, ``cloud.offers``);
3. only then is the message acknowledged to the broker (PUBACK). Steps 2 and 3 run in a
   task of their own, so the next message is judged while the broker answers; they are at
   most ``receive_maximum`` (the broker sends no more unacknowledged messages).

Backpressure: messages are processed in order, one group at a time (the messages already
received, up to ``max_group``, share one transaction), and PUBACKed only when done (paho's
manual acknowledgements), and the CONNECT asks for at most ``receive_maximum`` unacknowledged
messages (MQTT 5 Receive Maximum), so a slow database holds new work back in the broker and
the gateways' queues instead of in this process. A worker killed at any point loses nothing:
a batch committed but not acknowledged is sent again by its gateway (``queue`` resends after
``resend_ms``) and acknowledged as a duplicate.

"Stay connected" is this class's job (``run``): a lost connection or a broker restart is
followed by reconnecting with jittered exponential backoff and subscribing again.

Logging: INFO for connections and subscriptions, WARNING for lost connections and an
unavailable database, ERROR (with traceback) for a message that raised: it is acknowledged
and counted as ``internal_error``, so one bad message cannot stall a worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import uuid
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bankiot_core import downlink
from cloud.ingest.pipeline import Envelope, Ingest, Result
from cloud.ingest.stats import REJECTED, UNAVAILABLE

log = logging.getLogger(__name__)

UPLINK_FILTER = "devices/+/up"


def shared_filter(group: str) -> str:
    """The shared subscription of ``group``: ``$share/<group>/devices/+/up``."""
    if not group or any(c in group for c in "/+#"):
        raise ValueError("a shared subscription group is a non-empty name without / + #")
    return "$share/%s/%s" % (group, UPLINK_FILTER)


def topic_gateway(topic: str) -> str | None:
    """The gateway of an uplink topic ``devices/<gateway>/up``, or None."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "devices" and parts[2] == "up" and parts[1]:
        return parts[1]
    return None


@dataclass
class Backoff:
    """Jittered exponential backoff: ``next()`` seconds to wait, ``reset()`` after success."""

    first: float = 0.1
    ceiling: float = 5.0
    _current: float = 0.0

    def next(self) -> float:
        self._current = self.first if not self._current else min(self._current * 2, self.ceiling)
        return random.uniform(self._current / 2, self._current)

    def reset(self) -> None:
        self._current = 0.0


class MqttWorker:
    """One ingest worker of a shared-subscription group (module docstring).

    ``host``, ``port``: the broker; ``group``: the shared subscription group (workers of one
    group split the load); ``identifier``: the MQTT client id (unique per worker; a random
    one by default); ``tls_context``, ``username``, ``password``: how to log in (the cloud's
    client certificate in production); ``receive_maximum``: messages in flight to this
    worker; ``max_group``: messages already received that are committed in one transaction
    (a group commit, when a backlog waits).
    """

    def __init__(
        self,
        ingest: Ingest,
        host: str,
        port: int = 1883,
        *,
        group: str = "bankiot-ingest",
        identifier: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        receive_maximum: int = 16,
        max_group: int = 16,
    ) -> None:
        self.ingest = ingest
        self.host = host
        self.port = port
        self.filter = shared_filter(group)
        self.identifier = identifier or "bankiot-ingest-%s" % uuid.uuid4().hex[:12]
        self.tls_context = tls_context
        self.username = username
        self.password = password
        self.receive_maximum = receive_maximum
        self.max_group = max(1, min(max_group, receive_maximum))
        self.subscribed = asyncio.Event()  # set while subscribed (tests wait for it)
        self.processed = 0
        self._in_hand = 0  # messages taken from the client and not yet PUBACKed
        self._connected: aiomqtt.Client | None = None

    def unacknowledged(self) -> int:
        """Messages the broker has delivered to this worker and not had PUBACKed: never more
        than ``receive_maximum`` (the rest wait in the broker)."""
        queued = len(self._connected.messages) if self._connected is not None else 0
        return self._in_hand + queued

    def _client(self) -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)
        properties.ReceiveMaximum = self.receive_maximum
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self.tls_context,
            username=self.username,
            password=self.password,
            properties=properties,
            timeout=10,
            # Small packets (acknowledgements, PUBACKs) go at once: with Nagle's algorithm and
            # the peer's delayed ACKs, each message waited about 40 ms.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # PUBACK only once a message is committed and answered. aiomqtt has no option for
        # it yet (empicano/aiomqtt#345); paho's own manual acknowledgements are used.
        client._client.manual_ack_set(True)
        # Up to receive_maximum acknowledgements are published at once, by design.
        client.pending_calls_threshold = self.receive_maximum + 10
        return client

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Stay connected and process messages until ``stop`` is set (or cancelled)."""
        stop = stop or asyncio.Event()
        backoff = Backoff()
        while not stop.is_set():
            try:
                await self._session(stop, backoff)
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                wait = backoff.next()
                log.warning("MQTT connection lost (%s); reconnecting in %.1f s", exc, wait)
                await _sleep_unless(stop, wait)

    async def _session(self, stop: asyncio.Event, backoff: Backoff) -> None:
        """One connection: subscribe, then judge messages in order, a group at a time."""
        answering: set[asyncio.Task] = set()
        async with self._client() as client:
            await client.subscribe(self.filter, qos=1)
            log.info("subscribed to %s on %s:%d", self.filter, self.host, self.port)
            self.subscribed.set()
            self._connected, self._in_hand = client, 0
            backoff.reset()
            messages = aiter(client.messages)
            try:
                while not stop.is_set():
                    next_message = asyncio.ensure_future(anext(messages))
                    stopping = asyncio.ensure_future(stop.wait())
                    done, _ = await asyncio.wait(
                        {next_message, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    stopping.cancel()
                    if next_message not in done:
                        next_message.cancel()
                        break
                    group = [next_message.result()]
                    while len(client.messages) and len(group) < self.max_group:
                        group.append(await anext(messages))  # already here: no waiting
                    self._in_hand += len(group)
                    for task in await self._process(client, group, stop):
                        answering.add(task)
                        task.add_done_callback(answering.discard)
                if answering:  # let the last acknowledgements go out before disconnecting
                    await asyncio.wait(answering, timeout=5)
            finally:
                self.subscribed.clear()
                self._connected = None
                for task in answering:
                    task.cancel()

    async def _process(
        self, client: aiomqtt.Client, group: list[aiomqtt.Message], stop: asyncio.Event
    ) -> list[asyncio.Task]:
        """Judge a group of messages (one transaction); return the tasks that publish their
        acknowledgements and then PUBACK them, so that the next group is judged while the
        broker answers."""
        items: list[tuple[aiomqtt.Message, Envelope]] = []
        for message in group:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            gateway = topic_gateway(topic)
            if gateway is None:
                await asyncio.to_thread(self.ingest.count_rejection, "malformed", "mqtt")
                self._puback(client, message)
            else:
                items.append((message, Envelope(bytes(payload), topic, "mqtt", gateway)))
        results = await self._judge([envelope for _, envelope in items], stop)
        if results is None:  # stopping while the database was away: no PUBACK
            return []
        tasks = []
        for (message, envelope), result in zip(items, results, strict=True):
            if result.ack is not None:
                gateway = envelope.claimed_gateway or ""
                answer = self._answer(client, gateway, result.ack, message, result.downlinks)
                tasks.append(asyncio.ensure_future(answer))
            else:
                self._puback(client, message)
        return tasks

    async def _answer(
        self,
        client: aiomqtt.Client,
        gateway: str,
        ack: bytes,
        message: aiomqtt.Message,
        more: tuple[bytes, ...] = (),
    ) -> None:
        """Publish the acknowledgement (QoS 1) and ``more``, then PUBACK the batch's
        message."""
        topic = downlink.downlink_topic(gateway)
        try:
            await client.publish(topic, ack, qos=1)
        except aiomqtt.MqttError as exc:  # no PUBACK: the gateway resends, a duplicate
            log.warning("acknowledgement to %s not published: %s", gateway, exc)
            return
        for extra in more:  # offers: lost with the connection, never sent twice
            try:
                await client.publish(topic, extra, qos=1)
            except aiomqtt.MqttError as exc:
                log.warning("a downlink message to %s not published: %s", gateway, exc)
                break
        self._puback(client, message)

    def _puback(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        if message.qos > 0:
            client._client.ack(message.mid, message.qos)
        self._in_hand -= 1
        self.processed += 1

    async def _judge(self, items: list[Envelope], stop: asyncio.Event) -> list[Result] | None:
        """The verdicts, trying again while the database is unavailable (None: stopped)."""
        results: list[Result | None] = [None] * len(items)
        backoff = Backoff(first=0.05, ceiling=2.0)
        while True:
            waiting = [i for i, result in enumerate(results) if result is None]
            if not waiting:
                return [result for result in results if result is not None]
            try:
                verdicts = await asyncio.to_thread(
                    self.ingest.handle_many, [items[i] for i in waiting]
                )
            except Exception:
                verdicts = [await self._judge_alone(items[i]) for i in waiting]
            for i, verdict in zip(waiting, verdicts, strict=True):
                if verdict.status != UNAVAILABLE:
                    results[i] = verdict
            if any(result is None for result in results) and await _sleep_unless(
                stop, backoff.next()
            ):
                return None

    async def _judge_alone(self, item: Envelope) -> Result:
        """One message of a group that raised: judged alone, and if it raises again, counted
        and acknowledged to the broker so that it cannot stall the worker."""
        try:
            return (await asyncio.to_thread(self.ingest.handle_many, [item]))[0]
        except Exception:
            log.exception("message on %s raised; acknowledged and counted", item.resource)
            await asyncio.to_thread(
                self.ingest.count_rejection, "internal_error", "mqtt", item.claimed_gateway
            )
            return Result(REJECTED, None, "internal_error", "", item.claimed_gateway)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it was."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
