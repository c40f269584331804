"""cloud.fleet.anomaly_rules on synthetic series: a slow drift is caught before a fixed
threshold would be, noise alone never alerts (many seeded series), the alert clears when the
drift ends; a branch's beacons silent, heard, or unheard while its gateways are offline."""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
from collections.abc import Callable, Sequence

import pytest

from cloud.fleet.alert_rules import Thresholds
from cloud.fleet.anomaly_rules import (
    DRIFT_MIN_READINGS,
    BeaconSnapshot,
    Drift,
    Point,
    beacons_silent,
    detect_drift,
    drift_condition,
    robust_scale,
    slope_per_hour,
    unique_times,
)
from cloud.ingest import thresholds as fixed

START = dt.datetime(2030, 5, 1, 0, 0, tzinfo=dt.UTC)
LIMITS = Thresholds()
WINDOW = dt.timedelta(seconds=LIMITS.drift_window)


def series(values: Sequence[float], step: dt.timedelta = dt.timedelta(minutes=5)) -> list[Point]:
    return [(START + i * step, value) for i, value in enumerate(values)]


def cabinet(
    seed: int,
    hours: float,
    rate: Callable[[float], float],
    sigma: float = 0.15,
    level: float = 24.0,
    minutes: int = 5,
) -> list[Point]:
    """A cabinet temperature every ``minutes``: ``level`` plus the integral of ``rate``
    (°C per hour, a function of the hour) plus Gaussian noise."""
    rng = random.Random(seed)
    out, drift = [], 0.0
    steps = int(hours * 60 / minutes)
    for i in range(steps):
        hour = i * minutes / 60
        drift += rate(hour) * minutes / 60
        out.append((START + dt.timedelta(minutes=i * minutes), level + drift + rng.gauss(0, sigma)))
    return out


def window_at(points: Sequence[Point], index: int) -> list[Point]:
    """What the check at ``points[index]`` reads: the readings of the window up to it."""
    now = points[index][0]
    return [point for point in points[: index + 1] if point[0] > now - WINDOW]


def check(points: Sequence[Point]) -> Drift | None:
    return detect_drift(points, halflife=LIMITS.drift_halflife, limit=LIMITS.drift_limit, floor=0.2)


def first_alarm(points: Sequence[Point]) -> int | None:
    for index in range(len(points)):
        if check(window_at(points, index)) is not None:
            return index
    return None


def fixed_crossing(points: Sequence[Point], rule: str) -> int | None:
    """The index of the first reading a fixed ingest threshold would report."""
    threshold = fixed.Thresholds.parse(rule).rules[0]
    for index, (_when, value) in enumerate(points):
        if threshold.beyond(value):
            return index
    return None


def test_a_slow_drift_is_caught_hours_before_the_fixed_threshold() -> None:
    # Six quiet hours at 24 °C, then a failing fan: +0.5 °C per hour for twelve hours.
    points = cabinet(7, 18, lambda hour: 0.0 if hour < 6 else 0.5)
    drift_start = 6 * 12  # index of hour 6
    alarm = first_alarm(points)
    crossing = fixed_crossing(points, "temperature>28")
    assert alarm is not None and crossing is not None
    assert drift_start < alarm <= drift_start + 2 * 12  # within two hours of the start
    assert crossing - alarm >= 5 * 12  # the 28 °C threshold is five hours later or more
    found = check(window_at(points, alarm + 12))
    assert found is not None and found.direction == "up"
    assert found.baseline == pytest.approx(24.0, abs=0.3)
    assert found.current == points[alarm + 12][1]
    assert found.rate_per_hour == pytest.approx(0.5, abs=0.25)
    assert points[drift_start][0] - dt.timedelta(hours=1) <= found.since <= points[alarm][0]


def test_a_falling_value_is_a_downward_drift() -> None:
    points = cabinet(11, 12, lambda hour: 0.0 if hour < 6 else -1.0, sigma=0.3)
    alarm = first_alarm(points)
    assert alarm is not None and alarm <= 6 * 12 + 2 * 12
    found = check(window_at(points, len(points) - 1))
    assert found is not None and found.direction == "down" and found.rate_per_hour < -0.5


def deadbanded(points: Sequence[Point], deadband: float, heartbeat: dt.timedelta) -> list[Point]:
    """What a gateway forwards (``bankiot_core.filters``' rule): a value that moved by more
    than ``deadband`` from the last forwarded one, or any value after ``heartbeat``."""
    out: list[Point] = []
    for when, value in points:
        if not out or abs(value - out[-1][1]) > deadband or when - out[-1][0] >= heartbeat:
            out.append((when, value))
    return out


@pytest.mark.parametrize("sampling", ["raw", "deadband"])
def test_noise_alone_never_alerts(sampling: str) -> None:
    """A false-alarm check: 200 seeded noisy cabinets, level and noise drawn at random,
    checked every half hour over a day, as the supervisor would."""
    alarms = []
    for seed in range(200):
        rng = random.Random(1000 + seed)
        sigma = rng.uniform(0.02, 1.5)
        points = cabinet(
            seed, 24, lambda hour: 0.0, sigma=sigma, level=rng.uniform(5, 40), minutes=1
        )
        if sampling == "deadband":
            points = deadbanded(points, 0.2, dt.timedelta(minutes=5))
        ends = [i for i, p in enumerate(points) if (p[0] - START).total_seconds() % 1800 < 60]
        alarms += [(seed, i) for i in ends if check(window_at(points, i)) is not None]
    assert alarms == []


def test_one_spike_does_not_alert() -> None:
    points = cabinet(3, 6, lambda hour: 0.0)
    spiked = [*points[:40], (points[40][0], points[40][1] + 3.0), *points[41:]]
    assert all(check(window_at(spiked, i)) is None for i in range(len(spiked)))


