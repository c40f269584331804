"""Cloud configuration: defaults, then a TOML file, then ``BANKIOT_*`` environment variables.

Twelve-factor style: every setting can come from the environment (``BANKIOT_DATABASE_URL``
overrides ``database_url`` from the file). Keys are lower case in the file and upper case in
the Flask config. Unknown keys and wrong types are errors with one clear line: a cloud never
runs on a configuration it half understood.

| key | default | meaning |
|---|---|---|
| data_dir | ``./bankiot-data`` | where the SQLite database, the secret key and CA files live |
| database_url | SQLite file in data_dir | SQLAlchemy URL (``postgresql+psycopg://...`` at scale) |
| secret_key | generated once into data_dir/secret_key (mode 0600) | signs sessions |
| broker_url | none | ``mqtt://host:port`` of the broker gateways use; /readyz checks it |
| http | ``127.0.0.1:5000`` | where ``bankiot cloud serve`` listens |
| coap | ``127.0.0.1:5683`` | where CoAP ingest listens |
| operator_session_hours | 8 | how long an operator's sign-in lasts (1..720) |
| operator_cookie_secure | auto | ``true``/``false``: force the session cookie's Secure flag |
| login_rate_limit | ``5 per minute`` | failed sign-ins per client address |
| login_account_rate_limit | ``20 per hour`` | failed sign-ins per account name |
| enroll_rate_limit | ``20 per minute`` | refused enrollments per client address |
| customer_signin_rate_limit | ``5 per minute`` | customers' failed sign-ins per address |
| customer_code_rate_limit | ``10 per hour`` | refused pairing codes per customer |
| ratelimit_storage_uri | in memory | flask-limiter storage (``redis://...`` for replicas) |
| release_keys_dir | data_dir/release-keys | trusted release public keys: every ``*.pub`` in it |
| release_keys | none | more trusted release public keys: ``.pub`` paths, comma-separated |
| alert_* | see ``cloud.fleet.alert_rules`` | fleet alert thresholds (offline, queue, drift, ...) |
| ingest_thresholds | none | readings' threshold crossings as events (``cloud.ingest.thresholds``) |
| push_url | none | the bank's push gateway (https; http to loopback only); unset: logged |
| push_secret | none | HMAC-SHA256 key of each push (needed with push_url; never logged) |

The last fourteen rows are optional: unset, the area that reads them uses its default.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "BANKIOT_"

DEFAULTS: dict[str, Any] = {
    "data_dir": "./bankiot-data",
    "database_url": None,
    "secret_key": None,
    "broker_url": None,
    "http": "127.0.0.1:5000",
    "coap": "127.0.0.1:5683",
    "operator_session_hours": None,
    "operator_cookie_secure": None,
    "login_rate_limit": None,
    "login_account_rate_limit": None,
    "enroll_rate_limit": None,
    "customer_signin_rate_limit": None,
    "customer_code_rate_limit": None,
    "ratelimit_storage_uri": None,
    "release_keys_dir": None,
    "release_keys": None,
    "alert_offline_after": None,
    "alert_queue_depth": None,
    "alert_queue_growth": None,
    "alert_battery_low": None,
    "alert_auth_failures": None,
    "alert_decode_failures": None,
    "alert_window": None,
    "alert_drift_window": None,
    "alert_drift_halflife": None,
    "alert_drift_limit": None,
    "alert_beacon_silent": None,
    "alert_envelopes_rejected": None,
    "ingest_thresholds": None,
    "push_url": None,
    "push_secret": None,
}

# Settings left out of the Flask config when unset, so their area's own default applies.
OPTIONAL = frozenset(
    (
        "operator_session_hours",
        "operator_cookie_secure",
        "login_rate_limit",
        "login_account_rate_limit",
        "enroll_rate_limit",
        "customer_signin_rate_limit",
        "customer_code_rate_limit",
        "ratelimit_storage_uri",
        "release_keys_dir",
        "release_keys",
        "alert_offline_after",
        "alert_queue_depth",
        "alert_queue_growth",
        "alert_battery_low",
        "alert_auth_failures",
        "alert_decode_failures",
        "alert_window",
        "alert_drift_window",
        "alert_drift_halflife",
        "alert_drift_limit",
        "alert_beacon_silent",
        "alert_envelopes_rejected",
        "ingest_thresholds",
        "push_url",
        "push_secret",
    )
)


class ConfigError(ValueError):
    """A configuration file or variable that cannot be used; the message says which."""


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("configuration file %s does not exist" % path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("configuration file %s is not valid TOML: %s" % (path, exc)) from None
    for key, value in data.items():
        if key not in DEFAULTS:
            raise ConfigError(
                "configuration file %s: unknown key %r (known: %s)"
                % (path, key, ", ".join(sorted(DEFAULTS)))
            )
        if not isinstance(value, str):
            raise ConfigError("configuration file %s: %s must be a string" % (path, key))
    return data


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The cloud's settings as a Flask config mapping (upper-case keys).

    Order: defaults, the TOML file at ``path``, ``BANKIOT_*`` variables of ``environ``
    (default ``os.environ``), then ``overrides`` (command-line flags, tests).
    """
    environ = os.environ if environ is None else environ
    values = dict(DEFAULTS)
    if path is not None:
        values.update(_from_file(path))
    for key in DEFAULTS:
        env_value = environ.get(ENV_PREFIX + key.upper())
        if env_value is not None:
            values[key] = env_value
    for key, value in (overrides or {}).items():
        if key not in DEFAULTS:
            raise ConfigError("unknown setting %r" % key)
        if value is not None:
            values[key] = value
    if values["push_url"]:  # refused at start, in one line, not at the first push
        from cloud.notifications.webhook import check_settings

        check_settings(values["push_url"], values["push_secret"])
    data_dir = Path(values["data_dir"])
    if values["database_url"] is None:
        values["database_url"] = "sqlite:///%s" % (data_dir / "bankiot.sqlite3")
    return {
        key.upper(): value
        for key, value in values.items()
        if not (key in OPTIONAL and value is None)
    }


def secret_key(data_dir: Path) -> str:
    """The session-signing key kept in ``data_dir/secret_key``; made on first use (0600).

    Never in the repository or the logs: each installation has its own.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
