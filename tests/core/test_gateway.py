"""bankiot_core.gateway: one gateway's day (``gateway_scenario.story``) on CPython and under
real MicroPython, against what the module's contract says must happen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bankiot_core.errors import ConfigError
from hw.micropython_runner import MicroPythonRunner
from tests.core import gateway_scenario as scenario

SCENARIO_SOURCE = Path(scenario.__file__).read_text()

HEALTH_AT_START = "health heard=0 in=0 refused=0 configs=0/0"

# Derived from the contract (module docstring), step by step:
EXPECTED = [
    # At start, what the gateway runs (no configuration from the cloud yet) and its health
    # leave at once, batch 0; the next health record is due in health_interval_ms (60 s).
    ["start", 60000, [[0, ["running 1.0.0 None", HEALTH_AT_START]]]],
    # A button press is an event: urgent, batch 1, sent at once.
    ["press", [[1, ["reading button press"]]]],
    # The temperature (at 10) waits in the routine lane for batch_max_delay_ms (1000); the
    # stranger's frame is not there.
    ["not yet", []],
    ["routine", [[2, ["reading temperature 25.06"]]]],
    # All three batches are in flight: nothing more to send until resend_ms passes.
    ["nothing more", []],
    # The cloud acknowledges through 2: the queue is empty.
    ["ack", [], 0],
    # The same downlink number again is a replay; a message sealed with another key forged.
    ["replayed ack", ["ReplayError"]],
    ["forged", "AuthenticationError"],
    # Configuration revision 1 applies (delay 500); revision 1 again changes nothing; a
    # revision 2 the gateway refuses (a bad address) is counted and the old one stays.
    ["config 1", []],
    ["options", 500, 1],
    ["config 1 again", []],
    ["bad config 2", []],
    ["still", 1, 500, 1, 1, 2],
    # A command becomes an action once; resent, nothing; an unknown one is refused at once.
    ["reboot", [[5, "reboot"]]],
    ["reboot resent", []],
    ["dance", []],
    # The running record of revision 1 left at once when it was applied (batch 3); the
    # results are urgent and are sent before it (the refusal first, as it happened first).
    [
        "after",
        [
            [4, ["result 6 refused unknown command dance"]],
            [5, ["result 5 done back"]],
            [3, ["running 1.0.0 1"]],
        ],
    ],
    # After a reboot from state(): the configuration, the commands run and the replay window
    # survive (downlink number 6 is refused as a replay; 7 runs the new command).
    ["restored", 1, 500, True, ["ReplayError"], [[7, "rescan"]]],
]


def test_a_gateways_day_on_cpython() -> None:
    assert scenario.story() == EXPECTED


@pytest.mark.micropython
def test_a_gateways_day_under_micropython(micropython: MicroPythonRunner) -> None:
    run = micropython.run(
        "import json, gateway_scenario\nprint(json.dumps(gateway_scenario.story()))\n",
        fakes=("cryptolib",),
        files={"/lib/gateway_scenario.py": SCENARIO_SOURCE},
    ).check()
    assert json.loads(run.stdout.splitlines()[-1]) == EXPECTED


def test_state_that_does_not_fit_is_refused() -> None:
    for state in ({"window": b"", "commands": [-1]}, [], {"commands": [-1]}):
        with pytest.raises(ConfigError):
            scenario.make(state)  # type: ignore[arg-type]


def test_settings_a_gateway_would_refuse_stop_it_at_start() -> None:
    from bankiot_core.gateway import Gateway

    base = scenario.make()
    with pytest.raises(ConfigError, match="uplink"):
        Gateway(base.ring, base._sequence, base.queue, scenario.UP, "1.0.0", {"uplink": "x"})


# The kiosk's part of the contract: the observer sees what the filters let through (the
# stranger's press never), and each kiosk event leaves at once in a batch of its own
# (urgent, like a command's result); a value the wire cannot carry queues nothing.
KIOSK_EXPECTED = [
    ["observed", [["a4c138000001", ["button"]]]],
    ["too long", "LocalError"],
    [
        "sent",
        [
            [1, ["reading button press"]],
            [2, ["kiosk checkin 1 a4c138000001 "]],
            [3, ["kiosk ticket 2 - A001"]],
        ],
    ],
]


def test_the_kiosk_sees_what_the_filters_pass_and_its_events_leave_urgent() -> None:
    assert scenario.kiosk_story() == KIOSK_EXPECTED


@pytest.mark.micropython
def test_the_kiosk_story_under_micropython(micropython: MicroPythonRunner) -> None:
    run = micropython.run(
        "import json, gateway_scenario\nprint(json.dumps(gateway_scenario.kiosk_story()))\n",
        fakes=("cryptolib",),
        files={"/lib/gateway_scenario.py": SCENARIO_SOURCE},
    ).check()
    assert json.loads(run.stdout.splitlines()[-1]) == KIOSK_EXPECTED


# health_in_every_batch, from the contract (gateway and batcher docstrings): the urgent
# batches leave first (the press at 36000, then the result), each with the vitals as they
# stood (uptime 59); then the routine lane in sequence order: the start batch holds the
# full health record and so no second one; the readings fill batches by bytes (512 less the
# room kept for the vitals, gateway.VITALS at their largest: 222 bytes), and the one closed
# when reading 34 did not fit carries that moment's vitals (uptime 34); the rest
# leaves at the flush. Every batch fits max_bytes (512) and every reading arrives once.
MAX_BYTES = 512
VITALS_EXPECTED = [
    [["vitals"], 59],
    [["vitals"], 59],
    [["full"], 0],
    [["vitals"], 34],
    [["vitals"], 59],
]


def check_vitals(batches: list[list]) -> None:
    assert [b[1:3] for b in batches] == VITALS_EXPECTED
    assert all(b[0] <= MAX_BYTES for b in batches)
    assert sum(b[3] for b in batches) == 60
    assert batches[3][3] > 0 and batches[4][3] > 0  # the readings took two batches


def test_every_batch_carries_the_vitals_on_cpython() -> None:
    check_vitals(scenario.vitals_story(MAX_BYTES))


@pytest.mark.micropython
def test_every_batch_carries_the_vitals_under_micropython(micropython: MicroPythonRunner) -> None:
    run = micropython.run(
        "import json, gateway_scenario\nprint(json.dumps(gateway_scenario.vitals_story(%d)))\n"
        % MAX_BYTES,
        fakes=("cryptolib",),
        files={"/lib/gateway_scenario.py": SCENARIO_SOURCE},
    ).check()
    batches = json.loads(run.stdout.splitlines()[-1])
    assert batches == scenario.vitals_story(MAX_BYTES)
    check_vitals(batches)


def test_without_the_setting_a_gateway_sends_no_vitals() -> None:
    gw = scenario.make()  # the Raspberry Pi's default: off
    gw.poll(0)
    gw.advertisement(scenario.SENSOR, -60, scenario.PRESS, 10)
    assert [len(records) for _, records in scenario.sent(gw, 10)] == [1, 2]  # no health added
    assert gw.options["health_in_every_batch"] is None and gw.batcher._vitals is None


def test_the_configuration_overrides_the_gateways_default_either_way() -> None:
    from bankiot_core.gateway import Gateway

    base = scenario.make()
    on = Gateway(
        base.ring,
        base._sequence,
        base.queue,
        scenario.UP,
        "1.0.0",
        {"health_in_every_batch": True},
    )
    off = Gateway(
        base.ring,
        base._sequence,
        base.queue,
        scenario.UP,
        "1.0.0",
        {"health_in_every_batch": False},
        health_in_every_batch=True,
    )
    assert on.batcher._vitals is not None and off.batcher._vitals is None
