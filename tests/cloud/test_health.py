"""Liveness, readiness and metrics."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy.engine import URL

from tests.support.cloud import make_app
from tests.support.environment import free_port
from tests.support.mosquitto import MosquittoBroker


def body(response) -> dict:
    assert response.json is not None
    return response.json


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {}}


def test_readyz_checks_the_database(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert body(response)["checks"] == {"database": "ok"}


def test_readyz_reports_an_unreachable_broker(sqlite_url: URL, tmp_path: Path) -> None:
    app = make_app(sqlite_url, tmp_path, broker_url="mqtt://127.0.0.1:%d" % free_port())
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert body(response)["status"] == "not ready"
    assert body(response)["checks"]["database"] == "ok"
    assert body(response)["checks"]["broker"].startswith("unreachable")


def test_readyz_with_a_real_broker(
    sqlite_url: URL, tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    app = make_app(sqlite_url, tmp_path, broker_url="mqtt://127.0.0.1:%d" % mosquitto.port)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert body(response)["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_reports_a_database_that_does_not_answer(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:%d/none" % free_port()
    from cloud.app import create_app
    from cloud.config import load_config

    config = load_config(environ={}, overrides={"data_dir": str(tmp_path), "database_url": url})
    response = create_app(config).test_client().get("/readyz")
    assert response.status_code == 503
    assert body(response)["checks"]["database"].startswith("unreachable")


def test_metrics_count_requests(client: FlaskClient) -> None:
    client.get("/healthz")
    client.get("/no-such-page")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bankiot_http_requests_total{status="200"}' in text
    assert 'bankiot_http_requests_total{status="404"} 1.0' in text
