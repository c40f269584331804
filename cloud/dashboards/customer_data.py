"""What the customer pages show: the customers a caller may look at, and one customer's
profile, consents, events and the decisions made about them, with reasons.

Who sees whom: a branch manager sees the customers who paired a wearable at one of their
branches, with their email and wearable addresses (personal data:
``access.may_see_personal_data``); cloud operations see every customer, by number only,
with addresses hidden. Events are those at the caller's branches. The stored financial
profile and life events (``cloud.analytics.store``) and the applications' decisions and
loan applications (``cloud.apps``) are shown to both, their reasons (which name payees and
circumstances) and a loan's purpose only with personal data, as the analytics API does.
The life-event history (``store.life_event_history``: when each event was first found,
last seen, its peak score, ended or ongoing) is shown to both, its reasons only with
personal data like the stored events'. The customer's inbox (``cloud.notifications``) is
summarised for both (how many, unread, last sent, per source); the notifications' titles
only with personal data, as the decisions' personal columns.
Rule and offer decisions are shown with all their columns (``optional``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from cloud.analytics import store
from cloud.analytics.models import CustomerProfile
from cloud.apps.models import AppDecision, LoanApplication
from cloud.customers import consent
from cloud.customers.models import Customer, CustomerWearable
from cloud.dashboards import optional
from cloud.events.models import RuleDecision
from cloud.fleet.models import Branch, Device
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import DeviceEvent, utc
from cloud.notifications import inbox as notification_inbox
from cloud.notifications.models import Notification
from cloud.offers.models import OfferDecision, OfferResult

MAX_EVENTS = 50
MAX_DECISIONS = 50
MAX_NOTIFICATIONS = 10  # the newest the page lists (with personal data)


def _mine(visible: Iterable[int] | None) -> Any:
    """The customers with a wearable paired at one of ``visible`` (None: everyone)."""
    query = select(CustomerWearable.customer_id)
    if visible is not None:
        query = query.where(CustomerWearable.branch_id.in_(list(visible)))
    return query


def customers(db: Session, visible: Iterable[int] | None, limit: int = 200) -> list[Customer]:
    """The customers the caller may see (module docstring), newest first."""
    query = select(Customer).where(Customer.active.is_(True)).order_by(Customer.id.desc())
    if visible is not None:
        query = query.where(Customer.id.in_(_mine(visible)))
    return list(db.scalars(query.limit(limit)))


def visible_customer(
    db: Session, customer_id: int, visible: Iterable[int] | None
) -> Customer | None:
    """The customer if the caller may see them; None otherwise (the page answers 404)."""
    customer = db.get(Customer, customer_id)
    if customer is None or not customer.active:
        return None
    if visible is not None and customer_id not in set(db.scalars(_mine(visible))):
        return None
    return customer


@dataclass(frozen=True)
class Wearable:
    address: str
    paired_at: dt.datetime
    branch_code: str | None


def wearables(db: Session, customer_id: int) -> list[Wearable]:
    """The customer's wearables with the branch each was paired at."""
    rows = db.execute(
        select(CustomerWearable.address, CustomerWearable.paired_at, Branch.code)
        .outerjoin(Branch, Branch.id == CustomerWearable.branch_id)
        .where(CustomerWearable.customer_id == customer_id)
        .order_by(CustomerWearable.id)
    )
    return [Wearable(address, utc(at), code) for address, at, code in rows]


def consents(db: Session, customer_id: int) -> tuple[list[consent.Answer], list[Any]]:
    """The customer's current answers per purpose, and the history (newest first)."""
    return consent.answers(db, customer_id), consent.history(db, customer_id)


@dataclass(frozen=True)
class Event:
    at: dt.datetime
    branch: str | None
    what: str
    detail: str


def events(db: Session, addresses: Iterable[str], visible: Iterable[int] | None) -> list[Event]:
    """What the customer's wearables did at the caller's branches: kiosk actions and
    presence (arrived, left), newest first."""
    wanted = sorted(addresses)
    if not wanted:
        return []
    kiosk = (
        select(KioskEventRow.occurred_at, Branch.code, KioskEventRow.kind, KioskEventRow.detail)
        .outerjoin(Branch, Branch.id == KioskEventRow.branch_id)
        .where(KioskEventRow.wearable.in_(wanted))
        .order_by(KioskEventRow.id.desc())
        .limit(MAX_EVENTS)
    )
    presence = (
        select(DeviceEvent.occurred_at, Branch.code, DeviceEvent.kind)
        .join(Device, Device.uid == DeviceEvent.gateway)
        .join(Branch, Branch.id == Device.branch_id)
        .where(DeviceEvent.device.in_(wanted), DeviceEvent.kind.in_(("enter", "leave")))
        .order_by(DeviceEvent.id.desc())
        .limit(MAX_EVENTS)
    )
    if visible is not None:
        kiosk = kiosk.where(KioskEventRow.branch_id.in_(list(visible)))
        presence = presence.where(Device.branch_id.in_(list(visible)))
    words = {"enter": "arrived", "leave": "left"}
    out = [
        Event(utc(at), code, "kiosk %s" % kind, detail)
        for at, code, kind, detail in db.execute(kiosk)
    ]
    out += [Event(utc(at), code, words[kind], "") for at, code, kind in db.execute(presence)]
    return sorted(out, key=lambda e: e.at, reverse=True)[:MAX_EVENTS]


@dataclass(frozen=True)
class Optional:
    """A section of a table's rows (``optional``), or None when the table cannot name the
    customer (no customer column, and no wearable of theirs to look for)."""

    title: str
    rows: optional.Rows | None


