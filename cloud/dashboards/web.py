"""The dashboards' blueprint and what every page shares: who is signed in, sign-in and
sign-out, rendering with the pages' headers, and error pages.

Staff sign in with their operator account: the same session as ``POST /api/auth/login``
(``cloud.people``: cookie ``bankiot_session``), so the API and the pages share one
sign-in. The sign-in form carries a pre-session CSRF token (``cloud.pages``); every other
form carries the session's CSRF token, which ``cloud.people`` checks on every POST that a
cookie authenticates (403 otherwise, nothing changed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from apiflask import APIBlueprint, HTTPError
from flask import (
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, Unauthorized
from werkzeug.wrappers import Response

from cloud.access import Principal, current_principal
from cloud.ingest.models import utc
from cloud.pages import PreSessionCsrf, page_headers
from cloud.people.auth_views import password_sign_in, sign_out
from cloud.people.authenticate import current_credential
from cloud.people.sessions import clear_cookie, set_cookie

# Pages, not an API: left out of the OpenAPI document.
bp = APIBlueprint(
    "dashboards",
    __name__,
    enable_openapi=False,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
PRE = PreSessionCsrf("dashboard-csrf:pre", "bankiot_dashboard_pre", "/dashboard")
WRONG = "Wrong name or password."
FORM_EXPIRED = "This form has expired: reload the page and send it again."
MESSAGES = {
    401: "Sign in to see this page.",
    403: "Your role may not do this.",
    404: "There is no such page, or it is not in your branches.",
    429: "Too many tries. Wait a while, then try again.",
}
F = TypeVar("F", bound=Callable[..., Any])


def now() -> dt.datetime:
    """The time the pages use (UTC)."""
    return dt.datetime.now(dt.UTC)


def principal_or_none() -> Principal | None:
    """The signed-in operator of this request, or None (devices are not staff)."""
    try:
        principal = current_principal()
    except Unauthorized:
        return None
    return principal if principal.kind == "operator" else None


def page(*roles: str) -> Callable[[F], F]:
    """View decorator for pages: the sign-in page when nobody is signed in, 403 when the
    role is not one of ``roles`` (every role when none given)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = principal_or_none()
            if principal is None:
                if request.method != "GET":
                    return render("dashboards/message.html", 401, error=MESSAGES[401])
                return redirect(url_for("dashboards.signin", next=request.full_path.rstrip("?")))
            if roles and principal.role not in roles:
                return render("dashboards/message.html", 403, error=MESSAGES[403])
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def live(*roles: str) -> Callable[[F], F]:
    """View decorator for the pages' JSON updates: 401 / 403 as JSON."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = principal_or_none()
            if principal is None:
                return make_response(jsonify(error="signed out"), 401)
            if roles and principal.role not in roles:
                return make_response(jsonify(error="forbidden"), 403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def poll_ms() -> int:
    """How often pages ask for updates (``DASHBOARD_POLL_MS``, 5000 by default)."""
    return int(current_app.config.get("DASHBOARD_POLL_MS", 5000))


def render(
    template: str, status: int = 200, *, anonymous: bool = False, **context: Any
) -> Response:
    """``template`` with what every page needs: who is signed in (nobody when
    ``anonymous``: error pages do not ask again), the form token, the poll interval."""
    principal = None if anonymous else principal_or_none()
    context.setdefault("error", None)
    context.setdefault("notice", None)
    context["principal"] = principal
    context["csrf"] = None
    if principal is not None:
        context["csrf"] = current_credential().csrf_token
    context["poll_ms"] = poll_ms()
    return make_response(render_template(template, **context), status)


def regions(templates: Mapping[str, str], context: Mapping[str, Any]) -> Response:
    """The JSON answer of a live endpoint: each region (its id: its partial template)
    rendered anew with ``context``, and the time."""
    parts = {key: render_template(template, **context) for key, template in templates.items()}
    return jsonify(regions=parts, at=now().strftime("%H:%M:%S UTC"))


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(page_headers(script=True))
    return PRE.finish(response)


@bp.errorhandler(HTTPError)
def _api_error(error: HTTPError) -> Response:
    status = error.status_code
    message = FORM_EXPIRED if status == 403 and request.method == "POST" else error.message
    return render("dashboards/message.html", status, anonymous=True, error=message)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    message = MESSAGES.get(status, error.name)
    return render("dashboards/message.html", status, anonymous=True, error=message)


# ---- filters ------------------------------------------------------------------------------


@bp.app_template_filter("dash_when")
def when(moment: dt.datetime | None) -> str:
    """A time as the pages show it (UTC), or a dash."""
    return "\u2013" if moment is None else utc(moment).strftime("%Y-%m-%d %H:%M:%S")


@bp.app_template_filter("dash_ago")
def ago(moment: dt.datetime | None) -> str:
    """How long ago ``moment`` was, roughly ("12 s ago", "3 min ago", "2 h ago")."""
    if moment is None:
        return "never"
    seconds = max(0, int((now() - utc(moment)).total_seconds()))
    if seconds < 120:
        return "%d s ago" % seconds
    if seconds < 7200:
        return "%d min ago" % (seconds // 60)
    if seconds < 172800:
        return "%d h ago" % (seconds // 3600)
    return "%d days ago" % (seconds // 86400)


# ---- sign in and out ----------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path on this site, else the fleet page."""
    default = url_for("dashboards.fleet")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard/"):
        return default
    if parts.path.startswith(url_for("dashboards.signin")):
        return default
    return parts.path + ("?" + parts.query if parts.query else "")


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Response:
    """GET: the form; POST: name, password, csrf_token, next -> signed in (401 when wrong)."""
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render("dashboards/signin.html", name="", next=target, pre=PRE.token())
    if not PRE.matches(request.form.get("csrf_token")):
        return render(
            "dashboards/signin.html",
            403,
            error=FORM_EXPIRED,
            name="",
            next=target,
            pre=PRE.token(),
        )
    name = request.form.get("name", "")
    signed = password_sign_in(name, request.form.get("password", ""))
    if signed is None:
        return render(
            "dashboards/signin.html",
            401,
            error=WRONG,
            name=name[:64],
            next=target,
            pre=PRE.token(),
        )
    _operator, secret, row = signed
    response = make_response(redirect(target))
    set_cookie(response, secret, row.expires_at)
    return response


@bp.post("/signout")
@page()
def signout() -> Response:
    """End the session (the form's CSRF token checked by ``cloud.people``)."""
    if current_credential().method == "session":
        sign_out()
    response = make_response(redirect(url_for("dashboards.signin")))
    clear_cookie(response)
    return response
