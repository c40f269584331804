"""The MQTT uplink (aiomqtt, MQTT 5): one connection to the broker per ``connect``.

Topics of gateway ``<uid>`` (the broker's ACL lets it write ``devices/<uid>/up/#`` and read
``devices/<uid>/down/#``, ``cloud.identity.broker``):

- ``devices/<uid>/up`` (QoS 1): sealed batches; the topic is the envelopes' AAD;
- ``devices/<uid>/down`` (QoS 1, subscribed): sealed acknowledgements, configuration and
  commands from the cloud;
- ``devices/<uid>/up/status`` (QoS 1, retained): ``online`` after connecting, ``offline``
  on an orderly close, and ``offline`` as the will message, which the broker publishes
  when the connection dies without a DISCONNECT.

The client id is the uid and the session persists (Clean Start 0 and a Session Expiry
Interval): what the cloud sends while the gateway is away (a configuration, a command, late
acknowledgements) waits in the broker and arrives after the next CONNACK. TLS
(``mqtts://``) authenticates both sides: the gateway trusts only the fleet CA chain from
enrollment for the broker's certificate (and its host name), and presents its own
certificate, whose CN, its uid, is its user name at the broker. ``mqtt://`` is plain TCP,
for tests and a broker on the same machine.

A PUBACK means the broker has the batch, not the cloud: nothing is deleted on it.

Logging: INFO when connected, WARNING when a connection breaks. Never a payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.identity import Identity
from edge.uplink_link import DownlinkHandler, LinkDown, endpoint

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
SESSION_EXPIRY_S = 7 * 24 * 3600  # what the broker keeps for an absent gateway: a week


def up_topic(uid: str) -> str:
    """Where gateway ``uid`` publishes batches (and the AAD they are sealed with)."""
    return "devices/%s/up" % uid


def down_topic(uid: str) -> str:
    """Where the cloud publishes to gateway ``uid``."""
    return "devices/%s/down" % uid


def status_topic(uid: str) -> str:
    """Gateway ``uid``'s retained ``online`` / ``offline`` (and its will message)."""
    return "devices/%s/up/status" % uid


def tls_context(cafile: Path, certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A client TLS context that trusts only ``cafile`` (and checks the broker's host name)
    and presents ``certfile`` with ``keyfile``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


class MqttLink:
    """The MQTT uplink of gateway ``uid`` to the broker at ``host:port`` (module docstring).

    ``tls``: a client TLS context (``tls_context``), None for plain MQTT; ``keepalive_s``:
    the MQTT keep-alive, which bounds how long a dead connection goes unnoticed (and when the
    broker sends the will: 1.5 times it); ``timeout_s``: the longest wait for CONNACK, SUBACK
    or PUBACK.
    """

    name = "mqtt"

    def __init__(
        self,
        uid: str,
        host: str,
        port: int = 1883,
        *,
        tls: ssl.SSLContext | None = None,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        session_expiry_s: int = SESSION_EXPIRY_S,
    ) -> None:
        self.uid = uid
        self.host = host
        self.port = port
        self.tls = tls
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.session_expiry_s = session_expiry_s
        self.client: aiomqtt.Client | None = None  # while connected
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    def from_url(
        cls, url: str, identity: Identity, *, keepalive_s: int = 30, timeout_s: float = 10.0
    ) -> MqttLink:
        """The link to ``mqtt(s)://host[:port]`` for ``identity`` (TLS with its certificate
        and CA chain for ``mqtts``). ``UplinkError`` for another kind of URL."""
        scheme, host, port = endpoint(url, ("mqtt", "mqtts"))
        tls = None
        if scheme == "mqtts":
            tls = tls_context(identity.ca_chain_path, identity.certificate_path, identity.key_path)
        return cls(identity.uid, host, port, tls=tls, keepalive_s=keepalive_s, timeout_s=timeout_s)

    def _client(self) -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.uid,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            will=aiomqtt.Will(status_topic(self.uid), OFFLINE, qos=1, retain=True),
            tls_context=self.tls,
            keepalive=self.keepalive_s,
            timeout=self.timeout_s,
            # A batch or an acknowledgement goes at once, not after Nagle's delay.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def connect(self, on_downlink: DownlinkHandler) -> None:
        """Connect, subscribe to the downlink topic and say ``online``; ``LinkDown`` if any
        of it fails (refused, unreachable, TLS, timeout)."""
        client = self._client()
        try:
            await client.__aenter__()
        except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
            raise LinkDown("MQTT %s:%d: cannot connect: %s" % (self.host, self.port, exc)) from None
        try:
            await client.subscribe(down_topic(self.uid), qos=1)
            await client.publish(status_topic(self.uid), ONLINE, qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            await _quietly_exit(client)
            raise LinkDown(
                "MQTT %s:%d: lost while setting up: %s" % (self.host, self.port, exc)
            ) from None
        self.client = client
        self._reader = asyncio.ensure_future(self._read(client, on_downlink))
        log.info("MQTT uplink connected to %s:%d as %s", self.host, self.port, self.uid)

    async def _read(self, client: aiomqtt.Client, on_downlink: DownlinkHandler) -> None:
        """Hand every downlink message over until the connection breaks."""
        try:
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray):
                    on_downlink(bytes(payload), message.topic.value)
        except aiomqtt.MqttError as exc:
            log.warning("MQTT uplink to %s:%d lost: %s", self.host, self.port, exc)

    async def send(self, seq: int, envelope: bytes) -> None:
        """Publish sealed batch ``seq`` (QoS 1) and wait for the broker's PUBACK."""
        client = self.client
        if client is None:
            raise LinkDown("MQTT: not connected")
        try:
            await client.publish(up_topic(self.uid), envelope, qos=1)
        except aiomqtt.MqttError as exc:
            raise LinkDown("MQTT: batch %d not published: %s" % (seq, exc)) from None

    async def wait_lost(self) -> None:
        """Return when the connection has broken (or was closed)."""
        if self._reader is not None:
            await asyncio.shield(self._reader)

    async def close(self) -> None:
        """Say ``offline`` (retained) and DISCONNECT, as far as the connection still
        allows; the will message covers the rest."""
        client, self.client = self.client, None
        reader, self._reader = self._reader, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(status_topic(self.uid), OFFLINE, qos=1, retain=True, timeout=2)
            await _quietly_exit(client)
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _quietly_exit(client: aiomqtt.Client) -> None:
    """Leave the client's context; a connection already gone is no error here."""
    with contextlib.suppress(aiomqtt.MqttError, OSError):
        await client.__aexit__(None, None, None)
