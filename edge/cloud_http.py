"""One JSON POST to the cloud, for enrollment and renewal: TLS verified, no redirects.

``post_json`` returns the status and the raw answer (at most ``max_answer`` + 1 bytes, so the
caller can tell an answer that is too long) or raises one of three typed errors, which the
callers turn into their own one-line errors: ``CAFileError`` (the CA file cannot be used),
``HttpRefused`` (an error status, with the cloud's one-line message, or a redirect: urllib
would turn the POST into a GET without its body) and ``Unreachable``. Never a secret in a
message: bodies are the caller's and are not echoed.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import IO, Any


class CAFileError(Exception):
    """The CA file given for the cloud's TLS cannot be used."""


class HttpRefused(Exception):
    """The cloud answered an error (or redirect) status; ``message`` is its one line."""

    def __init__(self, status: int, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.location = location

    @property
    def redirect(self) -> bool:
        return 300 <= self.status < 400


class Unreachable(Exception):
    """The cloud could not be reached; ``reason`` says why."""

    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.reason = reason


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would turn the POST into a GET without its body."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


def cloud_message(exc: urllib.error.HTTPError, max_answer: int) -> str:
    """The cloud's one-line message from an error answer (apiflask: message and detail)."""
    try:
        body = json.loads(exc.read(max_answer))
    except (ValueError, OSError):
        body = None
    if not isinstance(body, dict):
        return str(exc.reason)
    text = str(body.get("message") or exc.reason)
    detail = body.get("detail")
    if detail:
        text = "%s %s" % (text, json.dumps(detail, sort_keys=True))
    return " ".join(text.split())  # one line, whatever the cloud put in it


def post_json(
    url: str, body: Any, cafile: Path | None, timeout: float, max_answer: int
) -> tuple[int, bytes]:
    """POST ``body`` as JSON to ``url``; ``(status, raw answer)`` (module docstring)."""
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if url.startswith("https:"):
        try:
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        except (OSError, ssl.SSLError) as exc:
            raise CAFileError("cannot use the CA file %s: %s" % (cafile, exc)) from None
        handlers.append(urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as response:
            return response.status, response.read(max_answer + 1)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise HttpRefused(exc.code, "redirect", exc.headers.get("Location", "?")) from None
        raise HttpRefused(exc.code, cloud_message(exc, max_answer)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(getattr(exc, "reason", None) or exc) from None
