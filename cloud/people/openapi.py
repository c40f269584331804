"""How the people and access API describes its security in the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus
from typing import Any

from apiflask import abort
from flask import Flask

from cloud.people.sessions import COOKIE_NAME, CSRF_HEADER

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "BearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (bkt_...) made with POST /api/tokens.",
    },
    "SessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE_NAME,
        "description": "The session of POST /api/auth/login. State-changing requests also "
        "need the session's CSRF token in the %s header." % CSRF_HEADER,
    },
}

# Either credential will do.
SECURITY: list[str | dict[str, list]] = ["BearerAuth", "SessionCookie"]


def signed_in(*statuses: int) -> dict[int, str]:
    """The responses of a view that needs a signed-in caller, plus ``statuses``."""
    responses = {401: "Not signed in", 403: "Not allowed for this caller"}
    for status in statuses:
        responses.setdefault(status, HTTPStatus(status).phrase)
    return responses


def declare_security(app: Flask) -> None:
    """Add the security schemes to ``app``'s OpenAPI document."""
    schemes = dict(app.config.get("SECURITY_SCHEMES") or {})
    schemes.update(SECURITY_SCHEMES)
    app.config["SECURITY_SCHEMES"] = schemes


def utc_param(moment: dt.datetime, name: str = "since") -> dt.datetime:
    """An API's time parameter ``name`` in UTC (UTC if it has no offset); 422 in one line
    if UTC cannot hold it."""
    try:
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    except OverflowError:
        abort(422, "%s %s is out of range" % (name, moment.isoformat()))
