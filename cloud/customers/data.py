"""What the bank holds about a customer: the data page's summary and the JSON export
(GDPR Art 15 right of access, Art 20 portability). Reads only.

"About the customer" means the account and everything that names it or one of its
wearables (by identity address, ``AA:BB:CC:DD:EE:FF``): sessions, wearables and the
branches they are bound to, the consent history, the pairing offers they used, the
readings and device events of their wearables, kiosk actions naming a wearable (the
``kiosk_events`` row and its ``device_events`` twin, which names the wearable in ``data``),
and what was decided about them (Art 15(1)(h), Art 22: the logic and its reasons): the rule
engine's decisions about a wearable (``rule_decisions``), the requests to branch staff they
made (``service_requests``), the decisions to offer or not (``offer_decisions``) and what
became of the offers (``offer_results``), the applications' decisions (``app_decisions``:
shopping, loans, holdings), their loan applications with the decision and its reasons
(``loan_applications``) and the price alerts they set (``holding_alerts``); the
notifications in their inbox (``notifications``); and the financial profile computed from
their bank statements with the life events found in it and their history
(``cloud.analytics.store.export``). Staff's names (who created or reviewed an application,
who closed a request) are not exported: they are the staff's data, not the customer's.

The export (``export``), format ``bankiot-customer-data/1``; times ISO 8601 UTC::

    format, exported_at
    account         {email, created_at, active}
    sessions        [{created_at, expires_at}]            signed-in browsers
    wearables       [{address, paired_at, paired_at_branch, bind_key_held, irk_held,
                      bound_at_branches}]                 branches as {id, code, name};
                                                          keys are never exported
    consents        {current: [{purpose, title, granted, at, text_version, channel}],
                     history: [{purpose, granted, at, text_version, channel}]}  oldest first
    pairing_codes_used [{branch, used_at}]
    readings        [{wearable, metric, unit, value, measured_at, time_estimated, gateway,
                      data_class}]                        value: number, text, bool,
                                                          hex (bytes), list or null
    events          [{wearable, kind, occurred_at, time_estimated, gateway, data,
                      data_class}]                        presence enter/leave, button ...
    kiosk_events    [{wearable, kind, branch, gateway, occurred_at, detail}]
    rule_decisions  [{wearable, rule, rule_version, at, decided_at, acted, reason,
                      reasons, inputs, actions, gateway, branch}]
    service_requests [{wearable, kind, state, branch, message, rule, created_at,
                      closed_at}]                         staff's names are not exported
    offer_decisions [{at, outcome, offered, reasons, inputs, version, gateway, branch}]
                                                          offered: [{id, title}]
    offer_results   [{campaign, outcome, channel, branch, gateway, at}]  campaign: {id, title}
    notifications   [{channel, source, title, text, campaign, created_at, read_at,
                      relayed_at}]                        campaign: {id, title} or null;
                                                          relayed_at: passed on to the watch
    app_decisions   [{app, at, subject, outcome, reasons, inputs, version}]
                                                          app: shopping, loan, holdings;
                                                          inputs without staff's names
    loan_applications [{id, created_at, branch, amount, currency, term_months, purpose,
                      evidence, outcome, reasons, review, reviewed_at, review_note}]
                                                          amount: decimal text; outcome the
                                                          automatic decision, review a
                                                          branch manager's (or null)
    holding_alerts  [{instrument, direction, threshold, channel, armed, last_price,
                      created_at}]                        prices: decimal text
    analytics       {profile: {as_of, segment, income_band, model_version, computed_at,
                      summary} | null, life_events: [{kind, as_of, score, reasons, detail,
                      model_version}], life_event_history: [{kind, detail, first_as_of,
                      first_detected_at, last_as_of, last_seen_at, score, peak_score,
                      ended_as_of, ended_at, model_version, reasons}]}
                                                          the stored financial profile; the
                                                          history newest first

Every list is complete (no paging) and ordered by time; the document names no other
customer's data: every row is selected by this customer's id or wearables' addresses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import cbor2
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from cloud.analytics import store as analytics_store
from cloud.analytics.models import CustomerProfile, LifeEventEpisode
from cloud.apps.holdings import plain
from cloud.apps.models import AppDecision, HoldingAlert, LoanApplication
from cloud.customers import consent, pairing
from cloud.customers.models import Customer, CustomerSession, PairingOffer
from cloud.events.models import RuleDecision, ServiceRequest
from cloud.fleet.bindings_models import WearableBinding
from cloud.fleet.models import Branch
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import DeviceEvent, Reading, utc
from cloud.ingest.records import KIOSK_EVENT_KINDS
from cloud.notifications.models import Notification
from cloud.offers.models import Campaign, OfferDecision, OfferResult

FORMAT = "bankiot-customer-data/1"
LATEST_VISITS = 20  # kiosk visits the page lists
LATEST_DECISIONS = 20  # decisions, requests and offer results the page lists
STAFF_INPUTS = ("by",)  # keys of an application decision's inputs that name staff


def iso(moment: dt.datetime | None) -> str | None:
    """``moment`` as ISO 8601 UTC text (None stays None)."""
    return None if moment is None else utc(moment).isoformat()


def reading_value(row: Any) -> Any:
    """A stored reading's value as JSON (``cloud.ingest.models.Reading`` columns)."""
    kind = row.value_kind
    if kind == "null":
        return None
    if kind == "bool":
        return bool(row.value_num)
    if kind == "int":
        return int(row.value_text) if row.value_text is not None else int(row.value_num)
    if kind == "float":
        return row.value_num
    if kind == "text":
        if row.value_text is not None:
            return row.value_text
        return bytes(row.value_bytes).decode("utf-8", "replace")
    if kind == "list":
        return [v.hex() if isinstance(v, bytes) else v for v in cbor2.loads(row.value_bytes)]
    return bytes(row.value_bytes).hex()  # bytes


