"""Anomaly rules: a sensor drifting from its own baseline, a branch beacon gone silent.
Pure: no database, no clock (``now`` comes in), no Flask; ``cloud.fleet.anomalies`` runs
the queries that feed them and ``cloud.fleet.alerts`` keeps the alert rows.

**``cabinet_drift``** (warning): a kiosk's or ATM's cabinet sensor (a device of kind
``sensor``) whose ``temperature`` or ``acceleration`` moves away from its own normal, found
before the value reaches a fixed threshold (``ingest_thresholds``) would see it. Each
(sensor, metric) series of the last ``drift_window`` seconds is examined afresh at every
check (no state kept between checks, so a check can never disagree with the data):

1. *Scale*: a robust standard deviation of the noise from the differences of consecutive
   readings (``robust_scale``: a slow drift barely moves them, a few outliers cannot), never
   below the metric's floor (``DRIFT_METRICS``: the gateways' default
   deadband for temperature, 0.2 °C, since a deadbanded series moves in steps at least that
   large; 0.05 m/s² for acceleration).
2. *Baseline*: the median of the first ``DRIFT_WARMUP`` readings, then an exponentially
   weighted moving average with half-life ``drift_halflife`` seconds, weighted by the time
   between readings (gateways forward irregularly: deadband and heartbeat); while few
   readings are in it, the running mean instead (the larger weight of the two).
3. *CUSUM* (Page, 1954), two-sided, on each reading's distance from the baseline before the
   reading updates it, in scales: ``S = max(0, S + z - k)`` upward, the same for ``-z``
   downward, with slack ``k = DRIFT_SLACK`` (1: noise must beat two scales to add anything)
   and decision interval ``h = drift_limit`` (10 by default). A distance counts at most
   ``DRIFT_CLIP`` scales (a Huber-clipped CUSUM: one spike, a door left open for a minute,
   adds at most ``4 - k = 3``, so a drift takes several readings to show). While a value drifts, the
   average lags behind it by about the rate times the baseline's time constant, so the sums
   grow; noise alone keeps them near zero (for white Gaussian noise the average run length
   to a false alarm with k = 1, h = 10 is far beyond any window). Each sum is capped at
   ``2 h`` so that, once the drift stops and the baseline has caught up with the new level
   (a few half-lives), the alert clears within about ``h / k`` more readings.

The condition holds while a sum is above ``h`` at the newest reading; with fewer than
``DRIFT_MIN_READINGS`` readings nothing is decided. Detail: ``metric``, ``direction``
(``up``/``down``), ``baseline`` (the average when the drift began), ``current`` (the newest
reading), ``rate_per_hour`` (least-squares slope of the readings since the drift began),
``since`` (when it began: the reading after the sum last stood at zero), ``cusum``,
``limit``, ``scale``, ``readings``. Several metrics of one sensor drifting give one alert
(one open alert per device and kind): its ``metrics`` list names them all, the figures are
the strongest's.

**``beacon_silent``** (warning): a beacon registered at a branch with its radio address (so
the branch's gateways listen for it: ``cloud.fleet.beacons``) that no gateway or kiosk of
its branch has heard for ``beacon_silent`` seconds, counted from its registration if it was
never heard. Only while at least one of those gateways is online (not ``offline`` by the
``alert_rules`` rule): when they are all offline the ``offline`` alerts say it, and the
beacons' silence says nothing new. Registered beacons are not inventory devices (an alert
belongs to a device), so a branch has one such alert, on its *anchor*: the active gateway
or kiosk with the lowest id, which stays the same while gateways come and go. Detail:
``beacons`` (each silent beacon's ``beacon_id``, ``identifier``, ``address``, ``label``,
``last_heard_at``), ``silent_after_seconds``, ``gateways_online``. Gateways forward a
beacon's unchanging identifier at least every heartbeat (5 minutes by default), so keep
``beacon_silent`` several heartbeats long.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloud.fleet.alert_rules import BEACON_SILENT, CABINET_DRIFT, WARNING, Condition, Thresholds

# metric -> the smallest scale (its unit) the drift rule uses; the metrics examined.
DRIFT_METRICS: Mapping[str, float] = {"temperature": 0.2, "acceleration": 0.05}
DRIFT_KINDS = frozenset(("sensor",))  # the devices whose readings are examined
DRIFT_SLACK = 1.0  # k, in scales
DRIFT_CLIP = 4.0  # a reading's distance counts at most this many scales (one spike is no drift)
DRIFT_WARMUP = 6  # readings whose median seeds the baseline
DRIFT_MIN_READINGS = 24  # fewer: nothing is decided (the scale is too uncertain)
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution -> its standard deviation
_TRIM = 0.1  # the share of the largest differences the trimmed estimate leaves out
# E[Z^2 | |Z| < z(0.95)] for a standard normal Z: (0.9 - 2 * 1.6449 * phi(1.6449)) / 0.9
_TRIMMED_SQUARE = 0.6230

Point = tuple[dt.datetime, float]


@dataclass(frozen=True)
class Drift:
    """A drift found in one series (the module docstring's figures)."""

    direction: str
    baseline: float
    current: float
    rate_per_hour: float
    since: dt.datetime
    cusum: float
    scale: float
    readings: int


def robust_scale(values: Sequence[float]) -> float:
    """The noise's standard deviation estimated from the differences of consecutive
    ``values``; 0.0 for fewer than three values.

    The larger of two estimates, each scaled to a normal distribution's standard deviation:
    the MAD of the differences, and their root mean square without the largest
    ``_TRIM`` of them. Both ignore a few outliers and a slow trend; on a short series the
    MAD alone often comes out at half the truth, and a scale too small is a false alarm.
    """
    if len(values) < 3:
        return 0.0
    steps = [b - a for a, b in itertools.pairwise(values)]
    middle = statistics.median(steps)
    mad = statistics.median(abs(step - middle) for step in steps)
    kept = sorted(step * step for step in steps)[: max(1, int(len(steps) * (1 - _TRIM)))]
    trimmed = math.sqrt(sum(kept) / len(kept) / _TRIMMED_SQUARE)
    return max(_MAD_TO_SIGMA * mad, trimmed) / math.sqrt(2.0)


def slope_per_hour(points: Sequence[Point]) -> float:
    """The least-squares slope of ``points`` in units per hour (0.0 for fewer than two
    distinct times)."""
    if len(points) < 2:
        return 0.0
    origin = points[0][0]
    hours = [(when - origin).total_seconds() / 3600.0 for when, _ in points]
    values = [value for _, value in points]
    mean_h = sum(hours) / len(hours)
    mean_v = sum(values) / len(values)
    spread = sum((h - mean_h) ** 2 for h in hours)
    if spread == 0.0:
        return 0.0
    return sum((h - mean_h) * (v - mean_v) for h, v in zip(hours, values, strict=True)) / spread


def detect_drift(
    points: Sequence[Point], *, halflife: float, limit: float, floor: float
) -> Drift | None:
    """The drift at the newest of ``points`` (time order, one value per time), or None.

    ``halflife``: the baseline's half-life in seconds; ``limit``: the CUSUM decision
    interval in scales; ``floor``: the smallest scale (the module docstring's method).
    """
    if len(points) < DRIFT_MIN_READINGS:
        return None
    values = [value for _, value in points]
    scale = max(robust_scale(values), floor)
    cap = 2.0 * limit
    baseline = statistics.median(values[:DRIFT_WARMUP])
    up = down = 0.0
    up_start = down_start = DRIFT_WARMUP
    up_base = down_base = baseline
    previous = points[DRIFT_WARMUP - 1][0]
    for index in range(DRIFT_WARMUP, len(points)):
        when, value = points[index]
        z = max(-DRIFT_CLIP, min(DRIFT_CLIP, (value - baseline) / scale))
        if up == 0.0:
            up_start, up_base = index, baseline
        if down == 0.0:
            down_start, down_base = index, baseline
        up = min(max(0.0, up + z - DRIFT_SLACK), cap)
        down = min(max(0.0, down - z - DRIFT_SLACK), cap)
        seconds = max((when - previous).total_seconds(), 0.0)
        # Until the average has seen enough readings it is their running mean: the seed
        # alone is too uncertain to measure a drift against.
        weight = max(1.0 - 2.0 ** (-seconds / halflife), 1.0 / (index + 1))
        baseline += weight * (value - baseline)
        previous = when
    if max(up, down) <= limit:
        return None
    rising = up >= down
    start, base, total = (up_start, up_base, up) if rising else (down_start, down_base, down)
    run = points[max(start - 1, 0) :]  # from the last reading still at the baseline
    return Drift(
        direction="up" if rising else "down",
        baseline=base,
        current=values[-1],
        rate_per_hour=slope_per_hour(run),
        since=points[start][0],
        cusum=total,
        scale=scale,
        readings=len(points),
    )


def unique_times(points: Sequence[Point]) -> list[Point]:
    """``points`` in time order with one value per time (two gateways hearing one sensor
    store its reading twice: the first kept)."""
    out: list[Point] = []
    for when, value in sorted(points, key=lambda point: point[0]):
        if out and out[-1][0] == when:
            continue
        out.append((when, value))
    return out


def _round(value: float) -> float:
    return round(value, 3)


def drift_condition(
    series: Mapping[str, Sequence[Point]], thresholds: Thresholds
) -> Condition | None:
    """``cabinet_drift`` for one sensor from its series by metric (only ``DRIFT_METRICS``
    are examined), or None."""
    found: dict[str, Drift] = {}
    for metric, points in sorted(series.items()):
        floor = DRIFT_METRICS.get(metric)
        if floor is None:
            continue
        drift = detect_drift(
            unique_times(points),
            halflife=thresholds.drift_halflife,
            limit=thresholds.drift_limit,
            floor=floor,
        )
        if drift is not None:
            found[metric] = drift
    if not found:
        return None
    metric = max(found, key=lambda name: found[name].cusum)
    drift = found[metric]
    detail = {
        "metric": metric,
        "metrics": sorted(found),
        "direction": drift.direction,
        "baseline": _round(drift.baseline),
        "current": _round(drift.current),
        "rate_per_hour": _round(drift.rate_per_hour),
        "since": drift.since.isoformat(),
        "cusum": _round(drift.cusum),
        "limit": thresholds.drift_limit,
        "scale": _round(drift.scale),
        "readings": drift.readings,
        "window_seconds": thresholds.drift_window,
    }
    return Condition(CABINET_DRIFT, WARNING, detail)


@dataclass(frozen=True)
class BeaconSnapshot:
    """A branch beacon as the silence rule sees it: ``last_heard_at`` is the newest reading
    of its address stored from a gateway or kiosk of its branch (None: never)."""

    beacon_id: int
    identifier: str
    address: str
    label: str
    created_at: dt.datetime
    last_heard_at: dt.datetime | None


def _silent(beacon: BeaconSnapshot, thresholds: Thresholds, now: dt.datetime) -> bool:
    since = beacon.last_heard_at or beacon.created_at
    return (now - since).total_seconds() >= thresholds.beacon_silent


def beacons_silent(
    beacons: Sequence[BeaconSnapshot],
    gateways_online: int,
    thresholds: Thresholds,
    now: dt.datetime,
) -> Condition | None:
    """``beacon_silent`` for one branch: its registered ``beacons`` with an address, and how
    many of its active gateways and kiosks are online; None when no beacon is silent or no
    gateway is online (module docstring)."""
    if gateways_online < 1:
        return None
    silent = sorted(
        (beacon for beacon in beacons if _silent(beacon, thresholds, now)),
        key=lambda beacon: beacon.beacon_id,
    )
    if not silent:
        return None
    # No "silent for" figure: it would change on every run and rewrite the open alert.
    listed = [
        {
            "beacon_id": beacon.beacon_id,
            "identifier": beacon.identifier,
            "address": beacon.address,
            "label": beacon.label,
            "last_heard_at": beacon.last_heard_at.isoformat() if beacon.last_heard_at else None,
        }
        for beacon in silent
    ]
    detail = {
        "beacons": listed,
        "silent_after_seconds": thresholds.beacon_silent,
        "gateways_online": gateways_online,
    }
    return Condition(BEACON_SILENT, WARNING, detail)
