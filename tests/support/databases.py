"""Databases for data-layer tests: every such test runs on SQLite and on PostgreSQL.

- ``database_url`` is parametrized ``sqlite`` / ``postgresql``: a fresh, empty database per
  test (a file in the test's temp folder, or a new PostgreSQL database dropped afterwards).
- PostgreSQL is the machine's local server when one answers (``BANKIOT_TEST_POSTGRES`` may
  name another admin URL); otherwise a private instance is initialised and started for the
  session from the PostgreSQL binaries on the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from tests.support.environment import free_port, unavailable, wait_for_port

LOCAL_ADMIN_URLS = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "postgresql+psycopg://127.0.0.1:5432/postgres",
)


def _answers(url: str) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def _postgres_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.insert(0, Path(on_path).parent)
    return next((c for c in candidates if (c / "initdb").exists()), None)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a temp folder, on a free port, trust auth."""

    def __init__(self) -> None:
        bindir = _postgres_bindir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL not found: apt-get install postgresql")
        self.bindir = bindir
        self.port = free_port()
        # initdb refuses to run as root; use the postgres system user when we are root, in
        # a folder of its own (pytest's temp folders are closed to other users).
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.folder = Path(tempfile.mkdtemp(prefix="bankiot-postgres-"))
        if self.prefix:
            shutil.chown(self.folder, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True)

    def start(self) -> str:
        data = self.folder / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.folder / "log"),
            "-o",
            "-p %d -k %s -c listen_addresses=127.0.0.1" % (self.port, self.folder),
            "-w",
            "start",
        )
        if not wait_for_port("127.0.0.1", self.port, timeout=60):  # a loaded machine is slow
            raise RuntimeError("private PostgreSQL did not start")
        return "postgresql+psycopg://postgres@127.0.0.1:%d/postgres" % self.port

    def stop(self) -> None:
        data = self.folder / "data"
        if data.exists():
            subprocess.run(
                [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """An admin URL of a PostgreSQL server that tests may create databases on."""
    configured = os.environ.get("BANKIOT_TEST_POSTGRES")
    for url in (configured,) if configured else LOCAL_ADMIN_URLS:
        if _answers(url):
            yield url
            return
    if configured:
        unavailable("BANKIOT_TEST_POSTGRES=%s does not answer" % configured)
    try:
        private = PrivatePostgres()
        url = private.start()
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
        unavailable("no local PostgreSQL and none could be started: %s" % exc)
        raise
    yield url
    private.stop()


@contextmanager
def scratch_database(admin_url: str, template: str | None = None) -> Iterator[URL]:
    """A new PostgreSQL database (a copy of ``template`` if given), dropped on exit."""
    name = "bankiot_test_%s" % uuid.uuid4().hex[:12]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    create = 'CREATE DATABASE "%s"' % name
    if template is not None:
        create += ' TEMPLATE "%s"' % template
    with admin.connect() as conn:
        conn.execute(text(create))
    try:
        yield make_url(admin_url).set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[URL]:
    """A new empty PostgreSQL database for one test, dropped afterwards."""
    with scratch_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    """A new SQLite database file for one test."""
    return make_url("sqlite:///%s" % (tmp_path / "bankiot.sqlite3"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> URL:
    """An empty database for one test, once on SQLite and once on PostgreSQL."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param]
    return request.getfixturevalue(fixture)
