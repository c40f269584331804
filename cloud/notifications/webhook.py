"""The bank's push gateway as a webhook: each notification POSTed as JSON, signed.

The body is ``{"id", "customer", "channel", "source", "title", "text",
"relay_to_wearable"}`` (``push.Push``), UTF-8 JSON. Headers: ``X-Bankiot-Signature:
sha256=<hex>``, HMAC-SHA256 of the exact body bytes under ``PUSH_SECRET``, and
``Idempotency-Key: <id>``: a notification may come more than once (at-least-once delivery),
the gateway keeps one per id. A 2xx answer means the gateway has it; anything else (another
status, a redirect, no answer within ``TIMEOUT`` seconds) is a ``PushFailed``, tried again
later by the pusher. The standard library's HTTP client: the cloud needs no other for one
POST.

``check_settings`` is the settings' rule, read at start (``cloud.config.load_config``): a
URL must be https (plain http only to this machine, for tests and a local relay), and a
secret is required. The secret and the URL's query are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cloud.config import ConfigError
from cloud.notifications.push import Push, PushFailed
from cloud.people.sessions import is_loopback_host

TIMEOUT = 5.0  # seconds for one POST: a gateway slower than this is tried again later
SIGNATURE = "X-Bankiot-Signature"
IDEMPOTENCY = "Idempotency-Key"


class PushConfigError(ConfigError):
    """``PUSH_URL`` or ``PUSH_SECRET`` cannot be used; one line."""


def check_settings(url: str | None, secret: str | None) -> None:
    """Raise ``PushConfigError`` unless ``url`` is unset, or an https URL (http only to
    loopback) with a ``secret``."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise PushConfigError("push_url is not a URL") from None
    if not host or parts.scheme not in ("https", "http"):
        raise PushConfigError("push_url must be an https:// URL")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise PushConfigError("push_url must be https:// (plain http only to this machine)")
    if not secret:
        raise PushConfigError("push_url is set but push_secret is not: pushes must be signed")


def body(message: Push) -> bytes:
    """The JSON body of ``message`` (module docstring)."""
    return json.dumps(
        {
            "id": message.id,
            "customer": message.customer,
            "channel": message.channel,
            "source": message.source,
            "title": message.title,
            "text": message.text,
            "relay_to_wearable": message.relay_to_wearable,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def signature(secret: str, data: bytes) -> str:
    """The ``X-Bankiot-Signature`` value of ``data``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would repeat a redirected POST as a GET without the body: a 3xx is a failure.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookChannel:
    """A ``PushChannel`` POSTing to the bank's push gateway (module docstring)."""

    def __init__(self, url: str, secret: str, timeout: float = TIMEOUT) -> None:
        check_settings(url, secret)
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    @property
    def where(self) -> str:
        """The gateway's scheme, host and port, for messages (never its path or query)."""
        parts = urlsplit(self.url)
        return "%s://%s" % (parts.scheme, parts.netloc.rpartition("@")[2])

    def push(self, message: Push) -> None:
        """POST ``message``; ``PushFailed`` unless the gateway answers 2xx."""
        data = body(message)
        request = urllib.request.Request(
            self.url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE: signature(self._secret, data),
                IDEMPOTENCY: str(message.id),
                "User-Agent": "bankiot-pusher",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            exc.close()
            raise PushFailed("the push gateway answered %d" % exc.code) from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad TLS
            reason = getattr(exc, "reason", None) or exc
            name = type(reason).__name__
            raise PushFailed("the push gateway was not reached: %s" % name) from None
        if not 200 <= status < 300:
            raise PushFailed("the push gateway answered %d" % status)


def channel_from(config: Mapping[str, Any]) -> WebhookChannel | None:
    """The webhook of ``PUSH_URL`` / ``PUSH_SECRET`` in ``config``, or None when unset;
    ``PushConfigError`` for settings that cannot be used."""
    url, secret = config.get("PUSH_URL"), config.get("PUSH_SECRET")
    check_settings(url, secret)
    return WebhookChannel(url, secret or "") if url else None
