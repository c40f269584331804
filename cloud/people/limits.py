"""Rate limits (flask-limiter), one Limiter per app, for login and for other areas' views.

Storage is in memory by default; set ``RATELIMIT_STORAGE_URI`` (for example
``redis://host:6379``) when several web processes must share the counts. A breached limit
answers 429 with a ``Retry-After`` header. Client addresses come from the connection: behind
a reverse proxy, wrap the app in werkzeug's ProxyFix so they are the clients', not the proxy's.

Other areas limit a view of theirs after registering its blueprint::

    limit_endpoint(app, "enrollment.enroll", "10 per minute")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from flask import Flask, Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

EXTENSION = "bankiot.limiter"


def limiter(app: Flask) -> Limiter:
    """The app's Limiter, made on first use."""
    if EXTENSION not in app.extensions:
        app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
        app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
        app.extensions[EXTENSION] = Limiter(get_remote_address, app=app)
    return app.extensions[EXTENSION]


def limit_endpoint(
    app: Flask,
    endpoint: str,
    limit_value: str,
    *,
    key_func: Callable[[], str] | None = None,
    deduct_when: Callable[[Response], bool] | None = None,
    **options: Any,
) -> None:
    """Rate-limit the view registered as ``endpoint`` on ``app`` (by client address).

    ``deduct_when`` counts only the responses it accepts (for example failed logins); the
    limit is still checked before the view runs. Call once per limit; limits add up.
    """
    view: Callable[..., Any] = app.view_functions[endpoint]
    decorate = limiter(app).limit(
        limit_value, key_func=key_func, deduct_when=deduct_when, **options
    )
    app.view_functions[endpoint] = cast(Any, decorate(view))
