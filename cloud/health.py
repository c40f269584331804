"""Liveness, readiness and Prometheus metrics.

- ``/healthz``: the process answers (for a supervisor's restart decision).
- ``/readyz``: the database answers and, when a broker is configured, the broker accepts a
  TCP connection (for a load balancer's routing decision); 503 with the failing checks.
- ``/metrics``: Prometheus text format, from this app's own registry.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from apiflask import APIBlueprint, Schema
from apiflask.fields import Dict, String
from flask import Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from cloud.db import database

bp = APIBlueprint("health", __name__, tag="Health")


class HealthOut(Schema):
    status = String(required=True)
    checks = Dict(keys=String(), values=String())


def metrics_registry() -> CollectorRegistry:
    """The app's Prometheus registry (one per app, so tests do not share counters)."""
    return current_app.extensions["bankiot.metrics"]


def init_app(app) -> None:
    registry = CollectorRegistry()
    app.extensions["bankiot.metrics"] = registry
    app.extensions["bankiot.requests"] = Counter(
        "bankiot_http_requests", "HTTP requests answered", ["status"], registry=registry
    )

    @app.after_request
    def count(response: Response) -> Response:
        app.extensions["bankiot.requests"].labels(str(response.status_code)).inc()
        return response

    app.register_blueprint(bp)


def _broker_check(url: str) -> str:
    parts = urlsplit(url if "://" in url else "mqtt://" + url)
    port = parts.port or (8883 if parts.scheme in ("mqtts", "ssl") else 1883)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
            return "ok"
    except OSError as exc:
        return "unreachable: %s" % exc.strerror if exc.strerror else "unreachable"


@bp.get("/healthz")
@bp.output(HealthOut)
@bp.doc(summary="Liveness: the process answers")
def healthz() -> dict:
    return {"status": "ok", "checks": {}}


@bp.get("/readyz")
@bp.output(HealthOut)
@bp.doc(summary="Readiness: database and broker reachable", responses=[200, 503])
def readyz() -> tuple[dict, int]:
    checks = {}
    try:
        database().ping()
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready", reported, not raised
        checks["database"] = "unreachable: %s" % type(exc).__name__
    broker = current_app.config.get("BROKER_URL")
    if broker:
        checks["broker"] = _broker_check(broker)
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503


@bp.get("/metrics")
@bp.doc(summary="Prometheus metrics", responses={200: {"description": "text format"}})
def metrics() -> Response:
    return Response(generate_latest(metrics_registry()), mimetype=CONTENT_TYPE_LATEST)
