"""Fleet alert rules: which conditions hold for one device, from a snapshot of what the
cloud knows about it. Pure: no database, no clock (``now`` comes in), no Flask.

``cloud.fleet.alerts`` loads the snapshots and turns conditions into alert rows (open once,
update, resolve); this module only decides.

- ``offline`` (critical): an active gateway or kiosk not heard from for ``offline_after``
  seconds or more (counted from its registration if it was never heard).
- ``queue_growing``: a gateway's latest queue depth is ``queue_depth`` batches or more
  (critical), or the depth rose in each of the last ``queue_growth`` health reports of the
  window (warning).
- ``battery_low`` (warning): battery ``battery_low`` percent or less: a gateway's from its
  health counters, a wearable's, sensor's or beacon's from its latest ``battery`` reading.
  Once open it clears only above ``battery_low + BATTERY_HYSTERESIS``, so a battery at the
  edge does not open and close an alert on every check.
- ``auth_failures`` (critical): a gateway's ``frames_unauthenticated`` plus
  ``frames_replayed`` rose by ``auth_failures`` or more over the health reports of the
  window: BLE frames that failed their MIC or replayed a counter, someone may be forging a
  paired sensor (telemetry examined for security anomalies).
- ``decode_failures`` (warning): ``frames_malformed`` rose by ``decode_failures`` or more.
- ``data_lost`` (critical): a gateway's ``dropped_batches`` (its queue was full: the oldest
  batches went) or ``open_batches_lost`` (a power cut took a batch still open in RAM) rose
  over the window: readings the gateway accepted will never arrive. Any loss opens it: the
  promise is that loss is counted and reported, never silent, and an operator must hear it.
  Like the other counter rules it compares reports inside the window: a gateway that was
  off for longer than the window has no report before the loss to compare with, and the
  loss shows only in its health records (a known gap).
- ``envelopes_rejected``: the cloud itself refused ``envelopes_rejected`` or more of a
  gateway's or kiosk's sealed envelopes over the current and previous hour
  (``cloud.ingest.rejections`` counts them per sender, reason and hour; fed by
  ``cloud.fleet.rejection_alerts``): critical if any was refused for a reason that says the
  key is wrong or someone forges (``SECURITY_REASONS``), else warning. Once open it stays
  open while the window holds any rejection, and resolves when the window is clean (the
  hourly buckets only grow, then leave the window whole: without this, an alert would close
  as the busier bucket leaves and open again at the next few rejections). Rejections of no
  inventory sender (``unknown``) belong to no device and open no alert: see
  ``bankiot_rejections_unknown_sender`` (``cloud.fleet.alert_metrics``).

Counters are cumulative since the gateway booted and start again at zero after a reboot.
An increase is counted the way Prometheus' ``increase()`` counts it: between two
consecutive reports, ``b - a`` when ``b >= a``; when ``b < a`` the counter was reset and
``b`` frames were counted since, so the increase is ``b`` (never the drop, never negative).
A pair in which either value is missing adds nothing. Only reports inside the window are
compared, so the window should span several health intervals (a minute by default).

Settings (``cloud.config``: lower case in the file, ``BANKIOT_ALERT_*`` in the environment),
whole numbers:

| key | default | range | meaning |
|---|---|---|---|
| ``alert_offline_after`` | 300 | 30..604800 | seconds of silence before a gateway is offline |
| ``alert_queue_depth`` | 100 | 1.. | queued batches that open a critical ``queue_growing`` |
| ``alert_queue_growth`` | 5 | 1..1000 | consecutive health reports with a rising depth |
| ``alert_battery_low`` | 20 | 1..99 | battery percent at or below which ``battery_low`` opens |
| ``alert_auth_failures`` | 10 | 1.. | unauthenticated + replayed frames per window |
| ``alert_decode_failures`` | 100 | 1.. | malformed frames per window |
| ``alert_window`` | 900 | 60..86400 | seconds of health reports compared for the counters |
| ``alert_drift_window`` | 21600 | 3600..604800 | seconds of a sensor's readings examined |
| ``alert_drift_halflife`` | 3600 | 60..86400 | half-life of the drift baseline (EWMA), seconds |
| ``alert_drift_limit`` | 10 | 3..1000 | CUSUM decision interval, in robust standard deviations |
| ``alert_beacon_silent`` | 900 | 60..604800 | seconds a branch beacon may go unheard |
| ``alert_envelopes_rejected`` | 10 | 1.. | envelopes the cloud rejected over two hours |

``cabinet_drift`` and ``beacon_silent`` are decided by ``cloud.fleet.anomaly_rules`` (from
readings, not from a device's snapshot) and fed by ``cloud.fleet.anomalies``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from cloud.config import ConfigError

OFFLINE = "offline"
QUEUE_GROWING = "queue_growing"
BATTERY_LOW = "battery_low"
AUTH_FAILURES = "auth_failures"
DECODE_FAILURES = "decode_failures"
DATA_LOST = "data_lost"
CABINET_DRIFT = "cabinet_drift"
BEACON_SILENT = "beacon_silent"
ENVELOPES_REJECTED = "envelopes_rejected"

CRITICAL = "critical"
WARNING = "warning"
SEVERITIES = (CRITICAL, WARNING)

# The catalogue: kind -> what it means (for the API, the CLI and the docs).
KINDS: Mapping[str, str] = {
    OFFLINE: "a gateway or kiosk has not been heard from",
    QUEUE_GROWING: "a gateway's store-and-forward queue is long or keeps growing",
    BATTERY_LOW: "a device's battery is low",
    AUTH_FAILURES: "a gateway hears BLE frames that fail authentication or replay a counter",
    DECODE_FAILURES: "a gateway hears many malformed BLE frames",
    DATA_LOST: "a gateway lost readings it had accepted (queue full, or a power cut)",
    CABINET_DRIFT: "a sensor's temperature or acceleration drifts from its own baseline",
    BEACON_SILENT: "a branch beacon is not heard by its branch's gateways, which are online",
    ENVELOPES_REJECTED: "the cloud rejects a gateway's or kiosk's sealed envelopes",
}

GATEWAY_KINDS = frozenset(("gateway", "kiosk"))
BATTERY_HYSTERESIS = 5  # percent: a battery at the threshold's edge would open and close
# Rejection reasons (``cloud.ingest.stats``) that say the sender's key is wrong or revoked,
# or that someone forges: critical. The others (malformed, undecodable...) are warnings.
SECURITY_REASONS = frozenset(("forged", "wrong_gateway", "unknown_key", "revoked"))

_MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds (the module docstring's table); ``from_config`` reads settings."""

    offline_after: int = 300
    queue_depth: int = 100
    queue_growth: int = 5
    battery_low: int = 20
    auth_failures: int = 10
    decode_failures: int = 100
    window: int = 900
    drift_window: int = 21600
    drift_halflife: int = 3600
    drift_limit: int = 10
    beacon_silent: int = 900
    envelopes_rejected: int = 10

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Thresholds:
        """Thresholds from a Flask config mapping (``ALERT_*`` keys; absent: the default).

        Raises ``cloud.config.ConfigError`` (one line) for a value that is not a whole
        number in its range.
        """
        values: dict[str, int] = {}
        for item in fields(cls):
            key = "ALERT_%s" % item.name.upper()
            raw = config.get(key)
            if raw is None:
                continue
            low, high = _RANGES[item.name]
            try:
                if isinstance(raw, bool | float):
                    raise ValueError
                value = int(str(raw).strip(), 10)
            except ValueError:
                raise ConfigError("%s must be a whole number, not %r" % (key, raw)) from None
            if not low <= value <= high:
                raise ConfigError("%s must be %d to %d, not %d" % (key, low, high, value))
            values[item.name] = value
        return cls(**values)


