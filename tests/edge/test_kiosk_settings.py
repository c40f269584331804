"""``[kiosk]`` in ``gateway.toml`` (``edge.settings``): defaults, and one clear line per
refusal naming the file and the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from edge.errors import SettingsError
from edge.settings import DEFAULT_SERVICES, KioskSettings, parse_settings
from hw.micropython_runner import PROJECT_ROOT

FILE = Path("/etc/bankiot/gateway.toml")


def kiosk(text: str) -> KioskSettings | None:
    return parse_settings(tomllib.loads(text), FILE).kiosk


def test_no_table_no_kiosk_and_an_empty_table_takes_the_defaults() -> None:
    assert kiosk("") is None
    assert kiosk("[kiosk]\n") == KioskSettings("127.0.0.1", 8080, "A", DEFAULT_SERVICES, 60)


def test_every_key() -> None:
    text = """
[kiosk]
listen = "[::1]:9000"
ticket_prefix = "B2"
services = ["Cash", "Cards"]
idle_timeout_s = 45
"""
    assert kiosk(text) == KioskSettings("::1", 9000, "B2", ("Cash", "Cards"), 45)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'listen = "0.0.0.0:8080"',
            "kiosk.listen is refused: '0.0.0.0:8080': the kiosk page listens on the loopback"
            " address only",
        ),
        ('listen = "192.168.1.5:80"', "listens on the loopback address only"),
        ('listen = "kiosk.local:80"', "the host must be an IP address"),
        ('listen = "127.0.0.1"', "is not host:port"),
        ('listen = "127.0.0.1:70000"', "a port from 1 to 65535"),
        ('ticket_prefix = "a-1"', "kiosk.ticket_prefix must be 1 to 3 capital letters or digits"),
        ('ticket_prefix = "ABCD"', "1 to 3 capital letters"),
        ("services = []", "kiosk.services must list 1 to 12 services"),
        ('services = ["Cards", "Cards"]', "kiosk.services lists a service twice"),
        ('services = ["  "]', "each service is a non-empty name"),
        ("services = [3]", "lists 3: each service is a non-empty name"),
        ('services = ["%s"]' % ("é" * 33), "longer than 64 bytes"),
        ('services = "Cards"', "kiosk.services must be a list of service names"),
        ("idle_timeout_s = 5", "kiosk.idle_timeout_s must be from 10 to 3600, got 5"),
        ("idle = 30", "kiosk.idle is not a known key"),
    ],
)
def test_refusals_name_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        kiosk("[kiosk]\n" + text + "\n")
    assert caught.value.message.startswith(str(FILE) + ": kiosk.")
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_the_documented_table_loads() -> None:
    doc = (PROJECT_ROOT / "docs" / "gateway.md").read_text().split("\n## Kiosk\n")[1]
    block = doc.split("\n[kiosk]\n")[1].split("```")[0]
    assert kiosk("[kiosk]\n" + block) == KioskSettings("127.0.0.1", 8080, "A", DEFAULT_SERVICES, 60)


def test_kiosk_must_be_a_table() -> None:
    with pytest.raises(SettingsError, match="kiosk must be a table"):
        kiosk('kiosk = "yes"\n')
