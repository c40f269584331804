"""People and access: operator accounts, sessions, API tokens, rate limits, audit reads.

``init_app(app)`` registers the authenticator with ``cloud.access`` (areas then use
``current_principal()``, ``require()``, ``check_branch()``), the blueprints, the OpenAPI
security schemes and the login rate limits.

Settings read from the app config (defaults in brackets):

| key | meaning |
|---|---|
| ``OPERATOR_SESSION_HOURS`` [8] | how long a sign-in lasts |
| ``OPERATOR_COOKIE_SECURE`` [automatic] | force the Secure cookie flag on or off |
| ``LOGIN_RATE_LIMIT`` [5 per minute] | failed sign-ins allowed per client address |
| ``LOGIN_ACCOUNT_RATE_LIMIT`` [20 per hour] | failed sign-ins allowed per account name |
| ``RATELIMIT_STORAGE_URI`` [memory://] | where flask-limiter keeps its counts |
"""

from __future__ import annotations

from flask import Flask, Response, request
from limits import parse_many

from cloud.access import set_authenticator
from cloud.config import ConfigError
from cloud.people import audit_views, auth_views, branch_views, operator_views, token_views
from cloud.people.authenticate import authenticate
from cloud.people.limits import limit_endpoint, limiter
from cloud.people.openapi import declare_security


def _failed(status: int):
    def failed(response: Response) -> bool:
        return response.status_code == status

    return failed


def _login_account() -> str:
    body = request.get_json(silent=True)
    name = body.get("name") if isinstance(body, dict) else None
    return "account:%s" % name.strip().lower()[:64] if isinstance(name, str) else "account:-"


def _www_authenticate(response: Response) -> Response:
    if response.status_code == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = 'Bearer realm="bankiot"'
    return response


def _check_settings(app: Flask) -> None:
    """Refuse settings this area cannot use, with one line naming the setting."""
    hours = app.config.get("OPERATOR_SESSION_HOURS", 8)
    try:
        app.config["OPERATOR_SESSION_HOURS"] = int(hours)
    except (TypeError, ValueError):
        raise ConfigError("OPERATOR_SESSION_HOURS must be a whole number, not %r" % hours) from None
    if not 1 <= app.config["OPERATOR_SESSION_HOURS"] <= 24 * 30:
        raise ConfigError("OPERATOR_SESSION_HOURS must be 1 to 720, not %r" % hours)
    for key in ("LOGIN_RATE_LIMIT", "LOGIN_ACCOUNT_RATE_LIMIT"):
        value = app.config.get(key)
        if value is None:
            continue
        try:
            parse_many(value)
        except ValueError:
            message = "%s: %r is not a rate limit like '5 per minute'" % (key, value)
            raise ConfigError(message) from None


def init_app(app: Flask) -> None:
    """Install people and access on ``app``."""
    set_authenticator(app, authenticate)
    declare_security(app)
    for module in (auth_views, token_views, operator_views, branch_views, audit_views):
        app.register_blueprint(module.bp)
    _check_settings(app)
    limiter(app)
    per_address = app.config.get("LOGIN_RATE_LIMIT", "5 per minute")
    per_account = app.config.get("LOGIN_ACCOUNT_RATE_LIMIT", "20 per hour")
    limit_endpoint(app, "signin.login", per_address, deduct_when=_failed(401))
    limit_endpoint(
        app, "signin.login", per_account, key_func=_login_account, deduct_when=_failed(401)
    )
    limit_endpoint(app, "signin.change_password", per_address, deduct_when=_failed(403))
    app.after_request(_www_authenticate)
