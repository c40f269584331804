"""cloud.fleet.alert_rules: which conditions hold, as tables of cases with their boundaries.

Known answers come from the rules as the operations guide states them and, for counters,
from Prometheus' documented ``increase()`` rule ("breaks in monotonicity such as counter
resets due to target restarts are automatically adjusted for": a value below its
predecessor counts from zero), worked out by hand here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cloud.config import ConfigError
from cloud.fleet.alert_rules import (
    AUTH_FAILURES,
    BATTERY_LOW,
    CRITICAL,
    DATA_LOST,
    DECODE_FAILURES,
    OFFLINE,
    QUEUE_GROWING,
    WARNING,
    Report,
    Snapshot,
    Thresholds,
    evaluate,
    increase,
)

NOW = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC)
LIMITS = Thresholds()  # offline 300 s, depth 100, growth 5, battery 20, auth 10, decode 100


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def gateway(**fields: Any) -> Snapshot:
    """An active gateway heard a second ago, registered a day ago, unless ``fields`` say."""
    values: dict[str, Any] = {
        "device_id": 1,
        "kind": "gateway",
        "status": "active",
        "created_at": ago(86400),
        "last_heard_at": ago(1),
        **fields,
    }
    return Snapshot(**values)


def depths(*values: int | None) -> tuple[Report, ...]:
    return tuple(Report(depth=value) for value in values)


def auth(*pairs: tuple[int | None, int | None]) -> tuple[Report, ...]:
    return tuple(Report(unauthenticated=u, replayed=r) for u, r in pairs)


def lost(*pairs: tuple[int, int]) -> tuple[Report, ...]:
    """Health reports with (dropped_batches, open_batches_lost)."""
    return tuple(Report(dropped=d, open_lost=o) for d, o in pairs)


def malformed(*values: int | None) -> tuple[Report, ...]:
    return tuple(Report(malformed=value) for value in values)


# (case, snapshot, open kinds, expected {kind: severity})
CASES: list[tuple[str, Snapshot, tuple[str, ...], dict[str, str]]] = [
    ("healthy", gateway(), (), {}),
    ("silent just under the threshold", gateway(last_heard_at=ago(299.999)), (), {}),
    ("silent exactly the threshold", gateway(last_heard_at=ago(300)), (), {OFFLINE: CRITICAL}),
    ("never heard, registered long ago", gateway(last_heard_at=None), (), {OFFLINE: CRITICAL}),
    ("never heard, registered just now", gateway(last_heard_at=None, created_at=ago(10)), (), {}),
    (
        "a kiosk is a gateway",
        gateway(kind="kiosk", last_heard_at=ago(301)),
        (),
        {OFFLINE: CRITICAL},
    ),
    ("not enrolled yet", gateway(status="registered", last_heard_at=None), (), {}),
    ("wearables come and go", gateway(kind="wearable", last_heard_at=ago(9999)), (), {}),
    ("queue one below the depth", gateway(queue_depth=99), (), {}),
    ("queue at the depth", gateway(queue_depth=100), (), {QUEUE_GROWING: CRITICAL}),
    ("rising 4 reports of 5", gateway(reports=depths(1, 2, 3, 4, 5)), (), {}),
    ("rising 5 reports", gateway(reports=depths(1, 2, 3, 4, 5, 6)), (), {QUEUE_GROWING: WARNING}),
    (
        "rising after a fall",
        gateway(reports=depths(9, 1, 2, 3, 4, 5, 6)),
        (),
        {QUEUE_GROWING: WARNING},
    ),
    ("flat once", gateway(reports=depths(1, 2, 3, 3, 5, 6)), (), {}),
    ("a report without depth", gateway(reports=depths(1, 2, None, 4, 5, 6)), (), {}),
    (
        "deep and rising",
        gateway(queue_depth=150, reports=depths(100, 110, 120, 130, 140, 150)),
        (),
        {QUEUE_GROWING: CRITICAL},
    ),
    ("battery above", gateway(battery=21), (), {}),
    ("battery at the threshold", gateway(battery=20), (), {BATTERY_LOW: WARNING}),
    ("battery fraction", gateway(battery=20.5), (), {}),
    (
        "battery open, within hysteresis",
        gateway(battery=25),
        (BATTERY_LOW,),
        {BATTERY_LOW: WARNING},
    ),
    ("battery open, above hysteresis", gateway(battery=25.5), (BATTERY_LOW,), {}),
    ("a wearable's battery", gateway(kind="wearable", battery=3), (), {BATTERY_LOW: WARNING}),
    ("auth one under", gateway(reports=auth((0, 0), (5, 0), (8, 1))), (), {}),
    (
        "auth at the threshold",
        gateway(reports=auth((0, 0), (5, 0), (8, 2))),
        (),
        {AUTH_FAILURES: CRITICAL},
    ),
    ("replays alone", gateway(reports=auth((0, 7), (0, 17))), (), {AUTH_FAILURES: CRITICAL}),
    ("one report is no increase", gateway(reports=auth((500, 500))), (), {}),
    # 500 -> 505 (+5) -> 0 (reboot: +0) -> 4 (+4): 9, not a drop of 505 nor 505 frames.
    ("reset after a reboot", gateway(reports=auth((500, 0), (505, 0), (0, 0), (4, 0))), (), {}),
    (
        "burst after a reboot",
        gateway(reports=auth((500, 0), (3, 0), (13, 0))),
        (),
        {AUTH_FAILURES: CRITICAL},
    ),
    ("malformed one under", gateway(reports=malformed(0, 50, 99)), (), {}),
    (
        "malformed at the threshold",
        gateway(reports=malformed(0, 50, 100)),
        (),
        {DECODE_FAILURES: WARNING},
    ),
    ("a sensor's counters are not read", gateway(kind="sensor", reports=malformed(0, 500)), (), {}),
    # Any loss at the gateway opens data_lost: the queue dropped batches, or a power cut
    # took an open batch (its counter is 0 before the cut and 1 after the restart).
    ("nothing lost", gateway(reports=lost((0, 0), (0, 0))), (), {}),
    ("queue full", gateway(reports=lost((0, 0), (2, 0))), (), {DATA_LOST: CRITICAL}),
    ("power cut", gateway(reports=lost((0, 0), (0, 1))), (), {DATA_LOST: CRITICAL}),
    ("same loss, no news", gateway(reports=lost((3, 1), (3, 1))), (), {}),
    (
        "several at once",
        gateway(last_heard_at=ago(900), queue_depth=120, battery=5),
        (),
        {OFFLINE: CRITICAL, QUEUE_GROWING: CRITICAL, BATTERY_LOW: WARNING},
    ),
]


@pytest.mark.parametrize(
    ("snapshot", "open_kinds", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_conditions(snapshot: Snapshot, open_kinds: tuple[str, ...], expected: dict) -> None:
    found = evaluate(snapshot, LIMITS, NOW, open_kinds)
    assert {kind: c.severity for kind, c in found.items()} == expected
    assert all(kind == c.kind for kind, c in found.items())


# (counter values oldest first, increase worked out by hand)
INCREASES: list[tuple[list[int | None], int]] = [
    ([], 0),
    ([7], 0),
    ([0, 3, 9], 9),
    ([10, 10, 10], 0),
    ([500, 505, 0, 4], 9),  # reboot between 505 and 0
    ([500, 3], 3),  # reboot, then 3 frames
    ([5, None, 9], 0),  # no pair has both values
    ([5, 6, None, 9, 12], 4),
]


@pytest.mark.parametrize(("values", "expected"), INCREASES)
def test_increase_across_resets(values: list[int | None], expected: int) -> None:
    assert increase(values) == expected


def test_details_explain_the_alert() -> None:
    found = evaluate(
        gateway(
            last_heard_at=ago(400),
            queue_depth=6,
            battery=12,
            reports=tuple(
                Report(depth=d, unauthenticated=u, replayed=0, malformed=m)
                for d, u, m in [
                    (1, 0, 0),
                    (2, 4, 40),
                    (3, 4, 80),
                    (4, 20, 100),
                    (5, 20, 120),
                    (6, 20, 130),
                ]
            ),
        ),
        LIMITS,
        NOW,
    )
    assert found[OFFLINE].detail == {
        "last_heard_at": ago(400).isoformat(),
        "offline_after_seconds": 300,
    }
    assert found[QUEUE_GROWING].detail == {
        "queue_depth": 6,
        "queue_depth_threshold": 100,
        "rising_reports": 5,
        "recent_depths": [1, 2, 3, 4, 5, 6],
    }
    assert found[BATTERY_LOW].detail == {"battery": 12, "battery_low": 20, "source": "health"}
    assert found[AUTH_FAILURES].detail == {
        "frames_unauthenticated": 20,
        "frames_replayed": 0,
        "threshold": 10,
        "reports": 6,
        "window_seconds": 900,
    }
    assert found[DECODE_FAILURES].detail == {
        "frames_malformed": 130,
        "threshold": 100,
        "reports": 6,
        "window_seconds": 900,
    }


def test_thresholds_from_configuration() -> None:
    assert Thresholds.from_config({}) == Thresholds()
    config = {"ALERT_OFFLINE_AFTER": "600", "ALERT_BATTERY_LOW": " 15 ", "ALERT_WINDOW": 3600}
    assert Thresholds.from_config(config) == Thresholds(
        offline_after=600, battery_low=15, window=3600
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"ALERT_OFFLINE_AFTER": "five"}, "ALERT_OFFLINE_AFTER must be a whole number, not 'five'"),
        ({"ALERT_QUEUE_DEPTH": "1.5"}, "ALERT_QUEUE_DEPTH must be a whole number"),
        ({"ALERT_QUEUE_DEPTH": 1.0}, "ALERT_QUEUE_DEPTH must be a whole number"),
        ({"ALERT_QUEUE_GROWTH": True}, "ALERT_QUEUE_GROWTH must be a whole number"),
        ({"ALERT_BATTERY_LOW": "100"}, "ALERT_BATTERY_LOW must be 1 to 99, not 100"),
        ({"ALERT_BATTERY_LOW": "0"}, "ALERT_BATTERY_LOW must be 1 to 99, not 0"),
        ({"ALERT_OFFLINE_AFTER": "29"}, "ALERT_OFFLINE_AFTER must be 30 to 604800, not 29"),
        ({"ALERT_WINDOW": "86401"}, "ALERT_WINDOW must be 60 to 86400, not 86401"),
    ],
)
def test_bad_thresholds_are_one_line_errors(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="^%s" % message.replace(".", r"\.")) as caught:
        Thresholds.from_config(config)
    assert "\n" not in str(caught.value)
