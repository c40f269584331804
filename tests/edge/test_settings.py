"""edge.settings: ``gateway.toml`` read whole or refused with one line naming file and key.

The examples in the module docstring and in docs/gateway.md are loaded as they are written,
so the documented format cannot drift from what the gateway accepts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bankiot_core
from edge import settings as module
from edge.errors import SettingsError
from edge.settings import BleSource, GatewaySettings, SerialSource, find_settings, load_settings
from hw.micropython_runner import PROJECT_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_defaults_and_a_full_file(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")) == GatewaySettings(path=tmp_path / "gateway.toml")
    path = write(
        tmp_path,
        """
data_dir = "state"
software_version = "2.0.1"
[cloud]
url = "https://cloud.bank.example/"
cafile = "/etc/bankiot/cloud-ca.pem"
[uplink]
prefer = "coap"
mqtt = "mqtts://mqtt.bank.example:8883"
coap = "coaps://coap.bank.example"
[queue]
capacity_bytes = 1048576
[sources]
ble = ["hci0", "hci1"]
serial = [{ port = "/dev/ttyUSB0" }, { port = "socket://127.0.0.1:7000", baud = 921600 }]
""",
    )
    assert load_settings(path) == GatewaySettings(
        path=path,
        data_dir=tmp_path / "state",  # relative to the file's folder
        software_version="2.0.1",
        cloud_url="https://cloud.bank.example",
        cloud_cafile=Path("/etc/bankiot/cloud-ca.pem"),
        uplink="coap",
        mqtt_url="mqtts://mqtt.bank.example:8883",
        coap_url="coaps://coap.bank.example",
        queue_capacity_bytes=1048576,
        ble=(BleSource("hci0"), BleSource("hci1")),
        serial=(
            SerialSource("/dev/ttyUSB0", 115200),
            SerialSource("socket://127.0.0.1:7000", 921600),
        ),
    )
    defaults = GatewaySettings()
    assert defaults.data_dir == Path("/var/lib/bankiot")
    assert defaults.ble == (BleSource("hci0"),) and defaults.serial == ()
    assert defaults.software_version == bankiot_core.VERSION
    with pytest.raises(AttributeError):
        defaults.uplink = "coap"  # type: ignore[misc]  # frozen


def _toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, re.S)


def test_the_documented_examples_load(tmp_path: Path) -> None:
    doc = (PROJECT_ROOT / "docs" / "gateway.md").read_text()
    (example,) = _toml_blocks(doc)
    loaded = load_settings(write(tmp_path, example))
    assert loaded.cloud_url == "https://cloud.bank.example"
    assert loaded.serial == (SerialSource("/dev/ttyUSB0", 115200),)
    docstring = module.__doc__ or ""
    block = docstring.split("Example, every key with its default unless marked::\n")[1]
    block = block.split("\nRules:")[0]
    lines = [line[4:] for line in block.splitlines()]
    loaded = load_settings(write(tmp_path, "\n".join(lines)))
    assert loaded.cloud_cafile == Path("/etc/bankiot/cloud-ca.pem")
    assert loaded.coap_url == "coaps://coap.bank.example"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("datadir = '/x'", "datadir is not a known key"),
        ("data_dir = 5", "data_dir must be a string, got 5"),
        ("[cloud]\nurl = 'http://cloud.bank.example'", "cloud.url is refused: 'http://cloud"),
        ("[cloud]\nurl = 'ftp://x'", "cloud.url is refused"),
        ("[cloud]\nurl = 'https://u:p@cloud.example'", "no query, fragment or credentials"),
        ("[cloud]\nca = 'x'", "cloud.ca is not a known key"),
        ("cloud = 'https://x'", "cloud must be a table"),
        ("[uplink]\nprefer = 'http'", "uplink.prefer must be one of mqtt, coap, got 'http'"),
        ("[uplink]\nmqtt = 'coap://x'", "uplink.mqtt is refused"),
        ("[uplink]\ncoap = 'coap://x:99999'", "uplink.coap is refused: 'coap://x:99999' has a bad"),
        ("[queue]\ncapacity_bytes = 10", "queue.capacity_bytes must be from 65536 to"),
        ("[queue]\ncapacity_bytes = true", "queue.capacity_bytes must be an integer, got True"),
        ("[queue]\ncapacity_bytes = '1M'", "queue.capacity_bytes must be an integer"),
        ("[sources]\nble = 'hci0'", "sources.ble must be a list of adapter names"),
        ("[sources]\nble = ['hci0', 'wlan0']", "sources.ble lists 'wlan0'"),
        ("[sources]\nble = ['hci0', 'hci0']", "sources.ble lists an adapter twice"),
        ("[sources]\nserial = ['/dev/ttyUSB0']", "sources.serial entry 1 must be a table"),
        ("[[sources.serial]]\nbaud = 9600", "sources.serial[1].port is required"),
        ("[[sources.serial]]\nport = '/dev/x'\nbaud = 7", "sources.serial[1].baud must be from"),
        ("[[sources.serial]]\nport = '/dev/x'\nparity = 'N'", "serial[1].parity is not a known"),
        (
            "[[sources.serial]]\nport = '/dev/x'\n[[sources.serial]]\nport = '/dev/x'",
            "sources.serial[2].port '/dev/x' is listed twice",
        ),
        ("software_version = '%s'" % ("v" * 33), "software_version must be at most 32 bytes"),
        ("software_version = ''", "software_version must not be empty"),
        ("data_dir = ", "not valid TOML"),
    ],
)
def test_every_error_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    message = caught.value.message
    assert message.startswith("%s: " % path) and "\n" not in message
    assert needle in message


def test_which_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(
        SettingsError, match=re.escape("missing.toml: configuration file does not exist")
    ):
        find_settings(missing, environ={})
    with pytest.raises(
        SettingsError, match=re.escape("missing.toml: configuration file does not exist")
    ):
        find_settings(None, environ={"BANKIOT_GATEWAY_CONFIG": str(missing)})
    given = write(tmp_path, "[queue]\ncapacity_bytes = 65536\n")
    assert find_settings(given, environ={}).queue_capacity_bytes == 65536
    monkeypatch.setattr(module, "DEFAULT_CONFIG", missing)
    assert find_settings(None, environ={}) == GatewaySettings()  # no file at all: defaults


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cloud.bank.example", True),
        ("https://10.1.2.3:8443/", True),
        ("http://127.0.0.1:5000", True),
        ("http://[::1]:5000", True),
        ("http://localhost:5000", True),
        ("http://10.1.2.3:5000", False),
        ("http://cloud.bank.example", False),
        ("http://127.0.0.1.evil.example", False),
        ("mqtts://cloud.bank.example", False),
        ("https://", False),
    ],
)
def test_plain_http_only_to_this_machine(url: str, allowed: bool) -> None:
    if allowed:
        assert module.check_cloud_url(url) == url.rstrip("/")
    else:
        with pytest.raises(ValueError, match=re.escape(repr(url))):
            module.check_cloud_url(url)