_RANGES: Mapping[str, tuple[int, int]] = {
    "offline_after": (30, 7 * 86400),
    "queue_depth": (1, _MAX_INT),
    "queue_growth": (1, 1000),
    "battery_low": (1, 99),
    "auth_failures": (1, _MAX_INT),
    "decode_failures": (1, _MAX_INT),
    "window": (60, 86400),
    "drift_window": (3600, 7 * 86400),
    "drift_halflife": (60, 86400),
    "drift_limit": (3, 1000),
    "beacon_silent": (60, 7 * 86400),
    "envelopes_rejected": (1, _MAX_INT),
}


@dataclass(frozen=True)
class Report:
    """The figures of one health report that the rules use (None: not reported)."""

    depth: int | None = None
    unauthenticated: int | None = None
    replayed: int | None = None
    malformed: int | None = None
    dropped: int | None = None  # dropped_batches
    open_lost: int | None = None  # open_batches_lost


@dataclass(frozen=True)
class Snapshot:
    """What the cloud knows about one device when the rules run.

    ``last_heard_at``: the latest time the cloud heard from it (None: never);
    ``created_at``: when it was registered (the silence of a device never heard starts
    there); ``queue_depth`` and ``battery``: the latest known values (None: unknown);
    ``battery_source``: ``health`` (a gateway's counters) or ``reading``;
    ``reports``: the health reports of the window, in the order they were sealed.
    """

    device_id: int
    kind: str
    status: str
    created_at: dt.datetime
    last_heard_at: dt.datetime | None = None
    queue_depth: int | None = None
    battery: float | None = None
    battery_source: str = "health"
    reports: Sequence[Report] = ()


