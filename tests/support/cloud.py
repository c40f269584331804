"""Cloud fixtures: an app on a freshly migrated database, once per database kind."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy.engine import URL, make_url

from cloud.app import create_app
from cloud.config import load_config
from cloud.migrations import upgrade
from tests.support.databases import scratch_database


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
def sqlite_app(migrated_sqlite_url: URL, tmp_path: Path) -> Iterator[APIFlask]:
    """The cloud app on an empty migrated SQLite database only: for the browser tests, whose
    pages read the database as every other test does."""
    app = make_app(migrated_sqlite_url, tmp_path / "data")
    yield app
    app.extensions["bankiot.db"].dispose()


@pytest.fixture
def client(cloud_app: APIFlask) -> FlaskClient:
    """A test client of ``cloud_app``."""
    return cloud_app.test_client()


# --- Databases already at the current migrations ------------------------------------------
# Running every area's migrations costs up to a second per test on PostgreSQL. They run once
# per session into a template; each test gets a copy (a file copy on SQLite, CREATE
# DATABASE ... TEMPLATE on PostgreSQL), still a fresh database of its own.


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    upgrade("sqlite:///%s" % path)
    return path


@pytest.fixture
def migrated_sqlite_url(migrated_sqlite_template: Path, tmp_path: Path) -> URL:
    """A fresh SQLite database at the current migrations."""
    target = tmp_path / "bankiot.sqlite3"
    shutil.copyfile(migrated_sqlite_template, target)
    return make_url("sqlite:///%s" % target)


@pytest.fixture(scope="session")
def migrated_postgres_template(postgres_admin_url: str) -> Iterator[str]:
    with scratch_database(postgres_admin_url) as url:
        upgrade(url.render_as_string(hide_password=False))
        assert url.database is not None
        yield url.database


@pytest.fixture
def migrated_postgres_url(
    migrated_postgres_template: str, postgres_admin_url: str
) -> Iterator[URL]:
    """A fresh PostgreSQL database at the current migrations, dropped afterwards."""
    with scratch_database(postgres_admin_url, template=migrated_postgres_template) as url:
        yield url