def addresses_of(session: Session, customer_id: int) -> list[str]:
    """The identity addresses of the customer's wearables."""
    return [w.address for w in pairing.wearables_of(session, customer_id)]


def kiosk_event_filter(addresses: Sequence[str]) -> Any:
    """``device_events`` rows that are kiosk actions naming one of ``addresses``."""
    return and_(
        DeviceEvent.kind.in_(KIOSK_EVENT_KINDS),
        DeviceEvent.data["wearable"].as_string().in_(list(addresses)),
    )


def subject_forms(addresses: Sequence[str]) -> list[str]:
    """``addresses`` as a rule decision's or a staff request's subject may spell them (the
    engine upper-cases a kiosk's, a device event keeps the gateway's spelling)."""
    return sorted({form for a in addresses for form in (a, a.upper(), a.lower())})


def _event_filter(addresses: Sequence[str]) -> Any:
    return or_(DeviceEvent.device.in_(list(addresses)), kiosk_event_filter(addresses))


def _branches(session: Session) -> dict[int, dict[str, Any]]:
    return {
        b.id: {"id": b.id, "code": b.code, "name": b.name} for b in session.scalars(select(Branch))
    }


# ---- the page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of record held: how many, and the latest (its time and, for readings, its
    value)."""

    wearable: str
    name: str
    count: int
    latest_at: dt.datetime | None
    latest_value: Any = None


@dataclass(frozen=True)
class DecisionLine:
    """A decision about the customer as the page lists it: when, what decided (a rule and
    its version, or the kiosk offers), the outcome, and why."""

    at: dt.datetime
    what: str
    outcome: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ResultLine:
    """What the customer did with an offer: when, the offer's title, the outcome."""

    at: dt.datetime
    title: str
    outcome: str


@dataclass(frozen=True)
class Summary:
    """What the data page shows (module docstring)."""

    readings: list[Kind]
    events: list[Kind]
    visits: list[KioskEventRow]
    visit_count: int
    decisions: list[DecisionLine] = field(default_factory=list)
    decision_count: int = 0
    requests: list[ServiceRequest] = field(default_factory=list)
    offer_results: list[ResultLine] = field(default_factory=list)
    notifications: int = 0
    profile: CustomerProfile | None = None
    life_events: list[LifeEventEpisode] = field(default_factory=list)
    loans: list[LoanApplication] = field(default_factory=list)
    alerts: list[HoldingAlert] = field(default_factory=list)


