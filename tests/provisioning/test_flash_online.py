"""End to end: ``bankiot cloud up`` as a real process, a blank virtual board, ``bankiot
flash`` with a claim, and the cloud seeing the board online through its real firmware.

The firmware speaks MQTT over TLS to the cloud's Mosquitto, which requires client
certificates. The virtual board's ``ssl`` is a stand-in that encrypts nothing, so the test
puts a TLS bridge in front of the broker (the board's connections to the broker's address
are routed to it, ``VirtualBoard(routes=...)``): it does the TLS the board's ``ssl`` would,
with the certificate and key ``bankiot flash`` wrote on the board's flash, verifying the
broker against the board's ``ca.pem``. Everything else is real: the claim, the enrollment,
the firmware's MQTT session, the broker's certificate check and ACL, ingest, the fleet
API. The bridge is ``hw.tls_bridge``, which ``make demo`` uses too. (The board's CoAP to
the cloud is ``tests/hw/test_virtual_board_udp.py``'s.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.people.operators import create_operator
from cloud.people.tokens import create_token
from hw.tls_bridge import TlsBridge
from tests.edge.process_support import Cloud, cloud_up, make_claim
from tests.provisioning.flash_support import WIFI_KEY, WIFI_SSID, board, run_cli

pytestmark = pytest.mark.micropython


def operator_token(cloud: Cloud) -> str:
    """An API token of a cloud-operations operator, made in the cloud's database."""
    with cloud.database().sessions() as db:
        operator = create_operator(db, "test", "tina", "operations", [], "a long passphrase 42")
        secret, _row = create_token(db, operator, "flash test", 1)
        db.commit()
        return secret


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    with cloud_up(tmp_path) as running:
        yield running


def test_flashed_blank_board_comes_online_in_the_cloud(
    cloud: Cloud,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = make_claim(cloud.database(), code="B-FLASH", name="Branch of the flash test")
    monkeypatch.setenv("BANKIOT_TOKEN", operator_token(cloud))
    password = tmp_path / "wifi.txt"
    password.write_text(WIFI_KEY)
    state = tmp_path / "board"
    bridge = TlsBridge(state / "flash", ("127.0.0.1", cloud.mqtt))
    routes = {"127.0.0.1:%d" % cloud.mqtt: "127.0.0.1:%d" % bridge.port}
    started = dt.datetime.now(dt.UTC)
    try:
        with board(state, routes=routes, asyncio_run=True) as vb:
            code, out, err = run_cli(
                capsys,
                "flash",
                "--port",
                vb.url,
                "--claim",
                token,
                "--cloud",
                cloud.url,
                "--wifi-ssid",
                WIFI_SSID,
                "--wifi-password-file",
                str(password),
                "--timeout",
                "90",
            )
    finally:
        bridge.close()
    assert code == 0, err + "\nbridge: %s" % bridge.errors
    assert bridge.sessions >= 1
    (report,) = out.strip().splitlines()
    assert report.startswith("device esp32-240ac4a1b2c3 (id ")
    assert "online in branch B-FLASH: firmware" in report and "uplink mqtt" in report
    seen = dt.datetime.fromisoformat(report.rsplit("seen ", 1)[1])
    assert seen >= started - dt.timedelta(seconds=1)
