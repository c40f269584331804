"""``bankiot adv decode``: the technician's view of what a device sends.

Known answers: bthome.io's format example (40 02 CA 09 03 BF 13 = 25.06 °C, 50.55 %), its
encryption example (key 231d39c1..., MAC 54:48:E6:8F:80:A5, counter 0x00112233), the GATT
specification's Heart Rate Measurement layout, and Apple's AirLocate iBeacon UUID.
"""

from __future__ import annotations

import json

import pytest

from provisioning.cli import main

BTHOME_PLAIN = "4002ca0903bf13"
ENC_KEY = "231d39c1d7cc1ab1aee224cd096db932"
ENC_MAC = "54:48:E6:8F:80:A5"
ENC_FRAME = "41e445f3c9962b332211006c7c4519"
AIRLOCATE = "e2c56db5dffb48d2b060d0f5a71096e0"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["adv", "decode", *args])
    out, err = capsys.readouterr()
    return code, out, err


def decoded(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert err == ""
    return json.loads(out)


def test_raw_advertisement_with_spaces(capsys) -> None:
    result = decoded(capsys, "02 01 06", "0a 16 d2 fc", BTHOME_PLAIN)
    assert result["format"] == "bthome"
    assert result["readings"] == {"temperature": 25.06, "humidity": 50.55}
    assert result["units"] == {"temperature": "°C", "humidity": "%"}


def test_service_data_as_bleak_reports_it(capsys) -> None:
    long_uuid = "0000fcd2-0000-1000-8000-00805f9b34fb"
    assert decoded(capsys, "--service-data", "fcd2=" + BTHOME_PLAIN)["readings"] == {
        "temperature": 25.06,
        "humidity": 50.55,
    }
    assert decoded(capsys, "--service-data", long_uuid + "=" + BTHOME_PLAIN)["format"] == "bthome"


def test_encrypted_frame_with_mac_and_key(capsys) -> None:
    result = decoded(
        capsys, "--service-data", "fcd2=" + ENC_FRAME, "--mac", ENC_MAC, "--key", ENC_KEY
    )
    assert result["readings"] == {"temperature": 25.06, "humidity": 50.55}
    assert result["counter"] == 0x00112233
    assert result["flags"] == ["encrypted"]
    assert result["address"] == ENC_MAC


def test_wrong_key_is_one_line_and_non_zero(capsys) -> None:
    code, out, err = run(
        capsys, "--service-data", "fcd2=" + ENC_FRAME, "--mac", ENC_MAC, "--key", "00" * 16
    )
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("Error: ")


def test_heart_rate_measurement(capsys) -> None:
    # flags 0x16: u8 rate, contact supported and detected, RR present; 72 bpm, RR 1024/1024 s
    result = decoded(capsys, "--gatt", "2a37=1648" + "0004")
    assert result["format"] == "gatt_heart_rate"
    assert result["readings"]["heart_rate"] == 72
    assert result["readings"]["sensor_contact"] is True


def test_ibeacon_from_manufacturer_data_in_both_forms(capsys) -> None:
    body = "0215" + AIRLOCATE + "0001" + "0002" + "c5"
    on_air = decoded(capsys, "--manufacturer-data", "4c00" + body)
    as_bleak = decoded(capsys, "--manufacturer-data", "004c=" + body)
    assert on_air == as_bleak
    assert on_air["readings"]["major"] == 1 and on_air["readings"]["minor"] == 2
    assert on_air["readings"]["measured_power"] == -59


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["zz"], "not hex"),
        (["--service-data", "fcd2=40"], "no objects"),
        (["--service-data", "fcd2=" + ENC_FRAME], "address"),
        (["02010603ff1234"], "no supported format"),
        ([], "exactly one"),
        (["--frob"], "No such option"),
        (["--service-data", "fcd2=" + BTHOME_PLAIN, "--key", ENC_KEY], "--key needs --mac"),
    ],
)
def test_bad_input_gets_one_clear_line(capsys, args: list[str], needle: str) -> None:
    code, out, err = run(capsys, *args)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err