RULE_OUTCOMES = {
    "acted": "done",
    "no_consent": "not done: no consent",
    "outside_window": "not done: outside its time window",
    "rate_limited": "not done: done shortly before",
    "profile": "not done: your profile did not match",
    "cancelled": "cancelled",
}
OFFER_OUTCOMES = {"offered": "offers made", "none": "no offer"}


def _rule_decisions(addresses: Sequence[str]) -> Any:
    return select(RuleDecision).where(RuleDecision.subject.in_(subject_forms(addresses)))


def _requests(customer_id: int, addresses: Sequence[str]) -> Any:
    names = ServiceRequest.customer_id == customer_id
    if addresses:
        names = or_(names, ServiceRequest.subject.in_(subject_forms(addresses)))
    return select(ServiceRequest).where(names)


def _titles(session: Session) -> dict[int, str]:
    return {cid: title for cid, title in session.execute(select(Campaign.id, Campaign.title))}


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def _decision_lines(
    session: Session, customer_id: int, addresses: Sequence[str]
) -> tuple[list[DecisionLine], int]:
    """The latest decisions about the customer, rule and offer ones together, newest
    first; how many there are in all."""
    lines: list[DecisionLine] = []
    count = 0
    if addresses:
        query = _rule_decisions(addresses)
        count += _count(session, query)
        for row in session.scalars(
            query.order_by(RuleDecision.at.desc(), RuleDecision.id.desc()).limit(LATEST_DECISIONS)
        ):
            what = "rule %s (version %d)" % (row.rule_id, row.rule_version)
            outcome = RULE_OUTCOMES.get(row.reason) or str(row.reason)
            lines.append(DecisionLine(utc(row.at), what, outcome, tuple(row.reasons)))
    query = select(OfferDecision).where(OfferDecision.customer_id == customer_id)
    count += _count(session, query)
    for row in session.scalars(
        query.order_by(OfferDecision.at.desc(), OfferDecision.id.desc()).limit(LATEST_DECISIONS)
    ):
        outcome = OFFER_OUTCOMES.get(row.outcome) or str(row.outcome)
        channel = (row.inputs or {}).get("channel", "kiosk")
        where = {"kiosk": "at a kiosk", "app": "in the app"}.get(channel, "for your wearable")
        what = "offers %s (%s)" % (where, row.version)
        lines.append(DecisionLine(utc(row.at), what, outcome, tuple(row.reasons)))
    query = select(AppDecision).where(AppDecision.customer_id == customer_id)
    count += _count(session, query)
    for row in session.scalars(
        query.order_by(AppDecision.at.desc(), AppDecision.id.desc()).limit(LATEST_DECISIONS)
    ):
        what = "%s application (%s), about %s" % (row.app, row.version, row.subject)
        lines.append(DecisionLine(utc(row.at), what, row.outcome, tuple(row.reasons)))
    lines.sort(key=lambda line: line.at, reverse=True)
    return lines[:LATEST_DECISIONS], count


def _result_lines(session: Session, customer_id: int) -> list[ResultLine]:
    titles = _titles(session)
    rows = session.scalars(
        select(OfferResult)
        .where(OfferResult.customer_id == customer_id)
        .order_by(OfferResult.at.desc(), OfferResult.id.desc())
        .limit(LATEST_DECISIONS)
    )
    return [
        ResultLine(utc(r.at), titles.get(r.campaign_id, "offer %d" % r.campaign_id), r.outcome)
        for r in rows
    ]


def _loans(customer_id: int) -> Any:
    return select(LoanApplication).where(LoanApplication.customer_id == customer_id)


def _alerts(customer_id: int) -> Any:
    return select(HoldingAlert).where(HoldingAlert.customer_id == customer_id)


