"""Data classes and retention: how long each kind of reading and event is kept.

Every reading and event is stored with a data class; ``purge_expired`` deletes what is older
than its class's retention. Wearable and location data are personal data, so they are kept
only briefly by default; what describes the branch and the fleet is kept longer.

| class | what | default |
|---|---|---|
| ``health`` | all a wearable sends (below); heart rate, RR, energy, contact, mass | 7 days |
| ``presence`` | enter/leave (wearables' too), beacons heard, kiosk events of a wearable | 30 days |
| ``interaction`` | button presses, commands, dimmer turns; walk-ins' kiosk events | 90 days |
| ``device`` | batteries, voltages, uptime, firmware; gateway health and loss | 90 days |
| ``environment`` | everything else: temperature, humidity, CO2, doors, power ... | 365 days |

A reading's class comes from what sent it, then from its metric. A device registered in the
inventory as a wearable (``Device.kind == "wearable"``, its address as ``Device.uid``) is on
someone's body, so all it sends is personal health data whatever the metric, and so are the
events made from it (presence aside): ingest looks the batch's addresses up
(``wearables.WearableDirectory``, answers remembered for a minute) and
``records.mark_wearables`` marks them. Anything else is classified by metric (``classify``):
without knowing what carried the sensor, a temperature is the room's.

``purge_expired`` also deletes what registered wearables sent (their readings, and their
events other than presence) once older than the ``health`` retention, whatever class it was
stored with: readings that arrived before the device was registered as a wearable, or in the
minute an ingest worker still remembered it as something else, are not kept longer for that.
Times compared are ``measured_at`` / ``occurred_at``. Kiosk events (``kiosk_events``) are
purged by their class like the rest.

What was decided about customers has classes of its own (``RECORD_CLASSES``), purged by
``purge_records``: they are kept for accountability (to show why a customer was or was not
served or offered something, GDPR Art 5(2), Art 22), longer than the events they explain,
then deleted.

| class | what | default |
|---|---|---|
| ``decisions`` | ``rule_decisions`` and ``offer_decisions``, by when decided | 365 days |
| ``requests`` | ``service_requests`` once closed, by when closed (open ones stay) | 90 days |
| ``offer_results`` | ``offer_results`` (shown, accepted, declined), by when | 365 days |
| ``notifications`` | customers' inboxes (``notifications``), read or not, by creation | 180 days |
| ``app_decisions`` | the applications' decisions (``app_decisions``), by when decided | 365 days |
| ``life_events`` | ended life-event episodes (``life_event_history``), by when ended | 365 days |

What operations keep about the fleet itself has its own classes (``OPERATION_CLASSES``),
purged by ``purge_operations``:

| class | what | default |
|---|---|---|
| ``rejections`` | counts of rejected envelopes (``ingest_rejections``), by hour | 90 days |

A rule decision goes only once no staff request of its own remains (the request names it).
Loan applications and holding alerts are the customer's own requests, kept while the
customer is (deleted with them on erasure); a life event still found in the latest profile
stays in the history until it ends.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from cloud.analytics.models import LifeEventEpisode
from cloud.apps.models import AppDecision
from cloud.events.models import CLOSED, RuleDecision, ServiceRequest
from cloud.fleet.models import Device
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import DeviceEvent, Reading
from cloud.ingest.rejections import RejectionCount
from cloud.notifications.models import Notification
from cloud.offers.models import OfferDecision, OfferResult

HEALTH = "health"
PRESENCE = "presence"
INTERACTION = "interaction"
DEVICE = "device"
ENVIRONMENT = "environment"
CLASSES = (HEALTH, PRESENCE, INTERACTION, DEVICE, ENVIRONMENT)
DECISIONS = "decisions"
REQUESTS = "requests"
OFFER_RESULTS = "offer_results"
NOTIFICATIONS = "notifications"
APP_DECISIONS = "app_decisions"
LIFE_EVENTS = "life_events"
RECORD_CLASSES = (DECISIONS, REQUESTS, OFFER_RESULTS, NOTIFICATIONS, APP_DECISIONS, LIFE_EVENTS)
REJECTIONS = "rejections"
OPERATION_CLASSES = (REJECTIONS,)
ALL_CLASSES = CLASSES + RECORD_CLASSES + OPERATION_CLASSES

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
    DECISIONS: dt.timedelta(days=365),
    REQUESTS: dt.timedelta(days=90),
    OFFER_RESULTS: dt.timedelta(days=365),
    NOTIFICATIONS: dt.timedelta(days=180),
    APP_DECISIONS: dt.timedelta(days=365),
    LIFE_EVENTS: dt.timedelta(days=365),
    REJECTIONS: dt.timedelta(days=90),
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
            if name not in ALL_CLASSES:
                raise RetentionError(
                    "unknown data class %r (known: %s)" % (name, ", ".join(ALL_CLASSES))
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


# What a data class's retention deletes from: each table with its time column.
_CLASS_TABLES = (
    (Reading, Reading.measured_at),
    (DeviceEvent, DeviceEvent.occurred_at),
    (KioskEventRow, KioskEventRow.occurred_at),
)


def purge_expired(
    session: Session, now: dt.datetime, policy: RetentionPolicy | None = None
) -> dict[str, int]:
    """Delete readings and events older than their class's retention at ``now``.

    Returns rows deleted per class (readings, events and kiosk events together). The caller
    commits.
    """
    policy = policy or RetentionPolicy()
    deleted: dict[str, int] = {}
    for name in CLASSES:
        cutoff = now - policy.period(name)
        deleted[name] = sum(
            _delete(session, model, model.data_class == name, at < cutoff)
            for model, at in _CLASS_TABLES
        )
    deleted[HEALTH] += _purge_wearables(session, now - policy.period(HEALTH))
    return deleted


def _purge_wearables(session: Session, cutoff: dt.datetime) -> int:
    """Delete what registered wearables sent before ``cutoff`` in another class than
    health (module docstring); how many rows."""
    wearables = select(Device.uid).where(Device.kind == "wearable").scalar_subquery()
    readings = _delete(
        session, Reading, Reading.device.in_(wearables), Reading.measured_at < cutoff
    )
    events = _delete(
        session,
        DeviceEvent,
        DeviceEvent.device.in_(wearables),
        DeviceEvent.occurred_at < cutoff,
        DeviceEvent.data_class != PRESENCE,
    )
    return readings + events


def purge_records(
    session: Session, now: dt.datetime, policy: RetentionPolicy | None = None
) -> dict[str, int]:
    """Delete decisions, closed staff requests, offer results, notifications, the
    applications' decisions and ended life-event episodes older than their class's retention
    at ``now`` (module docstring); rows deleted per class. The caller commits."""
    policy = policy or RetentionPolicy()
    requests = _delete(
        session,
        ServiceRequest,
        ServiceRequest.state == CLOSED,
        ServiceRequest.closed_at < now - policy.period(REQUESTS),
    )
    cutoff = now - policy.period(DECISIONS)
    requested = select(ServiceRequest.decision_id).scalar_subquery()
    rules = _delete(
        session,
        RuleDecision,
        RuleDecision.decided_at < cutoff,
        RuleDecision.id.not_in(requested),
    )
    offers = _delete(session, OfferDecision, OfferDecision.at < cutoff)
    results = _delete(session, OfferResult, OfferResult.at < now - policy.period(OFFER_RESULTS))
    notes = _delete(
        session, Notification, Notification.created_at < now - policy.period(NOTIFICATIONS)
    )
    apps = _delete(session, AppDecision, AppDecision.at < now - policy.period(APP_DECISIONS))
    episodes = _delete(
        session, LifeEventEpisode, LifeEventEpisode.ended_at < now - policy.period(LIFE_EVENTS)
    )
    return {
        DECISIONS: rules + offers,
        REQUESTS: requests,
        OFFER_RESULTS: results,
        NOTIFICATIONS: notes,
        APP_DECISIONS: apps,
        LIFE_EVENTS: episodes,
    }


def purge_operations(
    session: Session, now: dt.datetime, policy: RetentionPolicy | None = None
) -> dict[str, int]:
    """Delete the counts of rejected envelopes whose whole hour is older than the
    ``rejections`` retention at ``now``; rows deleted per class. The caller commits."""
    policy = policy or RetentionPolicy()
    cutoff = now - policy.period(REJECTIONS) - dt.timedelta(hours=1)
    return {REJECTIONS: _delete(session, RejectionCount, RejectionCount.hour <= cutoff)}


def _delete(session: Session, model: type[Any], *where: ColumnElement[bool]) -> int:
    """Delete the rows of ``model`` that match ``where`` in one statement (nothing loaded
    into the session); how many."""
    result = session.execute(
        delete(model).where(*where).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
