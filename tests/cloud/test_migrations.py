"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL

from cloud.migrations import current, upgrade
from cloud.models import Base


def test_upgrade_matches_the_models(empty_database_url: URL) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert {"branches", "devices", "audit_events"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(empty_database_url: URL) -> None:
    url = empty_database_url.render_as_string(hide_password=False)
    upgrade(url)
    first = current(url)
    upgrade(url)
    assert current(url) == first and first
