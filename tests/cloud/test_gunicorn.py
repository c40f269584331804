"""The web application under gunicorn, as docs/scale.md deploys it: the app factory called
by gunicorn (``cloud.app:create_app()``), several worker processes, PostgreSQL, settings
from ``BANKIOT_*`` variables only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy.engine import URL

from tests.support.environment import free_port, unavailable, wait_for_port


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def first_answer(url: str, seconds: float) -> dict[str, object]:
    """``get_json(url)`` once a worker answers: gunicorn listens before its workers have
    imported the application, which takes long on a loaded machine."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return get_json(url)
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_gunicorn_serves_the_app_factory_with_two_workers_on_postgresql(
    migrated_postgres_url: URL, tmp_path: Path
) -> None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        unavailable("gunicorn is not installed (pip install 'bankiot[cloud]')")
    port = free_port()
    env = dict(
        os.environ,
        BANKIOT_DATA_DIR=str(tmp_path / "data"),
        BANKIOT_DATABASE_URL=migrated_postgres_url.render_as_string(hide_password=False),
        BANKIOT_SECRET_KEY="the same key on every web host",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            "127.0.0.1:%d" % port,
            "cloud.app:create_app()",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_port("127.0.0.1", port, 60), "gunicorn never listened"
        assert first_answer("http://127.0.0.1:%d/healthz" % port, 90)["status"] == "ok"
        ready = get_json("http://127.0.0.1:%d/readyz" % port)
        assert ready == {"checks": {"database": "ok"}, "status": "ready"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=60)
    assert process.returncode == 0, log
    assert log.count("Booting worker") == 2, log
