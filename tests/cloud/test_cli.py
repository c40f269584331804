"""``bankiot cloud``: database upgrade from the command line, one-line errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from cloud.migrations import alembic_config
from provisioning.cli import main


def test_db_upgrade_creates_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["cloud", "db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    heads = script.get_heads()
    out = capsys.readouterr().out
    # The database is at every area's head; a head that another area's revision depends on
    # (depends_on, e.g. bank <- analytics) is recorded through that revision instead.
    depended_on = {
        dependency
        for revision in script.walk_revisions()
        for dependency in _as_tuple(revision.dependencies)
    }
    assert heads and all(head in out or head in depended_on for head in heads)
    assert main(["cloud", "db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == out  # nothing left to do: the same heads again
    engine = create_engine("sqlite:///%s" % (tmp_path / "bankiot.sqlite3"))
    assert "devices" in inspect(engine).get_table_names()
    engine.dispose()


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def test_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "cloud.toml"
    bad.write_text("nope = 1\n")
    assert main(["cloud", "db", "upgrade", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unknown key 'nope'" in err


def test_unreachable_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANKIOT_DATABASE_URL", "postgresql+psycopg://x@127.0.0.1:1/none")
    assert main(["cloud", "db", "upgrade", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: migration failed")
