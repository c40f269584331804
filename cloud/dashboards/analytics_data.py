"""What the analytics page shows: offers and campaign results as funnels, life events
found (per kind, and per month of first detection), and the platform's own figures (ingest
rate, delivery latency, ingest outcomes).

Offers: two funnels side by side from ``offer_results`` by channel: the kiosk's (check-ins
offered something, offers shown on the screen, accepted; declined beside) and the app
campaigns' (``app`` and ``wearable``: sent to the customer's inbox, which counts as shown,
accepted; declined beside: ``cloud.notifications``). The kiosk's "offered" counts
``offer_decisions`` that offered something and are not the inbox's (their inputs name the
channel; a decision anonymised by an erasure has no inputs and counts as the kiosk's).
Campaigns are listed with all their columns (``optional``). Life events and segments are
the stored profiles' (``cloud.analytics``): counts only, nobody named; life events per
month are counted by the database (``store.events_over_time``), since the page asks for
them every few seconds. These figures are bank-wide, so they are for cloud operations; the
ingest figures are scoped to the caller's branches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from cloud.analytics import store
from cloud.analytics.models import CustomerProfile, LifeEvent
from cloud.dashboards import optional
from cloud.notifications.offers import INBOX_CHANNELS
from cloud.offers.models import Campaign, OfferDecision, OfferResult

KIOSK = ("kiosk",)
INBOX = INBOX_CHANNELS
MONTHS = 12  # months the life-events chart covers, this one included


@dataclass(frozen=True)
class Funnel:
    """One channel's offers: its stages in order, ``declined`` beside."""

    stages: list[tuple[str, int]]
    declined: int


def _results(db: Session, channels: Sequence[str]) -> dict[str, int]:
    rows = db.execute(
        select(OfferResult.outcome, func.count())
        .where(OfferResult.channel.in_(list(channels)))
        .group_by(OfferResult.outcome)
    )
    return {str(outcome): int(n) for outcome, n in rows}


def _kiosk_offered(db: Session) -> int:
    channel = func.coalesce(OfferDecision.inputs["channel"].as_string(), KIOSK[0])
    query = select(func.count()).where(
        OfferDecision.outcome == "offered", channel.not_in(list(INBOX))
    )
    return int(db.scalar(query.select_from(OfferDecision)) or 0)


def funnel(db: Session) -> Funnel | None:
    """The kiosk's offers funnel (offered, shown, accepted), or None while no kiosk offer
    has a result."""
    results = _results(db, KIOSK)
    if not results:
        return None
    offered = _kiosk_offered(db)
    stages = [("Offered", offered)] if offered else []
    stages += [("Shown", results.get("shown", 0)), ("Accepted", results.get("accepted", 0))]
    return Funnel(stages, results.get("declined", 0))


def inbox_funnel(db: Session) -> Funnel | None:
    """The app campaigns' funnel (sent to the inbox, accepted), or None while no app or
    wearable offer was sent."""
    results = _results(db, INBOX)
    if not results:
        return None
    stages = [("Sent to inbox", results.get("shown", 0)), ("Accepted", results.get("accepted", 0))]
    return Funnel(stages, results.get("declined", 0))


def campaigns(db: Session) -> optional.Rows:
    """The newest campaigns, with all their columns."""
    return optional.newest_rows(db, Campaign)


@dataclass(frozen=True)
class KindCount:
    """Life events of one kind: how many stored, and for how many customers."""

    kind: str
    events: int
    customers: int


def life_events(db: Session) -> list[KindCount]:
    """Stored life events per kind (most first, then by kind)."""
    rows = db.execute(
        select(LifeEvent.kind, func.count(), func.count(distinct(LifeEvent.customer_id)))
        .group_by(LifeEvent.kind)
        .order_by(func.count().desc(), LifeEvent.kind)
    )
    return [KindCount(kind, int(n), int(customers)) for kind, n, customers in rows]


UNSEGMENTED = "(none yet)"


def segments(db: Session) -> Mapping[str, int]:
    """Stored profiles per segment (profiles not segmented yet under ``UNSEGMENTED``), most
    first, then by name."""
    rows = db.execute(
        select(CustomerProfile.segment, func.count()).group_by(CustomerProfile.segment)
    )
    counted = [(segment or UNSEGMENTED, int(n)) for segment, n in rows]
    return dict(sorted(counted, key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class PerMonth:
    """Life events found per month of first detection: the months (``YYYY-MM``, oldest
    first, every month of the span) and, per kind (by name), one count per month."""

    months: list[str]
    kinds: list[tuple[str, list[int]]]


def first_month(today: dt.date, months: int = MONTHS) -> dt.date:
    """The first day of the month ``months - 1`` months before ``today``'s."""
    index = today.year * 12 + today.month - 1 - (months - 1)
    return dt.date(index // 12, index % 12 + 1, 1)


def life_events_per_month(db: Session, today: dt.date, months: int = MONTHS) -> PerMonth:
    """Episodes of life events first detected in the last ``months`` months (this one
    included), per month and kind (``store.events_over_time``)."""
    start = first_month(today, months)
    labels = []
    for step in range(months):
        index = start.year * 12 + start.month - 1 + step
        labels.append("%04d-%02d" % (index // 12, index % 12 + 1))
    found: dict[str, list[int]] = {}
    for row in store.events_over_time(db, start):
        if row["month"] in labels:
            counts = found.setdefault(row["kind"], [0] * months)
            counts[labels.index(row["month"])] += int(row["found"])
    return PerMonth(labels, sorted(found.items()))
