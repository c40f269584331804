"""The demo's branch, end to end through the edge, on both interpreters."""

from __future__ import annotations

from bankiot_core.address import mac_to_str
from hw import demo
from hw.branch_devices import demo_branch, radio_stream
from hw.edge_replay import replay


def run_branch(minutes: int = 2) -> tuple[dict, dict[str, str]]:
    devices, keys = demo_branch()
    names = {d.mac.hex(): d.name for d in devices}
    config = {
        "paired": [mac_to_str(d.mac) for d in devices if not d.name.startswith("a passer-by")],
        "presence_devices": [mac_to_str(d.mac) for d in devices if d.name.startswith("customer")],
    }
    frames = [[t, a.hex(), r, p.hex()] for t, a, r, p in radio_stream(devices, minutes * 60)]
    keyhex = {mac.hex(): key.hex() for mac, key in keys.items()}
    return replay(frames, config, keyhex), {v: k for k, v in names.items()}


def test_what_the_branch_forwards() -> None:
    result, address = run_branch()
    forwarded = result["forwarded"]
    by = lambda name: [item for item in forwarded if item[2] == address[name]]  # noqa: E731
    # The stranger's phone: nothing forwarded, only counted.
    assert by("a passer-by's phone") == []
    assert result["counters"]["frames_not_paired"] > 0
    # The customer walks up once and leaves once: one enter, one leave, in that order.
    visits = [item[1] for item in by("customer 0042 wearable") if item[1] in ("enter", "leave")]
    assert visits == ["enter", "leave"]
    # The panic button's press goes out once, although it is advertised for 3 seconds.
    presses = [item for item in by("teller 2 button") if item[3] == "button"]
    assert [p[4] for p in presses] == ["press"]
    # The overheating ATM cabinet: its temperature keeps being forwarded, rising.
    cabinet = [item[4] for item in by("ATM 1 cabinet") if item[3] == "temperature"]
    assert len(cabinet) >= 3 and cabinet == sorted(cabinet)
    # The encrypted lobby sensor is decoded with its bind key.
    assert any(item[3] == "temperature" for item in by("lobby sensor"))


def test_demo_runs_and_micropython_agrees(capsys) -> None:
    assert demo.main(["--minutes", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "exactly the same" in out