@dataclass(frozen=True)
class Condition:
    """A condition that holds: its kind, severity and the numbers that explain it."""

    kind: str
    severity: str
    detail: Mapping[str, Any]


def increase(values: Sequence[int | None]) -> int:
    """How much a cumulative counter rose over ``values`` (oldest first), across resets.

    Prometheus' rule: a value below its predecessor means the counter restarted from zero,
    so that value itself is the increase; a pair with a missing value adds nothing.
    """
    total = 0
    for before, after in itertools.pairwise(values):
        if before is None or after is None:
            continue
        total += after - before if after >= before else after
    return total


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _offline(snapshot: Snapshot, limits: Thresholds, now: dt.datetime) -> Condition | None:
    if snapshot.kind not in GATEWAY_KINDS or snapshot.status != "active":
        return None
    since = snapshot.last_heard_at or snapshot.created_at
    if (now - since).total_seconds() < limits.offline_after:
        return None
    # No "silent for" figure: it would change on every run and rewrite every open alert.
    detail = {
        "last_heard_at": _iso(snapshot.last_heard_at),
        "offline_after_seconds": limits.offline_after,
    }
    return Condition(OFFLINE, CRITICAL, detail)


def _rising(depths: Sequence[int | None], reports: int) -> bool:
    """True if each of the last ``reports`` depths is above the one before it."""
    tail = depths[-(reports + 1) :]
    if len(tail) < reports + 1 or any(depth is None for depth in tail):
        return False
    return all(b > a for a, b in itertools.pairwise(tail))  # type: ignore[operator]


def _queue(snapshot: Snapshot, limits: Thresholds) -> Condition | None:
    if snapshot.kind not in GATEWAY_KINDS:
        return None
    depth = snapshot.queue_depth
    deep = depth is not None and depth >= limits.queue_depth
    depths = [report.depth for report in snapshot.reports]
    rising = _rising(depths, limits.queue_growth)
    if not (deep or rising):
        return None
    detail = {
        "queue_depth": depth,
        "queue_depth_threshold": limits.queue_depth,
        "rising_reports": limits.queue_growth if rising else 0,
        "recent_depths": depths[-(limits.queue_growth + 1) :],
    }
    return Condition(QUEUE_GROWING, CRITICAL if deep else WARNING, detail)


