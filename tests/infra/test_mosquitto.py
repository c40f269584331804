"""The Mosquitto fixtures start real brokers that enforce what their configs say."""

from __future__ import annotations

import asyncio
import ssl

import aiomqtt
import pytest

from tests.support.mosquitto import MosquittoBroker, hash_password

LIMIT_S = 60.0  # a bound on waiting for the broker under load, not a measurement
MARKER = b"end of exchange"


def tls_params(broker: MosquittoBroker, common_name: str | None) -> aiomqtt.TLSParameters:
    assert broker.ca is not None
    cert = broker.client_cert(common_name) if common_name else None
    return aiomqtt.TLSParameters(
        ca_certs=str(broker.ca.cert_path),
        certfile=str(cert.cert) if cert else None,
        keyfile=str(cert.key) if cert else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )


async def exchange(
    broker: MosquittoBroker,
    topic: str,
    payload: bytes,
    *,
    publisher: dict | None = None,
    subscriber: dict | None = None,
    subscribe_to: str | None = None,
) -> list[tuple[str, bytes]]:
    """Subscribe with one client, publish with another, and return what the subscriber
    received before a marker it then publishes on ``topic`` itself. The publish was
    acknowledged before the marker was sent, and the broker routes in order, so what it was
    going to deliver (or drop) came before the marker: no waiting for a time."""
    received: list[tuple[str, bytes]] = []
    async with aiomqtt.Client(broker.host, broker.port, **(subscriber or {})) as sub:
        await sub.subscribe(subscribe_to or topic, qos=1)
        async with aiomqtt.Client(broker.host, broker.port, **(publisher or {})) as pub:
            await pub.publish(topic, payload, qos=1)
        await sub.publish(topic, MARKER, qos=1)
        async with asyncio.timeout(LIMIT_S):
            async for message in sub.messages:
                assert isinstance(message.payload, bytes)
                if message.payload == MARKER:
                    break
                received.append((str(message.topic), message.payload))
    return received


def test_plain_broker_delivers_between_two_clients(mosquitto: MosquittoBroker) -> None:
    got = asyncio.run(exchange(mosquitto, "bankiot/test/hello", b"\x00reading\xff"))
    assert got == [("bankiot/test/hello", b"\x00reading\xff")]


def test_tls_broker_rejects_a_client_without_certificate(mosquitto_tls: MosquittoBroker) -> None:
    # TLS 1.2: the broker checks the client certificate inside the handshake, so the refusal
    # is the handshake's alert. (Under TLS 1.3 it comes after the handshake, and the client
    # only notices by timing out: a slow broker would look the same.)
    assert mosquitto_tls.ca is not None
    context = ssl.create_default_context(cafile=str(mosquitto_tls.ca.cert_path))
    context.maximum_version = ssl.TLSVersion.TLSv1_2

    async def connect() -> None:
        async with aiomqtt.Client(
            mosquitto_tls.host, mosquitto_tls.port, tls_context=context, timeout=LIMIT_S
        ):
            pass

    with pytest.raises(aiomqtt.MqttError, match="alert handshake failure"):
        asyncio.run(connect())


def test_tls_broker_acl_confines_each_client_to_its_subtree(
    mosquitto_tls: MosquittoBroker,
) -> None:
    cloud = {"tls_params": tls_params(mosquitto_tls, "cloud")}
    alice = {"tls_params": tls_params(mosquitto_tls, "alice")}
    # Alice may publish in her own subtree; the cloud (allowed everything) hears it.
    own = asyncio.run(
        exchange(mosquitto_tls, "clients/alice/up", b"mine", publisher=alice, subscriber=cloud)
    )
    assert own == [("clients/alice/up", b"mine")]
    # Alice publishing as bob is dropped by the broker: nobody hears it.
    forged = asyncio.run(
        exchange(mosquitto_tls, "clients/bob/up", b"forged", publisher=alice, subscriber=cloud)
    )
    assert forged == []


def test_password_file_accepts_right_and_refuses_wrong_password(mosquitto_factory) -> None:
    broker = mosquitto_factory(users={"gw-1": "correct horse"})
    ok = asyncio.run(
        exchange(
            broker,
            "t",
            b"x",
            publisher={"username": "gw-1", "password": "correct horse"},
            subscriber={"username": "gw-1", "password": "correct horse"},
        )
    )
    assert ok == [("t", b"x")]

    async def wrong() -> None:
        async with aiomqtt.Client(broker.host, broker.port, username="gw-1", password="nope"):
            pass

    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(wrong())


def test_restart_keeps_port_and_persistent_session(mosquitto_factory) -> None:
    broker = mosquitto_factory()
    port = broker.port

    async def park_message() -> None:
        # A persistent session subscribes, goes away; a QoS 1 message is queued for it.
        async with aiomqtt.Client(
            broker.host, broker.port, identifier="keeper", clean_session=False
        ) as c:
            await c.subscribe("queued", qos=1)
        async with aiomqtt.Client(broker.host, broker.port) as p:
            await p.publish("queued", b"kept", qos=1)

    async def resume() -> list[bytes]:
        got: list[bytes] = []
        async with aiomqtt.Client(
            broker.host, broker.port, identifier="keeper", clean_session=False
        ) as c:
            try:
                async with asyncio.timeout(LIMIT_S):
                    async for message in c.messages:
                        assert isinstance(message.payload, bytes)
                        got.append(message.payload)
                        break
            except TimeoutError:
                pass
        return got

    asyncio.run(park_message())
    broker.restart()
    assert broker.port == port
    assert asyncio.run(resume()) == [b"kept"]


def test_password_hash_format_is_mosquitto_pbkdf2() -> None:
    encoded = hash_password("pw", salt=b"\x00" * 12)
    kind, iterations, salt, digest = encoded.split("$")[1:]
    assert (kind, iterations, salt) == ("7", "101", "AAAAAAAAAAAAAAAA")
    assert len(digest) == 88  # base64 of a 64-byte SHA-512 output
