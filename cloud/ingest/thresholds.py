"""Threshold crossings: which readings cross a configured level, and back. Pure: no
database, no clock, no Flask (``store`` keeps the states, ``pipeline`` wires it up).

Setting (``cloud.config``): ``ingest_thresholds`` in the file, ``BANKIOT_INGEST_THRESHOLDS``
in the environment, one string (like every setting, so the file and the environment say
it the same way): rules separated by commas, each ``METRIC>LEVEL[:NORMAL]`` or
``METRIC<LEVEL[:NORMAL]``::

    ingest_thresholds = "temperature>30:28, temperature<5:7, co2>1200:1000, battery<15:20"

- ``temperature>30:28``: a temperature above 30 crosses; it is back to normal at 28 or
  below. The gap (hysteresis) keeps a value hovering at the line from flooding events.
  Without ``:NORMAL`` the normal level is the level itself (no gap).
- ``battery<15:20``: below 15 crosses; back to normal at 20 or above.
- The metric is a reading's metric exactly (``temperature_2``, a device's second
  thermometer, needs a rule of its own); only numbers (integers and floats, not booleans,
  not NaN) are compared. One metric may have several rules (a warning and a critical
  level). The same rule twice, or a normal level on the wrong side, is refused with one line.

State, per (device, rule): ``normal`` or ``crossed``, starting ``normal``. A reading beyond
the level while normal gives a ``crossed`` change; a reading at or past the normal level
while crossed gives a ``normal`` change; nothing else changes the state. Readings are taken
in time order (a batch holds each device's readings in time order). A reading measured
before the newest one already taken for that state (``State.last_at``) is ignored for the
state: it comes from an older batch that arrived late (the urgent lane overtakes a backlog,
two gateways hear one sensor), and the state it would have decided is history that newer
readings have already decided. It is still stored as a reading. (For a gateway without a
clock, times are estimated from arrival, ``records``: there a late batch counts as newer.)

A rule is known by its key (``temperature>30``): changing a rule's level makes a new rule,
which starts normal (its first reading beyond the new level is a ``crossed`` event); the old
rule's states stay behind, unused.

Events (``threshold_events``): kind ``threshold``, for the reading's device, at the reading's
time, in the reading's data class, data ``{metric, value, level, normal, direction, state}``
with ``state`` ``crossed`` or ``normal`` and ``direction`` ``>`` or ``<``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.config import ConfigError

ABOVE = ">"
BELOW = "<"
KIND = "threshold"
CROSSED = "crossed"
NORMAL = "normal"
SETTING = "INGEST_THRESHOLDS"
MAX_RULES = 100
METRIC_LEN = 64  # models.METRIC_LEN (not imported: this module stays free of the schema)
RULE_LEN = 96  # the longest key: a metric, a direction and a number

_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_RULE = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*([<>])\s*(%s)\s*(?::\s*(%s)\s*)?" % (_NUMBER, _NUMBER)
)


class ThresholdError(ConfigError):
    """An ``ingest_thresholds`` setting that cannot be used; the message says which rule."""


def _text(number: float) -> str:
    """``number`` as short as it reads back exactly: ``30``, ``0.5``, ``1e+20``."""
    text = repr(number)
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class Threshold:
    """One rule: ``metric`` crosses when beyond ``level`` in ``direction`` (``>`` above,
    ``<`` below), and is back to normal at ``normal`` or past it, the other way."""

    metric: str
    direction: str
    level: float
    normal: float
    # The rule's name and key in the state table: ``temperature>30``.
    key: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", "%s%s%s" % (self.metric, self.direction, _text(self.level)))
        if self.direction not in (ABOVE, BELOW):
            raise ThresholdError("a threshold's direction is > or <, not %r" % self.direction)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.metric) or (
            len(self.metric) > METRIC_LEN
        ):
            raise ThresholdError(
                "threshold metric %r is not a name of at most %d letters, digits and _"
                % (self.metric[:80], METRIC_LEN)
            )
        if not (math.isfinite(self.level) and math.isfinite(self.normal)):
            raise ThresholdError("threshold %s: levels must be finite numbers" % self.key)
        if (self.direction == ABOVE and self.normal > self.level) or (
            self.direction == BELOW and self.normal < self.level
        ):
            side = "at or below" if self.direction == ABOVE else "at or above"
            raise ThresholdError(
                "threshold %s:%s: the normal level must be %s %s"
                % (self.key, _text(self.normal), side, _text(self.level))
            )

    def beyond(self, value: float) -> bool:
        """True if ``value`` crosses the level (strictly beyond it)."""
        return value > self.level if self.direction == ABOVE else value < self.level

    def recovered(self, value: float) -> bool:
        """True if ``value`` is back to normal (at the normal level or past it)."""
        return value <= self.normal if self.direction == ABOVE else value >= self.normal


@dataclass(frozen=True)
class Thresholds:
    """Every rule, and the rules of each metric; empty (false) when none is configured."""

    rules: tuple[Threshold, ...] = ()
    by_metric: Mapping[str, tuple[Threshold, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_metric: dict[str, tuple[Threshold, ...]] = {}
        seen = set()
        for rule in self.rules:
            if rule.key in seen:
                raise ThresholdError("threshold %s is given twice" % rule.key)
            seen.add(rule.key)
            by_metric[rule.metric] = (*by_metric.get(rule.metric, ()), rule)
        if len(self.rules) > MAX_RULES:
            raise ThresholdError("at most %d thresholds, not %d" % (MAX_RULES, len(self.rules)))
        object.__setattr__(self, "by_metric", by_metric)

    def __bool__(self) -> bool:
        return bool(self.rules)

    @classmethod
    def parse(cls, text: str | None) -> Thresholds:
        """Rules from the setting's text (module docstring); None or blank: none.

        Raises ``ThresholdError`` (a ``cloud.config.ConfigError``, one line).
        """
        if text is None:
            return cls()
        if not isinstance(text, str):
            raise ThresholdError("ingest_thresholds must be a string, not %r" % (text,))
        if not text.strip():
            return cls()
        try:
            return cls(tuple(_rule(item) for item in text.split(",")))
        except ThresholdError as exc:
            raise ThresholdError("ingest_thresholds: %s" % exc) from None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Thresholds:
        """Rules from a Flask config mapping (``INGEST_THRESHOLDS``; absent: none)."""
        return cls.parse(config.get(SETTING))


def _rule(item: str) -> Threshold:
    if not item.strip():
        raise ThresholdError("an empty rule (two commas in a row, or one at the end)")
    match = _RULE.fullmatch(item)
    if match is None:
        raise ThresholdError(
            "%r is not METRIC>LEVEL[:NORMAL] or METRIC<LEVEL[:NORMAL]" % item.strip()[:80]
        )
    metric, direction, level, normal = match.groups()
    # float("1e999") is inf, which Threshold refuses: levels must be finite.
    return Threshold(metric, direction, float(level), float(normal or level))


@dataclass(frozen=True)
class State:
    """One (device, rule)'s state: crossed or not, since when and at what value (the reading
    that last changed it), and the time of the newest reading taken (``last_at``)."""

    crossed: bool = False
    since: dt.datetime | None = None
    value: float | None = None
    last_at: dt.datetime | None = None


@dataclass(frozen=True)
class Change:
    """A reading that changed a state: when, its value, the new state, and the reading's
    place in what ``evaluate`` was given."""

    at: dt.datetime
    value: float
    crossed: bool
    index: int


def evaluate(
    rule: Threshold, state: State, readings: Iterable[tuple[dt.datetime, float]]
) -> tuple[State, list[Change]]:
    """The state after ``readings`` (``(measured_at, value)`` in time order) from ``state``,
    and the changes on the way (module docstring)."""
    changes = []
    crossed, since, held, last = state.crossed, state.since, state.value, state.last_at
    for index, (at, value) in enumerate(readings):
        if last is not None and at < last:
            continue  # older than what decided the state already
        last = at
        if rule.recovered(value) if crossed else rule.beyond(value):
            crossed, since, held = not crossed, at, value
            changes.append(Change(at, value, crossed, index))
    return State(crossed, since, held, last), changes


def watched_value(row: Mapping[str, Any]) -> float | None:
    """The number a reading row (``records``) holds, if thresholds compare it; else None."""
    if row["value_kind"] not in ("int", "float"):
        return None
    value = row["value_num"]
    return value if math.isfinite(value) else None


StateKey = tuple[str, str]  # (device, rule key)


def state_keys(thresholds: Thresholds, rows: Iterable[Mapping[str, Any]]) -> set[StateKey]:
    """The (device, rule key) pairs the reading ``rows`` touch."""
    pairs = {(row["device"], row["metric"]) for row in rows}
    return {
        (device, rule.key)
        for device, metric in pairs
        for rule in thresholds.by_metric.get(metric, ())
    }


def threshold_events(
    thresholds: Thresholds,
    states: Mapping[StateKey, State],
    rows: Sequence[Mapping[str, Any]],
) -> tuple[dict[StateKey, State], list[dict[str, Any]]]:
    """Run the reading ``rows`` (``records`` rows, each device's in time order) through
    ``thresholds`` from ``states`` (a missing key is normal).

    Returns the new state of every key a reading touched and the event rows (without
    ``receipt_id``) in time order (each device's in the readings' order).
    """
    series: dict[tuple[str, str], tuple[list, list]] = {}  # (device, metric): rows, values
    for row in rows:
        value = watched_value(row)
        if value is not None and row["metric"] in thresholds.by_metric:
            taken, values = series.setdefault((row["device"], row["metric"]), ([], []))
            taken.append(row)
            values.append((row["measured_at"], value))
    new: dict[StateKey, State] = {}
    events: list[dict[str, Any]] = []
    for (device, metric), (taken, values) in series.items():
        for rule in thresholds.by_metric[metric]:
            key = (device, rule.key)
            new[key], changes = evaluate(rule, states.get(key) or State(), values)
            events.extend(_event(rule, taken[change.index], change) for change in changes)
    events.sort(key=lambda event: event["occurred_at"])  # stable: a device's order stays
    return new, events


def _event(rule: Threshold, row: Mapping[str, Any], change: Change) -> dict[str, Any]:
    return {
        "gateway": row["gateway"],
        "device": row["device"],
        "kind": KIND,
        "occurred_at": change.at,
        "time_estimated": row["time_estimated"],
        "received_at": row["received_at"],
        "data": {
            "metric": rule.metric,
            "value": change.value,
            "level": rule.level,
            "normal": rule.normal,
            "direction": rule.direction,
            "state": CROSSED if change.crossed else NORMAL,
        },
        "data_class": row["data_class"],
    }
