"""The one data layer: SQLAlchemy 2 ORM over SQLite (default) or PostgreSQL (psycopg 3).

Web views get a session per request (``session()``, closed at teardown, rolled back on an
error); the asyncio ingest services open their own sessions from the same ``Database``.
Tables come from the models of every area (``cloud/*/models.py``); the schema is created and
upgraded only by Alembic migrations (``migrations.upgrade``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import BigInteger, Engine, Integer, MetaData, create_engine, event, text
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# One naming convention, so migrations name constraints the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# A 64-bit key on PostgreSQL; SQLite auto-increments only an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Base of every ORM model."""

    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores foreign keys unless asked
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the ingest writer
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """An engine and a session factory for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite database file: SQLite makes the file, not its folder."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


def init_app(app: Flask) -> None:
    """Attach a Database for ``DATABASE_URL`` to ``app`` and close sessions at teardown."""
    url = app.config["DATABASE_URL"]
    ensure_sqlite_folder(url)
    app.extensions["bankiot.db"] = Database(url)

    @app.teardown_appcontext
    def close_session(error: BaseException | None) -> None:
        current = g.pop("db_session", None)
        if current is not None:
            if error is not None:
                current.rollback()
            current.close()


def database() -> Database:
    """The current app's Database."""
    return current_app.extensions["bankiot.db"]


def session() -> Session:
    """The session of the current request (or app context)."""
    if "db_session" not in g:
        g.db_session = database().sessions()
    return g.db_session
