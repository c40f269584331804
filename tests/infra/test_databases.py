"""The database fixtures give a fresh, working database of each kind."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL


def test_each_database_is_empty_and_round_trips_rows(database_url: URL) -> None:
    engine = create_engine(database_url)
    try:
        assert inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(
                text("CREATE TABLE t (gateway VARCHAR(20), seq INTEGER, UNIQUE (gateway, seq))")
            )
            conn.execute(text("INSERT INTO t VALUES ('gw-1', 1), ('gw-1', 2)"))
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT gateway, seq FROM t ORDER BY seq")).all()
        assert [tuple(r) for r in rows] == [("gw-1", 1), ("gw-1", 2)]
        assert engine.dialect.name == database_url.get_backend_name()
    finally:
        engine.dispose()


def test_postgresql_is_a_real_server(postgres_url: URL) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version_num")).scalar_one()
        assert int(version) >= 120000
    finally:
        engine.dispose()
