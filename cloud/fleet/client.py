"""A small client of the fleet API for operator tools: bearer token, JSON, one error type.

Standard library only (``urllib``), so ``bankiot fleet`` needs no extra dependency.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

PAGE = 500  # the API's largest page


class ApiError(Exception):
    """The API could not be reached or refused the request; the message says why."""


class FleetClient:
    """Requests to the cloud at ``base_url`` with the API token ``token``."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ApiError("%r is not an http(s) URL" % base_url)
        if not token:
            raise ApiError(
                "no API token: set BANKIOT_TOKEN (bankiot cloud token create OPERATOR makes one)"
            )
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` with the query ``params`` (None values left out); the JSON body."""
        return self.request("GET", path, params=params)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str = "application/octet-stream",
    ) -> Any:
        """``method`` on ``path`` with the query ``params`` (None values left out) and a JSON
        body (``json_body``) or raw bytes (``data``); the JSON answer, or None for none."""
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = "%s%s%s" % (self.base_url, path, "?" + query if query else "")
        headers = {"Authorization": "Bearer %s" % self.token, "Accept": "application/json"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = "application/json"
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError("%s %s: HTTP %d %s" % (method, path, exc.code, _reason(exc))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError("cannot reach %s: %s" % (self.base_url, reason)) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError("%s %s: the answer is not JSON" % (method, path)) from None

    def pages(self, path: str, key: str, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every item (``key`` of each page) of the listing at ``path`` matching
        ``filters``, following the pages (``next`` -> ``after``)."""
        after = None
        while True:
            page = self.get(path, {**filters, "limit": PAGE, "after": after})
            yield from page[key]
            after = page["next"]
            if after is None:
                return

    def devices(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every device of the inventory matching ``filters``, following the pages."""
        return self.pages("/api/fleet/devices", "devices", **filters)


def _reason(exc: urllib.error.HTTPError) -> str:
    """The API's message from an error body, else the HTTP reason phrase."""
    try:
        body = json.loads(exc.read())
    except ValueError:
        return str(exc.reason)
    message = body.get("message") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    text = str(message or exc.reason)
    return "%s %s" % (text, json.dumps(detail, sort_keys=True)) if detail else text
