"""What every uplink of the Raspberry Pi gateway is: one connection attempt, its sends, its end.

A link (``edge.uplink_mqtt.MqttLink``, ``edge.uplink_coap.CoapLink``) is the "one attempt"
layer: ``connect`` makes one connection (or fails with ``LinkDown``), ``send`` hands one
sealed batch to the cloud, ``wait_lost`` returns when the connection has broken, ``close``
ends it. Staying connected, choosing a link and falling back are ``edge.uplink.Uplinks``'s
job; a link never retries by itself.

How a send can end:

- it returns: the transport took the batch (MQTT: the broker's PUBACK; CoAP: a 2.04 whose
  body, the sealed acknowledgement, went to ``on_downlink``). Neither deletes anything:
  only the cloud's end-to-end acknowledgement, opened by the engine, does;
- ``Refused``: the cloud refused this batch for good (CoAP 4.xx); the batch stays queued;
- ``Busy``: the cloud asks to be left alone for a while (CoAP 5.03, with Max-Age);
- ``LinkDown``: the connection is gone or the request could not be delivered.

Downlink messages (acknowledgements, configuration, commands) go to the ``on_downlink``
callback given to ``connect``, with the AAD they are bound to: the MQTT topic they came on,
or the CoAP resource the request went to.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Protocol

from edge.errors import GatewayError

DownlinkHandler = Callable[[bytes, str], None]
"""``on_downlink(data, aad)``: one sealed downlink message and the AAD it is bound to."""

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "coap": 5683, "coaps": 5684}


class UplinkError(GatewayError):
    """An uplink cannot be used as configured (a bad or unsupported endpoint)."""


class LinkDown(UplinkError):
    """The connection could not be made, or broke, or a request was not delivered."""


class Refused(UplinkError):
    """The cloud refused one batch for good (``code``: the CoAP code, ``"4.01"``)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Busy(UplinkError):
    """The cloud asks the gateway to back off (``retry_after_s``: its hint, or None)."""

    def __init__(self, message: str, retry_after_s: int | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Link(Protocol):
    """One uplink transport (module docstring). ``name`` is ``"mqtt"`` or ``"coap"``."""

    name: str

    async def connect(self, on_downlink: DownlinkHandler) -> None:
        """Make one connection; ``LinkDown`` if it cannot be made."""
        ...

    async def send(self, seq: int, envelope: bytes) -> None:
        """Send sealed batch ``seq``; ``LinkDown``, ``Refused`` or ``Busy`` if not taken."""
        ...

    async def wait_lost(self) -> None:
        """Return when the connection has broken (never, for a link without one)."""
        ...

    async def close(self) -> None:
        """End the connection (an orderly goodbye where the protocol has one)."""
        ...


def endpoint(url: str, schemes: tuple[str, ...]) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an uplink URL ``scheme://host[:port]`` whose scheme is one
    of ``schemes``; the port defaults to the scheme's standard one. ``UplinkError`` if not."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError:
        raise UplinkError("%r is not a usable uplink URL (bad port?)" % url) from None
    if parsed.scheme not in schemes or not parsed.hostname:
        raise UplinkError("%r is not a %s://host[:port] URL" % (url, " or ".join(schemes)))
    return parsed.scheme, parsed.hostname, port or DEFAULT_PORTS[parsed.scheme]
