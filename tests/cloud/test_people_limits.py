"""Rate limits: failed sign-ins per client address and per account, and for other areas.

Rate limiting is not data-layer behaviour, so these run on SQLite only. Client addresses are
set in the WSGI environment of the test client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIBlueprint, APIFlask
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage
from sqlalchemy.engine import URL

from cloud.app import create_app
from cloud.config import ConfigError, load_config
from cloud.migrations import upgrade
from cloud.people.limits import limit_endpoint
from tests.cloud.people_actions import PASSWORD, add_operator


@pytest.fixture
def make(sqlite_url: URL, tmp_path: Path) -> Iterator[Any]:
    """Apps on one migrated SQLite database, with extra settings in the Flask config."""
    url = sqlite_url.render_as_string(hide_password=False)
    upgrade(url)
    apps: list[APIFlask] = []

    def build(**extra: Any) -> APIFlask:
        config = load_config(
            environ={}, overrides={"data_dir": str(tmp_path / "data"), "database_url": url}
        )
        config.update(TESTING=True, **extra)
        apps.append(create_app(config))
        return apps[-1]

    yield build
    for app in apps:
        app.extensions["bankiot.db"].dispose()


def login(app: APIFlask, name: str, password: str, address: str = "192.0.2.10"):
    client = app.test_client()
    payload = {"name": name, "password": password}
    return client.post("/api/auth/login", json=payload, environ_base={"REMOTE_ADDR": address})


def test_429_after_five_failed_sign_ins_from_one_address(make) -> None:
    app = make()
    add_operator(app, "ops", "operations")
    for _ in range(5):
        assert login(app, "ops", "not the password").status_code == 401
    refused = login(app, "ops", PASSWORD)  # even the right password waits now
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.json is not None and refused.json["message"] == "Too Many Requests"
    assert login(app, "ops", PASSWORD, address="192.0.2.11").status_code == 200


def test_successful_sign_ins_are_not_counted(make) -> None:
    app = make()
    add_operator(app, "ops", "operations")
    for _ in range(8):
        assert login(app, "ops", PASSWORD).status_code == 200
    assert login(app, "ops", "not the password").status_code == 401


def test_one_account_is_limited_across_addresses(make) -> None:
    app = make(LOGIN_ACCOUNT_RATE_LIMIT="3 per hour")
    add_operator(app, "ops", "operations")
    add_operator(app, "ann", "operations")
    for n in range(3):
        assert login(app, "OPS", "not the password", "198.51.100.%d" % n).status_code == 401
    assert login(app, "ops", PASSWORD, "198.51.100.9").status_code == 429
    assert login(app, "ann", PASSWORD, "198.51.100.9").status_code == 200


def test_each_app_counts_for_itself(make) -> None:
    first, second = make(LOGIN_RATE_LIMIT="1 per minute"), make(LOGIN_RATE_LIMIT="1 per minute")
    add_operator(first, "ops", "operations")
    assert login(first, "ops", "not the password").status_code == 401
    assert login(first, "ops", PASSWORD).status_code == 429
    assert login(second, "ops", PASSWORD).status_code == 200


def test_other_areas_limit_their_own_views(make) -> None:
    app = make()
    bp = APIBlueprint("enroll_demo", __name__)

    @bp.post("/enroll-demo")
    def enroll() -> dict:
        return {"ok": True}

    app.register_blueprint(bp)
    limit_endpoint(app, "enroll_demo.enroll", "2 per minute")
    client = app.test_client()
    assert [client.post("/enroll-demo").status_code for _ in range(3)] == [200, 200, 429]


def test_the_storage_is_configurable(make) -> None:
    app = make(RATELIMIT_STORAGE_URI="memory://")
    assert isinstance(app.extensions["bankiot.limiter"].storage, MemoryStorage)
    with pytest.raises(ConfigurationError, match="nosuch"):
        make(RATELIMIT_STORAGE_URI="nosuch://host")


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ({"LOGIN_RATE_LIMIT": "often"}, "LOGIN_RATE_LIMIT: 'often' is not a rate limit"),
        ({"OPERATOR_SESSION_HOURS": "eight"}, "must be a whole number"),
        ({"OPERATOR_SESSION_HOURS": 0}, "must be 1 to 720"),
    ],
)
def test_unusable_settings_are_refused_at_start(make, setting: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make(**setting)