def test_the_alert_clears_once_the_drift_ends() -> None:
    # Drift for two hours, then a new steady level (the fixed threshold's business).
    points = cabinet(5, 14, lambda hour: 0.0 if not 6 <= hour < 8 else 1.0)
    assert check(window_at(points, 8 * 12)) is not None
    assert check(window_at(points, len(points) - 1)) is None


def test_too_few_readings_decide_nothing() -> None:
    steep = series([20.0 + i for i in range(DRIFT_MIN_READINGS - 1)])
    assert check(steep) is None
    assert check(series([20.0 + i for i in range(DRIFT_MIN_READINGS + 4)])) is not None


def test_robust_scale_estimates_the_noise_and_ignores_a_slow_trend() -> None:
    rng = random.Random(42)
    noise = [rng.gauss(0, 0.5) for _ in range(5000)]
    trended = [value + 0.001 * i for i, value in enumerate(noise)]
    assert robust_scale(noise) == pytest.approx(0.5, rel=0.05)
    assert robust_scale(trended) == pytest.approx(0.5, rel=0.05)
    # One wild reading moves the classical estimate, not this one.
    wild = [*noise[:2500], 1000.0, *noise[2500:]]
    assert robust_scale(wild) == pytest.approx(0.5, rel=0.05)
    assert statistics.stdev(wild) > 10
    assert robust_scale([1.0, 2.0]) == 0.0


def test_slope_per_hour_is_the_least_squares_slope() -> None:
    points = series([10.0 + 0.25 * i for i in range(13)])  # 0.25 per 5 minutes
    assert slope_per_hour(points) == pytest.approx(3.0)
    assert slope_per_hour(points[:1]) == 0.0


def test_unique_times_keeps_one_reading_per_time_in_order() -> None:
    a, b = START, START + dt.timedelta(minutes=1)
    assert unique_times([(b, 2.0), (a, 1.0), (b, 3.0)]) == [(a, 1.0), (b, 2.0)]


def test_drift_condition_names_every_drifting_metric_and_ignores_others() -> None:
    steady = cabinet(1, 8, lambda hour: 0.0, sigma=0.1, level=0.5)
    drifting_t = cabinet(2, 8, lambda hour: 0.0 if hour < 5 else 2.0)
    drifting_a = cabinet(3, 8, lambda hour: 0.0 if hour < 5 else 0.5, sigma=0.05, level=0.5)
    humid = cabinet(4, 8, lambda hour: 0.0 if hour < 5 else 5.0, level=40)
    assert drift_condition({"humidity": humid, "acceleration": steady}, LIMITS) is None
    condition = drift_condition(
        {"temperature": drifting_t, "acceleration": drifting_a, "humidity": humid}, LIMITS
    )
    assert condition is not None
    assert (condition.kind, condition.severity) == ("cabinet_drift", "warning")
    detail = condition.detail
    assert detail["metrics"] == ["acceleration", "temperature"]
    assert detail["metric"] in detail["metrics"] and detail["direction"] == "up"
    assert detail["limit"] == 10 and detail["window_seconds"] == 21600
    assert set(detail) >= {"baseline", "current", "rate_per_hour", "since", "cusum", "scale"}
    assert all(
        isinstance(v, int | float) and math.isfinite(v)
        for k, v in detail.items()
        if k in {"baseline", "current", "rate_per_hour", "cusum", "scale"}
    )


# ---- beacon_silent ----------------------------------------------------------------------------

NOW = START + dt.timedelta(days=1)
SILENT = dt.timedelta(seconds=LIMITS.beacon_silent)


def beacon(number: int, heard: dt.datetime | None) -> BeaconSnapshot:
    return BeaconSnapshot(
        beacon_id=number,
        identifier="ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:7:%d" % number,
        address="C3:00:00:0A:1B:%02X" % number,
        label="door %d" % number,
        created_at=START,
        last_heard_at=heard,
    )


def test_a_beacon_heard_within_the_limit_is_not_silent() -> None:
    heard = NOW - SILENT + dt.timedelta(seconds=1)
    assert beacons_silent([beacon(1, heard)], 2, LIMITS, NOW) is None


def test_silent_beacons_are_listed_in_one_alert_for_the_branch() -> None:
    heard = NOW - SILENT  # exactly the limit: silent
    beacons = [beacon(3, None), beacon(1, heard), beacon(2, NOW)]
    condition = beacons_silent(beacons, 1, LIMITS, NOW)
    assert condition is not None and (condition.kind, condition.severity) == (
        "beacon_silent",
        "warning",
    )
    assert condition.detail == {
        "beacons": [
            {
                "beacon_id": 1,
                "identifier": "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:7:1",
                "address": "C3:00:00:0A:1B:01",
                "label": "door 1",
                "last_heard_at": heard.isoformat(),
            },
            {
                "beacon_id": 3,
                "identifier": "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:7:3",
                "address": "C3:00:00:0A:1B:03",
                "label": "door 3",
                "last_heard_at": None,
            },
        ],
        "silent_after_seconds": 900,
        "gateways_online": 1,
    }


def test_a_beacon_never_heard_is_silent_from_its_registration() -> None:
    new = BeaconSnapshot(
        9,
        "eddystone:00112233445566778899:aabbccddeeff",
        "C3:00:00:00:00:09",
        "",
        NOW - SILENT + dt.timedelta(seconds=1),
        None,
    )
    assert beacons_silent([new], 1, LIMITS, NOW) is None
    assert beacons_silent([new], 1, LIMITS, NOW + dt.timedelta(seconds=1)) is not None


def test_no_beacon_alert_while_every_gateway_of_the_branch_is_offline() -> None:
    assert beacons_silent([beacon(1, None)], 0, LIMITS, NOW) is None
