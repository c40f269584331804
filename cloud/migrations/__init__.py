"""Alembic migrations, run from code (no alembic.ini): ``upgrade(url)``, ``check(url)``.

Each area may keep its own branch of revisions (``branch_labels``) off the initial one;
``upgrade`` goes to every head, so areas do not have to queue behind each other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic Config for the database at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to ``revision`` (default: every head)."""
    from cloud.db import ensure_sqlite_folder

    ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> list[str]:
    """The revisions the database at ``url`` is at."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
