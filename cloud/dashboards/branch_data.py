"""What the branch page shows: the branch's kiosks, what customers did at them today
(check-ins, tickets, requests), the customers present who consent to being noticed, the
staff's service requests (``cloud.events``: call-backs, tickets, alerts) and the loan
applications waiting for a branch manager's review (``cloud.apps.loans``).

Privacy: kiosk events carry a wearable address only when the caller may see personal data
(``access.may_see_personal_data``: branch managers). Customers present are counted for
everyone; who they are (their email) is listed for branch managers only. A customer counts
as present when their wearable's newest presence event at the branch's gateways today is
an ``enter`` and they consent to ``presence_branch`` *now* (ingest already withheld the
presence of those who did not consent when it arrived; a withdrawal since counts at once).
Service requests name their customer and wearable only with personal data; the review
queue is personal data (who asks for how much, and why), for branch managers only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.apps.models import PENDING, LoanApplication
from cloud.customers.consent import granted_purposes
from cloud.customers.models import Customer, CustomerWearable
from cloud.events.models import OPEN, ServiceRequest
from cloud.fleet.inventory import Filters, list_devices
from cloud.fleet.kiosk_queries import KioskFilters, list_kiosk_events
from cloud.fleet.models import Device
from cloud.ingest.models import DeviceEvent, utc

PRESENCE = "presence_branch"
KINDS = ("checkin", "ticket", "request")
MAX_PRESENCE_EVENTS = 5000
MAX_CLOSED = 20  # closed requests shown under the open ones


def start_of_day(now: dt.datetime) -> dt.datetime:
    """Midnight UTC of ``now``'s day: "today" on the branch page."""
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def kiosks(db: Session, branch_id: int, visible: Iterable[int] | None) -> list[dict[str, Any]]:
    """The branch's kiosks, as the inventory lists them."""
    filters = Filters(visible=visible, branch=branch_id, kind="kiosk", limit=100)
    return list_devices(db, filters)["devices"]


def todays_events(
    db: Session,
    branch_id: int,
    visible: Iterable[int] | None,
    now: dt.datetime,
    personal: bool,
    after: int = 0,
) -> list[dict[str, Any]]:
    """Today's check-ins, tickets and requests at the branch's kiosks (newest first; pairing
    events are left out: their code is a secret), after event id ``after``."""
    filters = KioskFilters(
        visible=visible,
        branch=branch_id,
        since=start_of_day(now),
        after=after,
        limit=500,
        personal=personal,
    )
    events = list_kiosk_events(db, filters)["events"]
    return [e for e in reversed(events) if e["kind"] in KINDS]


def counts(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Events per kind (every kind of ``KINDS`` present, zero if none)."""
    out: dict[str, int] = dict.fromkeys(KINDS, 0)
    for event in events:
        out[event["kind"]] = out.get(event["kind"], 0) + 1
    return out


@dataclass(frozen=True)
class Present:
    """A customer present now: when they arrived, and who (None unless personal)."""

    since: dt.datetime
    customer_id: int
    email: str | None


def present_customers(
    db: Session, branch_id: int, now: dt.datetime, personal: bool
) -> list[Present]:
    """The consenting customers present at the branch now (module docstring)."""
    gateways = list(
        db.scalars(
            select(Device.uid).where(
                Device.branch_id == branch_id, Device.kind.in_(("gateway", "kiosk"))
            )
        )
    )
    if not gateways:
        return []
    rows = db.execute(
        select(DeviceEvent.device, DeviceEvent.kind, DeviceEvent.occurred_at)
        .where(
            DeviceEvent.gateway.in_(gateways),
            DeviceEvent.kind.in_(("enter", "leave")),
            DeviceEvent.occurred_at >= start_of_day(now),
        )
        .order_by(DeviceEvent.id.desc())
        .limit(MAX_PRESENCE_EVENTS)
    ).all()
    newest: dict[str, tuple[str, dt.datetime]] = {}
    for address, kind, at in rows:  # newest first: the first seen per address wins
        newest.setdefault(address.upper(), (kind, utc(at)))
    inside = {address: at for address, (kind, at) in newest.items() if kind == "enter"}
    if not inside:
        return []
    allowed = {a for a, purposes in granted_purposes(db, inside).items() if PRESENCE in purposes}
    if not allowed:
        return []
    owners = db.execute(
        select(CustomerWearable.address, Customer.id, Customer.email)
        .join(Customer, Customer.id == CustomerWearable.customer_id)
        .where(CustomerWearable.address.in_(sorted(allowed)))
    ).all()
    seen: dict[int, Present] = {}
    for address, customer_id, email in owners:
        arrived = inside[address]
        if customer_id not in seen or arrived < seen[customer_id].since:
            seen[customer_id] = Present(arrived, customer_id, email if personal else None)
    return sorted(seen.values(), key=lambda p: p.since)


@dataclass(frozen=True)
class Request:
    """A service request as the branch page shows it; ``subject`` and ``customer_id``
    None without personal data."""

    id: int
    kind: str
    state: str
    severity: str
    message: str
    rule: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    closed_by: str | None
    subject: str | None
    customer_id: int | None


def _request(row: ServiceRequest, personal: bool) -> Request:
    return Request(
        row.id,
        row.kind,
        row.state,
        row.severity,
        row.message,
        row.rule_id,
        utc(row.created_at),
        None if row.closed_at is None else utc(row.closed_at),
        row.closed_by,
        row.subject if personal else None,
        row.customer_id if personal else None,
    )


def service_requests(db: Session, branch_id: int, personal: bool) -> list[Request]:
    """The branch's open service requests (oldest first: the longest waiting on top), then
    the ``MAX_CLOSED`` closed most recently."""
    base = select(ServiceRequest).where(ServiceRequest.branch_id == branch_id)
    open_rows = db.scalars(base.where(ServiceRequest.state == OPEN).order_by(ServiceRequest.id))
    closed = db.scalars(
        base.where(ServiceRequest.state != OPEN)
        .order_by(ServiceRequest.closed_at.desc(), ServiceRequest.id.desc())
        .limit(MAX_CLOSED)
    )
    return [_request(row, personal) for row in [*open_rows, *closed]]


def service_request(db: Session, branch_id: int, request_id: int) -> ServiceRequest | None:
    """The branch's request ``request_id``, or None (not there, or another branch's)."""
    row = db.get(ServiceRequest, request_id) if 0 < request_id < 2**31 else None
    return row if row is not None and row.branch_id == branch_id else None


def review_queue(db: Session, branch_id: int) -> list[LoanApplication]:
    """The branch's referred loan applications waiting for review, oldest first (as
    ``GET /api/apps/loans/review``)."""
    return list(
        db.scalars(
            select(LoanApplication)
            .where(LoanApplication.review == PENDING, LoanApplication.branch_id == branch_id)
            .order_by(LoanApplication.id)
        )
    )


def loan(db: Session, branch_id: int, loan_id: int) -> LoanApplication | None:
    """The branch's loan application ``loan_id``, or None (not there, or another's)."""
    row = db.get(LoanApplication, loan_id) if 0 < loan_id < 2**31 else None
    return row if row is not None and row.branch_id == branch_id else None