def summary(session: Session, customer: Customer) -> Summary:
    """Counts per kind of record, with the latest of each, the latest kiosk visits, and the
    latest decisions about the customer, staff requests and offer results."""
    addresses = addresses_of(session, customer.id)
    decisions, decision_count = _decision_lines(session, customer.id, addresses)
    requests = list(
        session.scalars(
            _requests(customer.id, addresses)
            .order_by(ServiceRequest.created_at.desc(), ServiceRequest.id.desc())
            .limit(LATEST_DECISIONS)
        )
    )
    about = {
        "decisions": decisions,
        "decision_count": decision_count,
        "requests": requests,
        "offer_results": _result_lines(session, customer.id),
        "notifications": _count(
            session, select(Notification.id).where(Notification.customer_id == customer.id)
        ),
        "profile": analytics_store.profile_row(session, customer.id),
        "life_events": analytics_store.life_event_history(session, customer.id),
        "loans": list(session.scalars(_loans(customer.id).order_by(LoanApplication.id.desc()))),
        "alerts": list(session.scalars(_alerts(customer.id).order_by(HoldingAlert.id.desc()))),
    }
    if not addresses:
        return Summary([], [], [], 0, **about)
    readings = []
    groups = session.execute(
        select(Reading.device, Reading.metric, func.count(), func.max(Reading.measured_at))
        .where(Reading.device.in_(addresses))
        .group_by(Reading.device, Reading.metric)
        .order_by(Reading.device, Reading.metric)
    ).all()
    for device, metric, count, latest in groups:
        row = session.execute(
            select(Reading)
            .where(Reading.device == device, Reading.metric == metric)
            .order_by(Reading.measured_at.desc())
            .limit(1)
        ).scalar_one()
        readings.append(Kind(device, metric, count, utc(latest), reading_value(row)))
    events = [
        Kind(device, kind, count, utc(latest))
        for device, kind, count, latest in session.execute(
            select(
                DeviceEvent.device,
                DeviceEvent.kind,
                func.count(),
                func.max(DeviceEvent.occurred_at),
            )
            .where(DeviceEvent.device.in_(addresses))
            .group_by(DeviceEvent.device, DeviceEvent.kind)
            .order_by(DeviceEvent.device, DeviceEvent.kind)
        )
    ]
    visits_filter = KioskEventRow.wearable.in_(addresses)
    visits = list(
        session.scalars(
            select(KioskEventRow)
            .where(visits_filter)
            .order_by(KioskEventRow.occurred_at.desc())
            .limit(LATEST_VISITS)
        )
    )
    count = session.scalar(select(func.count()).select_from(KioskEventRow).where(visits_filter))
    return Summary(readings, events, visits, int(count or 0), **about)


# ---- the export -------------------------------------------------------------------------------


