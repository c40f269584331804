"""A board's life under real MicroPython: not provisioned, crash loops and safe mode, the
watchdog fed only by a healthy loop, radio mode on the UART, the scan ring's bound."""

from __future__ import annotations

import json

import pytest

from bankiot_core import framing, radio
from hw.micropython_runner import MicroPythonError, MicroPythonRunner
from tests.firmware.board import SENSOR, SETTINGS, provisioned, run_board, scenario

BOOT = "exec(open('/boot.py').read())\n"
MAIN = "exec(open('/main.py').read())\n"


def test_a_board_without_identity_says_it_is_not_provisioned(
    micropython: MicroPythonRunner,
) -> None:
    run = run_board(
        micropython, BOOT + MAIN + "import machine\nprint('wdts', len(machine._wdts))\n"
    )
    lines = run.stdout.splitlines()
    assert any("not provisioned: /identity/enrollment.json is missing" in line for line in lines)
    assert "wdts 0" in lines  # nothing started: the REPL stays reachable


def test_a_broken_identity_file_is_named(micropython: MicroPythonRunner) -> None:
    files = provisioned()
    files["/identity/envelope.json"] = b'{"version": 1, "secret": "c2hvcnQ="}'
    run = run_board(micropython, BOOT + MAIN, files)
    assert "configuration refused: /identity/envelope.json: secret must be 16 to 64 bytes" in (
        run.stdout
    )


def test_a_crash_loop_ends_in_safe_mode_until_cleared(micropython: MicroPythonRunner) -> None:
    code = (
        BOOT * 4  # four starts, none of which ran healthily
        + MAIN
        + "import machine\nprint('wdts', len(machine._wdts), 'led', machine.Pin(2)._value)\n"
        + "import app.main\napp.main.clear()\n"
        + BOOT
        + MAIN
    )
    run = run_board(micropython, code)
    out = run.stdout
    assert "SAFE MODE after 4 starts without a healthy run" in out
    assert "wdts 0" in out
    _, after = out.split("crash count cleared", 1)
    assert "not provisioned" in after and "SAFE MODE" not in after


def test_three_starts_are_not_yet_a_crash_loop(micropython: MicroPythonRunner) -> None:
    run = run_board(micropython, BOOT * 3 + MAIN)
    assert "SAFE MODE" not in run.stdout and "not provisioned" in run.stdout


def supervise(micropython: MicroPythonRunner, stall: bool) -> dict:
    code = (
        "import json, board_scenario\n"
        "print(json.dumps(await board_scenario.supervise(%s)))\n" % ("True" if stall else "False")
    )
    return json.loads(run_board(micropython, code, provisioned()).stdout.splitlines()[-1])


def test_the_watchdog_goes_hungry_when_a_task_stalls(micropython: MicroPythonRunner) -> None:
    result = supervise(micropython, stall=True)
    feeds = result["feeds"]
    assert feeds[0] <= 2 and feeds[-1] == feeds[len(feeds) // 2]  # fed at first, then never
    assert result["stalled"] == "network"
    assert not result["healthy"] and result["count"] == 1  # the crash loop goes on counting


def test_a_healthy_loop_feeds_the_watchdog_and_clears_the_crash_count(
    micropython: MicroPythonRunner,
) -> None:
    result = supervise(micropython, stall=False)
    feeds = result["feeds"]
    assert feeds[-1] > feeds[len(feeds) // 2] > 0
    assert result["stalled"] is None
    assert result["healthy"] and result["count"] == 0


RADIO = """
import bluetooth, binascii, machine
from app.ring import AdvRing
from app.scanner import Scanner
from app.radiomode import RadioStreamer
ring = AdvRing(slots=4)
scanner = Scanner(bluetooth.BLE(), ring)
scanner.start(0)
uart = machine.UART(1)
streamer = RadioStreamer(uart, ring, "0.1.0")
ble = bluetooth.BLE()
for i in range(6):
    ble._inject(1, binascii.unhexlify(%r), 0, -40 - i, bytes([2, 1, 6, 3, 0xFF, i, i]))
streamer.pump(1000)
print(binascii.hexlify(uart._written).decode())
"""


def test_radio_mode_streams_framed_advertisements_and_counts_what_it_dropped(
    micropython: MicroPythonRunner,
) -> None:
    run = run_board(micropython, RADIO % SENSOR)
    stream = bytes.fromhex(run.stdout.split()[-1])
    deframer = framing.Deframer()
    messages = [radio.decode(frame) for frame in deframer.feed(stream)]
    adverts = [m for m in messages if isinstance(m, radio.Advert)]
    [status] = [m for m in messages if isinstance(m, radio.Status)]
    assert [bytes(a.address).hex() for a in adverts] == [SENSOR] * 4  # the ring holds 4
    assert [a.rssi for a in adverts] == [-40, -41, -42, -43]
    assert [bytes(a.data) for a in adverts] == [bytes([2, 1, 6, 3, 0xFF, i, i]) for i in range(4)]
    assert all(a.address_type == 1 for a in adverts)
    assert status.counters["scan_heard"] == 6 and status.counters["scan_dropped"] == 2
    assert status.counters["sent"] == 4 and status.software == "0.1.0"


def test_the_ring_copies_inside_the_irq_and_truncates_long_data(
    micropython: MicroPythonRunner,
) -> None:
    code = (
        "import bluetooth\nfrom app.ring import AdvRing\nfrom app.scanner import Scanner\n"
        "ring = AdvRing(slots=2, max_data=4)\nScanner(bluetooth.BLE(), ring).start(0)\n"
        "bluetooth.BLE()._inject(0, b'\\x01\\x02\\x03\\x04\\x05\\x06', 0, -70, b'abcdefg')\n"
        "print(ring.take(), ring.take(), ring.counters()['scan_truncated'])\n"
    )
    out = run_board(micropython, code).stdout.strip()
    # The stand-in overwrites the stack's buffers once the handler returns: a ring that
    # kept the views would show 0xEE here.
    assert out == "(b'\\x01\\x02\\x03\\x04\\x05\\x06', 0, -70, b'abcd') None 1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker:80", "scheme must be mqtt, mqtts or coap"),
        ("mqtts://broker:99999", "bad port"),
        ("mqtts://", "bad host"),
    ],
)
def test_bad_endpoints_are_refused_with_one_line(
    micropython: MicroPythonRunner, url: str, message: str
) -> None:
    code = "from app.config import parse_endpoint\nparse_endpoint(%r)\n" % url
    with pytest.raises(MicroPythonError) as caught:
        run_board(micropython, code)
    assert caught.value.type == "ConfigError" and message in caught.value.message


