"""What server-rendered pages share: security headers, CSRF tokens for forms sent before
anyone is signed in, and the scripts of every area's pages (``assets``: ``cloud/static``,
served under ``/assets``; ``poll.js``, the live updates' polling).

Signed-in forms carry a token bound to the session (``cloud.people.sessions.csrf_token``
for staff, ``cloud.customers.accounts.csrf_token`` for customers). A sign-in form has no
session yet, yet still needs one: otherwise another site could sign a victim's browser in
to the attacker's account (login CSRF). ``PreSessionCsrf`` gives such forms a token bound
to a random cookie of their own: an HMAC of the cookie's value under the app's secret key,
so there is nothing to store, and another site can neither read the cookie nor forge the
token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Blueprint, current_app, g, request
from werkzeug.wrappers import Response

from cloud.people.sessions import cookie_secure

# The scripts every area's pages share (registered by the app factory).
assets = Blueprint("assets", __name__, static_folder="static", static_url_path="/assets")

# The Content-Security-Policy of pages: this origin only, no inline script, no framing.
# ``script`` pages may run this origin's scripts and fetch from it (live updates).
_BASE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def page_headers(script: bool = False) -> dict[str, str]:
    """Response headers for a page: a strict Content-Security-Policy, no caching, no
    sniffing, the referrer kept to this origin."""
    policy = _BASE_POLICY
    if script:
        policy += "; script-src 'self'; connect-src 'self'"
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


class PreSessionCsrf:
    """CSRF tokens for the forms of one area before sign-in (module docstring).

    ``namespace`` keeps areas' tokens apart; ``cookie`` and ``path`` name the cookie. Call
    ``token()`` while rendering a form, ``matches(sent)`` when it comes back, and
    ``finish(response)`` on every response of the area (it sets the cookie when ``token()``
    had to make one).
    """

    def __init__(self, namespace: str, cookie: str, path: str, max_age: int = 3600) -> None:
        self.namespace = namespace
        self.cookie = cookie
        self.path = path
        self.max_age = max_age
        self._g_value = "pre_csrf_value:%s" % namespace
        self._g_new = "pre_csrf_new:%s" % namespace

    def sign(self, value: str) -> str:
        """The token for the cookie value ``value``."""
        key = str(current_app.config["SECRET_KEY"]).encode()
        message = ("%s:%s" % (self.namespace, value)).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def value(self) -> str:
        """This browser's cookie value; a new one (set by ``finish``) if it has none."""
        value = g.get(self._g_value)
        if value is None:
            sent = request.cookies.get(self.cookie)
            value = sent if sent and len(sent) <= 64 else None
            if value is None:
                value = secrets.token_urlsafe(24)
                setattr(g, self._g_new, value)
            setattr(g, self._g_value, value)
        return value

    def token(self) -> str:
        """The token to put in a form."""
        return self.sign(self.value())

    def matches(self, sent: str | None) -> bool:
        """Whether the form's token ``sent`` is the one for this browser's cookie."""
        value = request.cookies.get(self.cookie)
        if not sent or not value:
            return False
        return hmac.compare_digest(sent.encode(), self.sign(value).encode())

    def finish(self, response: Response) -> Response:
        """Set the cookie on ``response`` if this request made a new one."""
        new = g.get(self._g_new)
        if new is not None:
            response.set_cookie(
                self.cookie,
                new,
                max_age=self.max_age,
                path=self.path,
                secure=cookie_secure(),
                httponly=True,
                samesite="Lax",
            )
        return response
