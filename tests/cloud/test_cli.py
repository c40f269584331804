"""``bankiot cloud``: database upgrade from the command line, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from cloud.migrations import alembic_config
from provisioning.cli import main


def test_db_upgrade_creates_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["cloud", "db", "upgrade", "--data-dir", str(tmp_path)]) == 0
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    out = capsys.readouterr().out
    assert heads and all(head in out for head in heads)
    engine = create_engine("sqlite:///%s" % (tmp_path / "bankiot.sqlite3"))
    assert "devices" in inspect(engine).get_table_names()
    engine.dispose()


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
