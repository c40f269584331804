"""The demo's HTTP side: the cloud's JSON API as an operator calls it, and HTML forms as a
customer's browser submits them (cookies, the form's CSRF token, redirects followed).
Only the standard library: the demo needs nothing a deployment does not."""

from __future__ import annotations

import http.cookiejar
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
TIMEOUT_S = 20


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which, in one line."""


class Browser:
    """One client of ``base`` with its own cookies (an operator's session or a customer's
    browser); ``token`` is sent as ``Authorization: Bearer`` when set."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.csrf: str | None = None  # the API session's, after ``login``
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def request(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str]:
        """``method path``: the final status and body (redirects followed, errors too)."""
        if self.token:
            headers = {**headers, "Authorization": "Bearer " + self.token}
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=TIMEOUT_S) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def api(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)
    ) -> Any:
        """A JSON API call; ``DemoError`` naming the call unless the status is in ``ok``."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.csrf is not None:
            headers["X-CSRF-Token"] = self.csrf
        return _json(method, path, *self.request(method, path, data, headers), ok)

    def login(self, name: str, password: str) -> None:
        """Sign in at ``POST /api/auth/login`` (session cookie and CSRF token kept)."""
        answer = self.api("POST", "/api/auth/login", {"name": name, "password": password})
        self.csrf = answer["csrf_token"]

    def form(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        """Open the form page at ``path`` and submit ``fields`` with its CSRF token, as a
        browser does: the final status and page."""
        status, page = self.request("GET", path, None, {})
        found = CSRF_FIELD.search(page)
        if status != 200 or found is None:
            raise DemoError("GET %s answered %d without a form" % (path, status))
        data = urllib.parse.urlencode({**fields, "csrf_token": found.group(1)}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.request("POST", path, data, headers)

    def upload(self, path: str, files: list[tuple[str, bytes, str]], fields: dict[str, str]) -> Any:
        """POST ``files`` (name, content, content type) as multipart parts named ``file``,
        with ``fields``, as a core-banking system pushes statements; the JSON answer, or
        ``DemoError`` naming the call unless the status is 200 or 201."""
        boundary = "bankiot-demo-" + secrets.token_hex(12)
        body = bytearray()
        for name, value in fields.items():
            body += (
                '--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                % (boundary, name, value)
            ).encode()
        for filename, content, kind in files:
            body += (
                '--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                "Content-Type: %s\r\n\r\n" % (boundary, filename, kind)
            ).encode()
            body += content + b"\r\n"
        body += ("--%s--\r\n" % boundary).encode()
        headers = {
            "Accept": "application/json",
            "Content-Type": "multipart/form-data; boundary=%s" % boundary,
        }
        return _json("POST", path, *self.request("POST", path, bytes(body), headers))


def _json(method: str, path: str, status: int, text: str, ok: tuple[int, ...] = (200, 201)) -> Any:
    """The JSON answer of ``method path`` (None for an empty body); ``DemoError`` naming the
    call unless ``status`` is in ``ok``."""
    if status not in ok:
        raise DemoError("%s %s answered %d: %s" % (method, path, status, text[:300]))
    return json.loads(text) if text.strip() else None