def export(session: Session, customer: Customer, now: dt.datetime) -> dict[str, Any]:
    """Everything held about ``customer`` as one JSON-ready document (module docstring)."""
    branches = _branches(session)
    wearables = pairing.wearables_of(session, customer.id)
    addresses = [w.address for w in wearables]
    bound: dict[str, list[dict[str, Any] | None]] = {}
    if addresses:
        for address, branch_id in session.execute(
            select(WearableBinding.address, WearableBinding.branch_id)
            .where(WearableBinding.address.in_(addresses))
            .order_by(WearableBinding.branch_id)
        ):
            bound.setdefault(address, []).append(branches.get(branch_id))
    titles = {p.name: p.title for p in consent.PURPOSES}
    document: dict[str, Any] = {
        "format": FORMAT,
        "exported_at": iso(now),
        "account": {
            "email": customer.email,
            "created_at": iso(customer.created_at),
            "active": customer.active,
        },
        "sessions": [
            {"created_at": iso(s.created_at), "expires_at": iso(s.expires_at)}
            for s in session.scalars(
                select(CustomerSession)
                .where(CustomerSession.customer_id == customer.id)
                .order_by(CustomerSession.id)
            )
        ],
        "wearables": [
            {
                "address": w.address,
                "paired_at": iso(w.paired_at),
                "paired_at_branch": branches.get(w.branch_id) if w.branch_id else None,
                "bind_key_held": w.key_sealed is not None,
                "irk_held": w.irk_sealed is not None,
                "bound_at_branches": bound.get(w.address, []),
            }
            for w in wearables
        ],
        "consents": {
            "current": [
                {
                    "purpose": a.purpose.name,
                    "title": titles[a.purpose.name],
                    "granted": a.granted,
                    "at": iso(a.at),
                    "text_version": a.text_version,
                    "channel": a.channel,
                }
                for a in consent.answers(session, customer.id)
            ],
            "history": [
                {
                    "purpose": row.purpose,
                    "granted": row.granted,
                    "at": iso(row.at),
                    "text_version": row.text_version,
                    "channel": row.channel,
                }
                for row in reversed(consent.history(session, customer.id))
            ],
        },
        "pairing_codes_used": [
            {"branch": branches.get(o.branch_id), "used_at": iso(o.used_at)}
            for o in session.scalars(
                select(PairingOffer)
                .where(PairingOffer.customer_id == customer.id)
                .order_by(PairingOffer.id)
            )
        ],
        "readings": [],
        "events": [],
        "kiosk_events": [],
        **_decisions_export(session, customer.id, addresses, branches),
        **_applications_export(session, customer.id, branches),
        "analytics": analytics_store.export(session, customer.id),
    }
    if not addresses:
        return document
    document["readings"] = [
        {
            "wearable": r.device,
            "metric": r.metric,
            "unit": r.unit,
            "value": reading_value(r),
            "measured_at": iso(r.measured_at),
            "time_estimated": r.time_estimated,
            "gateway": r.gateway,
            "data_class": r.data_class,
        }
        for r in session.scalars(
            select(Reading)
            .where(Reading.device.in_(addresses))
            .order_by(Reading.measured_at, Reading.receipt_id, Reading.position)
            .execution_options(yield_per=2000)
        )
    ]
    document["events"] = [
        {
            "wearable": e.device if e.device in addresses else e.data.get("wearable"),
            "kind": e.kind,
            "occurred_at": iso(e.occurred_at),
            "time_estimated": e.time_estimated,
            "gateway": e.gateway,
            "data": e.data,
            "data_class": e.data_class,
        }
        for e in session.scalars(
            select(DeviceEvent)
            .where(_event_filter(addresses))
            .order_by(DeviceEvent.occurred_at, DeviceEvent.id)
        )
    ]
    document["kiosk_events"] = [
        {
            "wearable": k.wearable,
            "kind": k.kind,
            "branch": branches.get(k.branch_id) if k.branch_id else None,
            "gateway": k.gateway,
            "occurred_at": iso(k.occurred_at),
            "detail": k.detail,
        }
        for k in session.scalars(
            select(KioskEventRow)
            .where(KioskEventRow.wearable.in_(addresses))
            .order_by(KioskEventRow.occurred_at, KioskEventRow.id)
        )
    ]
    return document


