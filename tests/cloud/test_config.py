"""Configuration: defaults, TOML file, BANKIOT_* environment, flags; one-line errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloud.config import ConfigError, load_config, secret_key


def test_layers_override_in_order(tmp_path: Path) -> None:
    config_file = tmp_path / "cloud.toml"
    config_file.write_text('data_dir = "/srv/bankiot"\nhttp = "0.0.0.0:8000"\n')
    env = {"BANKIOT_HTTP": "127.0.0.1:9000", "BANKIOT_BROKER_URL": "mqtt://broker:1883"}
    config = load_config(config_file, env, overrides={"coap": "127.0.0.1:15683"})
    assert config["DATA_DIR"] == "/srv/bankiot"  # file
    assert config["HTTP"] == "127.0.0.1:9000"  # environment beats file
    assert config["BROKER_URL"] == "mqtt://broker:1883"
    assert config["COAP"] == "127.0.0.1:15683"  # flags beat everything
    assert config["DATABASE_URL"] == "sqlite:////srv/bankiot/bankiot.sqlite3"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('datadir = "x"\n', "unknown key 'datadir'"),
        ("http = 5000\n", "http must be a string"),
        ("http = \n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    config_file = tmp_path / "cloud.toml"
    config_file.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(config_file, {})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", {})


def test_secret_key_is_made_once_and_private(tmp_path: Path) -> None:
    first = secret_key(tmp_path)
    assert len(first) >= 48
    assert secret_key(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert secret_key(tmp_path / "other") != first  # each installation its own


def test_optional_settings_reach_the_app_only_when_set(tmp_path: Path) -> None:
    config = load_config(None, {"BANKIOT_LOGIN_RATE_LIMIT": "3 per minute"})
    assert config["LOGIN_RATE_LIMIT"] == "3 per minute"
    assert "OPERATOR_SESSION_HOURS" not in config  # the area's default applies