PERSONAL_COLUMNS = ("wearable", "address", "subject", "email", "customer_id", "inputs")


def decisions(
    db: Session, customer_id: int, addresses: Iterable[str], personal: bool
) -> list[Optional]:
    """Decisions made about the customer, with their reasons (rule engine, offers). Columns
    naming the customer or a wearable are shown only when ``personal``."""
    wanted = set(addresses)
    hidden = () if personal else PERSONAL_COLUMNS
    sections = (
        ("Rule decisions", RuleDecision),
        ("Offer decisions", OfferDecision),
        ("Offers shown and answered", OfferResult),
    )
    return [
        Optional(title, optional.rows_about(db, model, customer_id, wanted, hidden))
        for title, model in sections
    ]


def profile(db: Session, customer_id: int) -> CustomerProfile | None:
    """The customer's stored financial profile (``cloud.analytics.store``), or None."""
    return store.profile_row(db, customer_id)


@dataclass(frozen=True)
class LifeEvent:
    """A life event found in the stored profile; ``reasons`` None without personal data."""

    kind: str
    as_of: dt.date
    score: float
    detail: str
    reasons: list[str] | None


def life_events(db: Session, customer_id: int, personal: bool) -> list[LifeEvent]:
    """The customer's stored life events, highest score first; reasons only when
    ``personal`` (as ``GET /api/analytics/customers/<id>``)."""
    return [
        LifeEvent(e.kind, e.as_of, e.score, e.detail, list(e.reasons) if personal else None)
        for e in store.life_events(db, customer_id)
    ]


@dataclass(frozen=True)
class AppDecisionRow:
    """One decision of an application (shopping, loan, holdings) about the customer."""

    at: dt.datetime
    app: str
    subject: str
    outcome: str
    reasons: list[str] | None
    version: str


def app_decisions(db: Session, customer_id: int, personal: bool) -> list[AppDecisionRow]:
    """The applications' decisions about the customer (``app_decisions``), newest first;
    reasons only when ``personal``."""
    rows = db.scalars(
        select(AppDecision)
        .where(AppDecision.customer_id == customer_id)
        .order_by(AppDecision.id.desc())
        .limit(MAX_DECISIONS)
    )
    return [
        AppDecisionRow(
            utc(r.at), r.app, r.subject, r.outcome, list(r.reasons) if personal else None, r.version
        )
        for r in rows
    ]


def loan_applications(db: Session, customer_id: int) -> list[LoanApplication]:
    """The customer's loan applications, newest first (the page hides reasons and purpose
    without personal data)."""
    return list(
        db.scalars(
            select(LoanApplication)
            .where(LoanApplication.customer_id == customer_id)
            .order_by(LoanApplication.id.desc())
            .limit(MAX_DECISIONS)
        )
    )


@dataclass(frozen=True)
class Episode:
    """One episode of a life event (``life_event_history``); ``ended`` None while ongoing,
    ``reasons`` None without personal data."""

    kind: str
    detail: str
    first_as_of: dt.date
    first_detected_at: dt.datetime
    last_as_of: dt.date
    last_seen_at: dt.datetime
    peak_score: float
    ended: dt.date | None
    reasons: list[str] | None


def life_event_history(db: Session, customer_id: int, personal: bool) -> list[Episode]:
    """The customer's life-event episodes, newest first (``store.life_event_history``);
    their latest reasons only when ``personal``."""
    return [
        Episode(
            e.kind,
            e.detail,
            e.first_as_of,
            utc(e.first_detected_at),
            e.last_as_of,
            utc(e.last_seen_at),
            e.peak_score,
            e.ended_as_of,
            list(e.reasons) if personal else None,
        )
        for e in store.life_event_history(db, customer_id)
    ]


@dataclass(frozen=True)
class SourceCount:
    """The customer's notifications from one source (``rule:<id>``, ``offers``...)."""

    source: str
    count: int
    unread: int
    last_sent: dt.datetime


@dataclass(frozen=True)
class NoteLine:
    """One notification as the page lists it to branch managers (no text: the title says
    what it was about)."""

    at: dt.datetime
    channel: str
    source: str
    title: str
    read: bool


@dataclass(frozen=True)
class Inbox:
    """The customer's inbox in figures; ``latest`` None without personal data."""

    count: int
    unread: int
    last_sent: dt.datetime | None
    sources: list[SourceCount]
    latest: list[NoteLine] | None


def inbox(db: Session, customer_id: int, personal: bool) -> Inbox:
    """How many notifications the customer has, unread, the newest's time, the same per
    source (most first, then by name); the newest ``MAX_NOTIFICATIONS`` titles only when
    ``personal``."""
    unread = func.sum(case((Notification.read_at.is_(None), 1), else_=0))
    rows = db.execute(
        select(Notification.source, func.count(), unread, func.max(Notification.created_at))
        .where(Notification.customer_id == customer_id)
        .group_by(Notification.source)
    ).all()
    sources = sorted(
        (SourceCount(source, int(n), int(u or 0), utc(last)) for source, n, u, last in rows),
        key=lambda s: (-s.count, s.source),
    )
    latest = None
    if personal:
        latest = [
            NoteLine(utc(n.created_at), n.channel, n.source, n.title, n.read_at is not None)
            for n in notification_inbox.latest(db, customer_id, MAX_NOTIFICATIONS)
        ]
    return Inbox(
        sum(s.count for s in sources),
        sum(s.unread for s in sources),
        max((s.last_sent for s in sources), default=None),
        sources,
        latest,
    )
