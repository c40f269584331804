"""The cloud's Flask application factory.

``create_app(config)`` builds an app from ``cloud.config.load_config`` settings (or a
mapping in tests): the data layer, then one blueprint per area. The OpenAPI 3 document is
served at ``/openapi.json`` and interactive docs at ``/docs``; requests and responses are
validated against the schemas declared on each view.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apiflask import APIFlask

import bankiot_core
from cloud import (
    analytics,
    apps,
    bank,
    customers,
    dashboards,
    db,
    events,
    fleet,
    health,
    identity,
    ingest,
    notifications,
    offers,
    pages,
    people,
)
from cloud.config import load_config, secret_key


def create_app(config: Mapping[str, Any] | None = None) -> APIFlask:
    """Build the cloud application; ``config`` defaults to ``load_config()``."""
    settings = dict(config) if config is not None else load_config()
    app = APIFlask(
        "bankiot.cloud",
        title="bankiot cloud",
        version=bankiot_core.VERSION,
        spec_path="/openapi.json",
        docs_path="/docs",
    )
    app.config.update(settings)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key(Path(app.config["DATA_DIR"]))
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config["SPEC_FORMAT"] = "json"
    app.config["VALIDATION_ERROR_STATUS_CODE"] = 422
    db.init_app(app)
    health.init_app(app)
    people.init_app(app)
    identity.init_app(app)
    ingest.init_app(app)
    fleet.init_app(app)
    customers.init_app(app)
    bank.init_app(app)
    offers.init_app(app)
    notifications.init_app(app)
    analytics.init_app(app)
    events.init_app(app)
    apps.init_app(app)
    dashboards.init_app(app)
    app.register_blueprint(pages.assets)
    return app