def _decisions_export(
    session: Session,
    customer_id: int,
    addresses: Sequence[str],
    branches: dict[int, dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    """The export's decisions, staff requests, offer results and notifications (module
    docstring)."""

    def branch(branch_id: int | None) -> dict[str, Any] | None:
        return branches.get(branch_id) if branch_id is not None else None

    titles = _titles(session)

    def campaign(campaign_id: int) -> dict[str, Any]:
        return {"id": campaign_id, "title": titles.get(campaign_id)}

    rules = []
    if addresses:
        rules = [
            {
                "wearable": r.subject,
                "rule": r.rule_id,
                "rule_version": r.rule_version,
                "at": iso(r.at),
                "decided_at": iso(r.decided_at),
                "acted": r.acted,
                "reason": r.reason,
                "reasons": list(r.reasons),
                "inputs": r.inputs,
                "actions": list(r.actions),
                "gateway": r.gateway,
                "branch": branch(r.branch_id),
            }
            for r in session.scalars(
                _rule_decisions(addresses).order_by(RuleDecision.at, RuleDecision.id)
            )
        ]
    requests = [
        {
            "wearable": q.subject if q.subject in subject_forms(addresses) else None,
            "kind": q.kind,
            "state": q.state,
            "branch": branch(q.branch_id),
            "message": q.message,
            "rule": q.rule_id,
            "created_at": iso(q.created_at),
            "closed_at": iso(q.closed_at),
        }
        for q in session.scalars(
            _requests(customer_id, addresses).order_by(ServiceRequest.created_at, ServiceRequest.id)
        )
    ]
    offers = [
        {
            "at": iso(d.at),
            "outcome": d.outcome,
            "offered": [campaign(cid) for cid in d.offered],
            "reasons": list(d.reasons),
            "inputs": d.inputs,
            "version": d.version,
            "gateway": d.gateway,
            "branch": branch(d.branch_id),
        }
        for d in session.scalars(
            select(OfferDecision)
            .where(OfferDecision.customer_id == customer_id)
            .order_by(OfferDecision.at, OfferDecision.id)
        )
    ]
    results = [
        {
            "campaign": campaign(r.campaign_id),
            "outcome": r.outcome,
            "channel": r.channel,
            "branch": branch(r.branch_id),
            "gateway": r.gateway,
            "at": iso(r.at),
        }
        for r in session.scalars(
            select(OfferResult)
            .where(OfferResult.customer_id == customer_id)
            .order_by(OfferResult.at, OfferResult.id)
        )
    ]
    notifications = [
        {
            "channel": n.channel,
            "source": n.source,
            "title": n.title,
            "text": n.text,
            "campaign": None if n.campaign_id is None else campaign(n.campaign_id),
            "created_at": iso(n.created_at),
            "read_at": iso(n.read_at),
            "relayed_at": iso(n.relayed_at),
        }
        for n in session.scalars(
            select(Notification)
            .where(Notification.customer_id == customer_id)
            .order_by(Notification.created_at, Notification.id)
        )
    ]
    return {
        "rule_decisions": rules,
        "service_requests": requests,
        "offer_decisions": offers,
        "offer_results": results,
        "notifications": notifications,
    }


def _applications_export(
    session: Session, customer_id: int, branches: dict[int, dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """The export's application records: decisions, loan applications, price alerts
    (module docstring)."""
    decisions = [
        {
            "app": d.app,
            "at": iso(d.at),
            "subject": d.subject,
            "outcome": d.outcome,
            "reasons": list(d.reasons),
            "inputs": {k: v for k, v in (d.inputs or {}).items() if k not in STAFF_INPUTS},
            "version": d.version,
        }
        for d in session.scalars(
            select(AppDecision)
            .where(AppDecision.customer_id == customer_id)
            .order_by(AppDecision.at, AppDecision.id)
        )
    ]
    loans = [
        {
            "id": a.id,
            "created_at": iso(a.created_at),
            "branch": branches.get(a.branch_id) if a.branch_id is not None else None,
            "amount": str(Decimal(a.amount).quantize(Decimal("0.01"))),
            "currency": a.currency,
            "term_months": a.term_months,
            "purpose": a.purpose,
            "evidence": list(a.evidence),
            "outcome": a.outcome,
            "reasons": list(a.reasons),
            "review": a.review,
            "reviewed_at": iso(a.reviewed_at),
            "review_note": a.review_note,
        }
        for a in session.scalars(
            _loans(customer_id).order_by(LoanApplication.created_at, LoanApplication.id)
        )
    ]
    alerts = [
        {
            "instrument": h.instrument,
            "direction": h.direction,
            "threshold": plain(h.threshold),
            "channel": h.channel,
            "armed": h.armed,
            "last_price": None if h.last_price is None else plain(h.last_price),
            "created_at": iso(h.created_at),
        }
        for h in session.scalars(
            _alerts(customer_id).order_by(HoldingAlert.created_at, HoldingAlert.id)
        )
    ]
    return {"app_decisions": decisions, "loan_applications": loans, "holding_alerts": alerts}
