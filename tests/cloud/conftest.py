"""Cloud tests all need the schema: here ``database_url`` is a fresh database already at the
current migrations (copied from a template migrated once per session), on SQLite and on
PostgreSQL; ``db`` is a session on it. Tests of the migrations themselves use
``empty_database_url``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiflask import APIFlask
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from cloud.db import Database
from tests.cloud.fleet_actions import served_app
from tests.cloud.release_actions import Releases, releases_app


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> URL:
    fixture = {"sqlite": "migrated_sqlite_url", "postgresql": "migrated_postgres_url"}
    return request.getfixturevalue(fixture[request.param])


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest) -> URL:
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}
    return request.getfixturevalue(fixture[request.param])


@pytest.fixture
def db(database_url: URL) -> Iterator[Session]:
    """A session on ``database_url`` (a fresh migrated database, SQLite and PostgreSQL), for
    tests of a data layer without the web app."""
    database = Database(database_url.render_as_string(hide_password=False))
    with database.sessions() as session:
        yield session
    database.dispose()


@pytest.fixture
def served(cloud_app: APIFlask) -> Iterator[str]:
    """``cloud_app`` on a real HTTP server on a free local port; its base URL."""
    with served_app(cloud_app) as url:
        yield url


@pytest.fixture
def rel(database_url: URL, tmp_path: Path) -> Iterator[Releases]:
    """The cloud app trusting a new release key (``release_actions.releases_app``)."""
    releases = releases_app(database_url, tmp_path)
    yield releases
    releases.app.extensions["bankiot.db"].dispose()
