"""Cloud tests all need the schema: here ``database_url`` is a fresh database already at the
current migrations (copied from a template migrated once per session), on SQLite and on
PostgreSQL. Tests of the migrations themselves use ``empty_database_url``."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> URL:
    fixture = {"sqlite": "migrated_sqlite_url", "postgresql": "migrated_postgres_url"}
    return request.getfixturevalue(fixture[request.param])


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest) -> URL:
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}
    return request.getfixturevalue(fixture[request.param])
