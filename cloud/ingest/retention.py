"""Data classes and retention: how long each kind of reading and event is kept.

Every reading and event is stored with a data class; ``purge_expired`` deletes what is older
than its class's retention. Wearable and location data are personal data, so they are kept
only briefly by default; what describes the branch and the fleet is kept longer.

| class | what | default |
|---|---|---|
| ``health`` | wearables' body readings: heart rate, RR intervals, energy, contact, mass | 7 days |
| ``presence`` | presence enter/leave, and beacon identities heard (where someone was) | 30 days |
| ``interaction`` | event readings: button presses, commands, dimmer turns | 90 days |
| ``device`` | batteries, voltages, uptime, firmware; gateway health and loss | 90 days |
| ``environment`` | everything else: temperature, humidity, CO2, doors, power ... | 365 days |

A reading's class comes from its metric (``classify``): without knowing what carried the
sensor, a temperature is the room's. Times compared are ``measured_at`` / ``occurred_at``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlalchemy.orm import Session

from cloud.ingest.models import DeviceEvent, Reading

HEALTH = "health"
PRESENCE = "presence"
INTERACTION = "interaction"
DEVICE = "device"
ENVIRONMENT = "environment"
CLASSES = (HEALTH, PRESENCE, INTERACTION, DEVICE, ENVIRONMENT)

_BY_METRIC = {
    **dict.fromkeys(
        ("heart_rate", "rr_intervals", "sensor_contact", "energy_expended", "mass"), HEALTH
    ),
    **dict.fromkeys(
        ("uuid", "major", "minor", "measured_power", "namespace", "instance"), PRESENCE
    ),
    **dict.fromkeys(
        (
            "battery",
            "voltage",
            "uptime",
            "packet_id",
            "advertisement_count",
            "tx_power",
            "battery_low",
            "battery_charging",
            "firmware_version",
            "settings_revision",
            "device_type_id",
        ),
        DEVICE,
    ),
}
_SUFFIX = re.compile(r"_[1-9][0-9]*$")  # "temperature_2": the second temperature

DEFAULT_RETENTION: Mapping[str, dt.timedelta] = {
    HEALTH: dt.timedelta(days=7),
    PRESENCE: dt.timedelta(days=30),
    INTERACTION: dt.timedelta(days=90),
    DEVICE: dt.timedelta(days=90),
    ENVIRONMENT: dt.timedelta(days=365),
}


class RetentionError(ValueError):
    """A retention setting that cannot be used; the message says which."""


def classify(metric: str, unit: str) -> str:
    """The data class of a reading of ``metric`` in ``unit``."""
    if unit == "event":
        return INTERACTION
    return _BY_METRIC.get(_SUFFIX.sub("", metric), ENVIRONMENT)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each data class is kept (``DEFAULT_RETENTION`` for classes not given)."""

    periods: Mapping[str, dt.timedelta] = field(default_factory=lambda: dict(DEFAULT_RETENTION))

    def __post_init__(self) -> None:
        for name, period in self.periods.items():
            if name not in CLASSES:
                raise RetentionError(
                    "unknown data class %r (known: %s)" % (name, ", ".join(CLASSES))
                )
            if not isinstance(period, dt.timedelta) or period <= dt.timedelta(0):
                raise RetentionError("retention of %s must be a positive duration" % name)

    def period(self, data_class: str) -> dt.timedelta:
        """How long ``data_class`` is kept."""
        return self.periods.get(data_class, DEFAULT_RETENTION[data_class])

    @classmethod
    def parse(cls, items: Mapping[str, str]) -> RetentionPolicy:
        """A policy from text such as ``{"health": "7d", "presence": "12h"}`` (units d, h)."""
        periods = dict(DEFAULT_RETENTION)
        for name, text in items.items():
            match = re.fullmatch(r"\s*([0-9]+)\s*([dh])\s*", text)
            if match is None:
                raise RetentionError(
                    "retention of %s must be like 7d or 12h, not %r" % (name, text)
                )
            amount = int(match.group(1))
            periods[name] = dt.timedelta(**{"days" if match.group(2) == "d" else "hours": amount})
        return cls(periods)


def purge_expired(
    session: Session, now: dt.datetime, policy: RetentionPolicy | None = None
) -> dict[str, int]:
    """Delete readings and events older than their class's retention at ``now``.

    Returns rows deleted per class (readings and events together). The caller commits.
    """
    policy = policy or RetentionPolicy()
    deleted: dict[str, int] = {}
    for name in CLASSES:
        cutoff = now - policy.period(name)
        readings = session.execute(
            delete(Reading)
            .where(Reading.data_class == name, Reading.measured_at < cutoff)
            .execution_options(synchronize_session=False)
        )
        events = session.execute(
            delete(DeviceEvent)
            .where(DeviceEvent.data_class == name, DeviceEvent.occurred_at < cutoff)
            .execution_options(synchronize_session=False)
        )
        deleted[name] = _count(readings) + _count(events)
    return deleted


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