def test_the_scan_window_shrinks_while_nothing_paired_is_heard(
    micropython: MicroPythonRunner,
) -> None:
    code = (
        "from app.duty import DutyCycle\nd = DutyCycle(idle_after_ms=300000, idle_divisor=4)\n"
        "print(d.window(0, 5, 40), d.window(299999, 5, 40), d.window(300000, 5, 40),"
        " d.window(300001, 6, 40), d.window(700000, 6, 8))\n"
    )
    assert run_board(micropython, code).stdout.split() == ["40", "40", "10", "40", "3"]


def test_outside_opening_hours_the_scan_window_is_the_idle_one(
    micropython: MicroPythonRunner,
) -> None:
    code = (
        "from app.duty import DutyCycle\nd = DutyCycle(idle_after_ms=300000, idle_divisor=4)\n"
        "print(d.window(0, 5, 40), d.window(1000, 6, 40, False), d.window(2000, 7, 40, False),"
        " d.window(3000, 7, 40, True), d.window(302999, 7, 40), d.window(303000, 7, 40))\n"
    )
    # Closed: idle whatever is heard; opening: the full window for idle_after_ms again.
    assert run_board(micropython, code).stdout.split() == ["40", "10", "10", "40", "40", "10"]


# Monday to Friday 9:00-17:00 at UTC+2 (the board's configuration); 2024-06-03 is a Monday.
HOURS = {"opening_hours": [[d, 540, 1020] for d in range(5)], "utc_offset_min": 120}
MONDAY_0859 = 1717397940  # 2024-06-03 06:59 UTC = 08:59 at UTC+2
MONDAY_0900 = MONDAY_0859 + 60
SATURDAY_1000 = MONDAY_0859 + 5 * 86400 + 61 * 60


def test_the_board_scans_less_outside_the_configured_opening_hours(
    micropython: MicroPythonRunner,
) -> None:
    from datetime import UTC, datetime, timedelta, timezone

    local = timezone(timedelta(hours=2))
    assert datetime.fromtimestamp(MONDAY_0859, UTC).astimezone(local).isoformat() == (
        "2024-06-03T08:59:00+02:00"
    )
    assert datetime.fromtimestamp(SATURDAY_1000, local).strftime("%A %H:%M") == "Saturday 10:00"
    settings = {**SETTINGS, **HOURS}
    windows, _ = scenario(
        micropython,
        "scan_windows",
        [None, MONDAY_0859, MONDAY_0900, SATURDAY_1000],
        files=provisioned(settings=settings),
    )
    # Before the clock is set the board cannot tell: it listens as if open (window 50 of
    # the default 100 ms interval); closed at 8:59 and on Saturday: a quarter.
    assert windows == [[50, False], [12, True], [50, False], [12, True]]


def test_the_watchdog_timeout_stays_within_what_each_chip_allows(
    micropython: MicroPythonRunner,
) -> None:
    code = (
        "from app import board\nfrom boards import esp32, picow\n"
        "print(board.wdt_timeout(picow), board.wdt_timeout(picow, 20000),"
        " board.wdt_timeout(esp32), board.wdt_timeout(esp32, 200))\n"
        "print(board.current('rp2').NAME, board.current('esp32').NAME)\n"
    )
    out = run_board(micropython, code).stdout.split()
    assert out == ["8000", "8388", "20000", "1000", "picow", "esp32"]