def _battery(
    snapshot: Snapshot, limits: Thresholds, open_kinds: Collection[str]
) -> Condition | None:
    battery = snapshot.battery
    if battery is None:
        return None
    limit = limits.battery_low + (BATTERY_HYSTERESIS if BATTERY_LOW in open_kinds else 0)
    if battery > limit:
        return None
    detail = {
        "battery": battery,
        "battery_low": limits.battery_low,
        "source": snapshot.battery_source,
    }
    return Condition(BATTERY_LOW, WARNING, detail)


def _counters(snapshot: Snapshot, limits: Thresholds) -> list[Condition]:
    if snapshot.kind not in GATEWAY_KINDS or len(snapshot.reports) < 2:
        return []
    reports = snapshot.reports
    unauthenticated = increase([report.unauthenticated for report in reports])
    replayed = increase([report.replayed for report in reports])
    malformed = increase([report.malformed for report in reports])
    common = {"reports": len(reports), "window_seconds": limits.window}
    found = []
    if unauthenticated + replayed >= limits.auth_failures:
        detail = {
            "frames_unauthenticated": unauthenticated,
            "frames_replayed": replayed,
            "threshold": limits.auth_failures,
            **common,
        }
        found.append(Condition(AUTH_FAILURES, CRITICAL, detail))
    if malformed >= limits.decode_failures:
        detail = {"frames_malformed": malformed, "threshold": limits.decode_failures, **common}
        found.append(Condition(DECODE_FAILURES, WARNING, detail))
    dropped = increase([report.dropped for report in reports])
    open_lost = increase([report.open_lost for report in reports])
    if dropped or open_lost:
        detail = {"dropped_batches": dropped, "open_batches_lost": open_lost, **common}
        found.append(Condition(DATA_LOST, CRITICAL, detail))
    return found


@dataclass(frozen=True)
class Rejections:
    """A device's rejected envelopes over the window: ``reasons`` (reason -> count), when
    the first and the last of them arrived, and the window's first hour (``since``)."""

    reasons: Mapping[str, int]
    first_seen: dt.datetime
    last_seen: dt.datetime
    since: dt.datetime


def rejected_condition(
    rejections: Rejections, thresholds: Thresholds, already_open: bool = False
) -> Condition | None:
    """``envelopes_rejected`` if the window's rejections reach ``thresholds``, or, when the
    alert is ``already_open``, while the window holds any (module docstring)."""
    total = sum(rejections.reasons.values())
    if total < (1 if already_open else thresholds.envelopes_rejected):
        return None
    security = any(reason in SECURITY_REASONS for reason in rejections.reasons)
    detail = {
        "rejected": total,
        "reasons": dict(sorted(rejections.reasons.items())),
        "threshold": thresholds.envelopes_rejected,
        "since": rejections.since.isoformat(),
        "first_seen": rejections.first_seen.isoformat(),
        "last_seen": rejections.last_seen.isoformat(),
    }
    return Condition(ENVELOPES_REJECTED, CRITICAL if security else WARNING, detail)


def evaluate(
    snapshot: Snapshot,
    thresholds: Thresholds,
    now: dt.datetime,
    open_kinds: Collection[str] = (),
) -> dict[str, Condition]:
    """The conditions that hold for ``snapshot`` at ``now``, by kind.

    ``open_kinds``: the kinds already open for this device (a low battery clears only
    above its threshold plus ``BATTERY_HYSTERESIS``).
    """
    found = [
        _offline(snapshot, thresholds, now),
        _queue(snapshot, thresholds),
        _battery(snapshot, thresholds, open_kinds),
        *_counters(snapshot, thresholds),
    ]
    return {condition.kind: condition for condition in found if condition is not None}
