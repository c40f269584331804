"""Cloud fixtures: an app on a freshly migrated database, once per database kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.engine import URL

from cloud.app import create_app
from cloud.config import load_config
from cloud.migrations import upgrade


def make_app(database_url: URL | str, data_dir: Path, **settings: str) -> APIFlask:
    """A cloud app on ``database_url`` after running every migration."""
    url = (
        database_url.render_as_string(hide_password=False)
        if isinstance(database_url, URL)
        else database_url
    )
    upgrade(url)
    config = load_config(
        environ={}, overrides={"data_dir": str(data_dir), "database_url": url, **settings}
    )
    config["TESTING"] = True
    return create_app(config)


@pytest.fixture
def cloud_app(database_url: URL, tmp_path: Path) -> Iterator[APIFlask]:
    """The cloud app on an empty migrated database; runs once on SQLite, once on PostgreSQL."""
    app = make_app(database_url, tmp_path / "data")
    yield app
    app.extensions["bankiot.db"].dispose()


@pytest.fixture
def client(cloud_app: APIFlask) -> FlaskClient:
    """A test client of ``cloud_app``."""
    return cloud_app.test_client()
