"""Erasing a customer (GDPR Art 17): the account and everything derived from it, in the
caller's one transaction, leaving only a receipt without personal data.

``erase`` deletes, in this order (counts per kind go into the receipt):

1. the wearables' bindings at every branch (``cloud.fleet.bindings.unbind``): each branch's
   set version goes up, and the fleet supervisor sends its gateways the set without them
   (KEYS): from the moment a gateway applies it, it neither decodes the wearables' frames
   nor lets them through its allow-list;
2. what the wearables sent and what was made of it: ``readings`` and ``device_events`` of
   each wearable (one DELETE per wearable on the (device, ...) indexes, whatever partition
   the rows are in), the ``device_events`` of kiosk actions naming one, ``kiosk_events``
   naming one, ``threshold_states`` of the wearables, and inventory records of a wearable
   (``devices`` of kind ``wearable`` with the address, and their alerts);
3. what was decided about the customer: staff requests (``service_requests`` naming the
   customer or a wearable), offer results (``offer_results``), the notifications in their
   inbox (``notifications``), the stored financial profile, life events and their history
   (``customer_profiles``, ``life_events``, ``life_event_history``) and the applications'
   decisions, loan applications and holding alerts (``app_decisions``,
   ``loan_applications``, ``holding_alerts``: counted here, though the database would
   cascade them with the ``customers`` row) are deleted; decisions
   (``rule_decisions`` about a wearable, ``offer_decisions`` about the customer) are kept
   anonymised, for accountability (which rule or offer logic decided what, when, where,
   with which outcome): subject ``erased``, no customer, no event, and their inputs and
   reasons (the customer's attributes, the wearable's address) emptied. ``rule_cursors``
   name nobody;
4. the account: pairing offers the customer used, consent rows, sessions, the wearables
   (with their sealed keys), the ``customers`` row;
5. the audit log keeps what happened, not who: rows whose actor or target is the customer
   (``customer:<id>``) say ``customer:erased``, and the wearables' addresses in any row's
   target or details become ``erased`` (the bindings' audit rows named them);
6. the receipt (``models.CustomerErasure``): when, how many wearables, how many branches'
   sets changed, rows deleted per kind. It names neither the customer nor a wearable; its
   number is shown to the customer, who can quote it.

Batches a gateway queued before it applied the new set can still arrive (at most its queue's
worth); the wearable is then no customer's, so they are stored like an unknown device's and
expire with their class (``retention``). The receipt notes nothing of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, cast, delete, or_, select, update
from sqlalchemy.orm import Session

from cloud import audit
from cloud.analytics import store as analytics_store
from cloud.apps.models import AppDecision, HoldingAlert, LoanApplication
from cloud.audit import AuditEvent
from cloud.customers import pairing
from cloud.customers.data import kiosk_event_filter, subject_forms
from cloud.customers.models import (
    ConsentEvent,
    Customer,
    CustomerErasure,
    CustomerSession,
    CustomerWearable,
    PairingOffer,
)
from cloud.events.models import RuleDecision, ServiceRequest
from cloud.fleet import bindings
from cloud.fleet.alerts import Alert
from cloud.fleet.bindings_models import WearableBinding
from cloud.fleet.models import Device
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import DeviceEvent, Reading, ThresholdState
from cloud.notifications.models import Notification
from cloud.offers.models import OfferDecision, OfferResult

ERASED = "erased"
ERASED_ACTOR = "customer:erased"


def erase(session: Session, customer: Customer, now: dt.datetime) -> CustomerErasure:
    """Erase ``customer`` and everything derived (module docstring), staged in the caller's
    transaction; the receipt."""
    actor = "customer:%d" % customer.id
    addresses = [w.address for w in pairing.wearables_of(session, customer.id)]
    deleted: dict[str, int] = {}

    def count(kind: str, result: Any) -> None:
        deleted[kind] = deleted.get(kind, 0) + _rows(result)

    branches: set[int] = set()
    for address in addresses:
        for branch_id in session.scalars(
            select(WearableBinding.branch_id).where(WearableBinding.address == address)
        ).all():
            if bindings.unbind(session, branch_id, address, actor=actor, now=now):
                branches.add(branch_id)
                deleted["bindings"] = deleted.get("bindings", 0) + 1
    for address in addresses:  # one wearable at a time: each DELETE walks one index range
        count("readings", _delete(session, Reading, Reading.device == address))
        count("device_events", _delete(session, DeviceEvent, DeviceEvent.device == address))
        states = _delete(session, ThresholdState, ThresholdState.device == address)
        count("threshold_states", states)
    if addresses:
        count("device_events", _delete(session, DeviceEvent, kiosk_event_filter(addresses)))
        count(
            "kiosk_events",
            _delete(session, KioskEventRow, KioskEventRow.wearable.in_(addresses)),
        )
        devices = select(Device.id).where(Device.kind == "wearable", Device.uid.in_(addresses))
        count("alerts", _delete(session, Alert, Alert.device_id.in_(devices)))
        count("devices", _delete(session, Device, Device.id.in_(devices)))
    _erase_decisions(session, customer.id, addresses, deleted)
    deleted.update(analytics_store.erase(session, customer.id))
    for kind, model in (
        ("app_decisions", AppDecision),
        ("loan_applications", LoanApplication),
        ("holding_alerts", HoldingAlert),
    ):
        count(kind, _delete(session, model, model.customer_id == customer.id))
    count("pairing_offers", _delete(session, PairingOffer, PairingOffer.customer_id == customer.id))
    count("consents", _delete(session, ConsentEvent, ConsentEvent.customer_id == customer.id))
    count("sessions", _delete(session, CustomerSession, CustomerSession.customer_id == customer.id))
    count(
        "wearables", _delete(session, CustomerWearable, CustomerWearable.customer_id == customer.id)
    )
    count("accounts", _delete(session, Customer, Customer.id == customer.id))
    session.expunge(customer)
    deleted["audit_rows_anonymised"] = _scrub_audit(session, actor, addresses)
    receipt = CustomerErasure(
        erased_at=now,
        wearables=len(addresses),
        branches=len(branches),
        deleted={kind: n for kind, n in sorted(deleted.items())},
    )
    session.add(receipt)
    session.flush()
    audit.record(
        session,
        ERASED_ACTOR,
        "customer.erase",
        "erasure:%d" % receipt.id,
        wearables=receipt.wearables,
        branches=receipt.branches,
    )
    return receipt


def _erase_decisions(
    session: Session, customer_id: int, addresses: Sequence[str], deleted: dict[str, int]
) -> None:
    """Step 3 of the module docstring; counts into ``deleted``."""
    subjects = subject_forms(addresses)
    names = ServiceRequest.customer_id == customer_id
    if subjects:
        names = or_(names, ServiceRequest.subject.in_(subjects))
    requests = _delete(session, ServiceRequest, names)
    results = _delete(session, OfferResult, OfferResult.customer_id == customer_id)
    notes = _delete(session, Notification, Notification.customer_id == customer_id)
    deleted["service_requests"] = _rows(requests)
    deleted["offer_results"] = _rows(results)
    deleted["notifications"] = _rows(notes)
    rules = 0
    if subjects:
        rules = _rows(
            session.execute(
                update(RuleDecision)
                .where(RuleDecision.subject.in_(subjects))
                .values(subject=ERASED, event_id=None, inputs={}, reasons=[])
                .execution_options(synchronize_session=False)
            )
        )
    offers = session.execute(
        update(OfferDecision)
        .where(OfferDecision.customer_id == customer_id)
        .values(customer_id=None, inputs={}, reasons=[])
        .execution_options(synchronize_session=False)
    )
    deleted["rule_decisions_anonymised"] = rules
    deleted["offer_decisions_anonymised"] = _rows(offers)


def _rows(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _delete(session: Session, model: Any, where: Any) -> Any:
    return session.execute(delete(model).where(where).execution_options(synchronize_session=False))


def _scrub_audit(session: Session, actor: str, addresses: Sequence[str]) -> int:
    """Anonymise the audit rows naming the customer or a wearable (module docstring); how
    many rows changed. Every row is checked: erasures are rare, the log is not indexed by
    the words in its details."""
    clauses = [AuditEvent.actor == actor, AuditEvent.target == actor]
    for address in addresses:
        clauses.append(AuditEvent.target.contains(address))
        clauses.append(cast(AuditEvent.details, Text).contains(address))
    changed = 0
    for row in session.scalars(select(AuditEvent).where(or_(*clauses))):
        if row.actor == actor:
            row.actor = ERASED_ACTOR
        row.target = ERASED_ACTOR if row.target == actor else _scrub(row.target, addresses)
        row.details = _scrub(row.details, addresses)
        changed += 1
    session.flush()
    return changed


def _scrub(value: Any, addresses: Sequence[str]) -> Any:
    if isinstance(value, str):
        for address in addresses:
            value = value.replace(address, ERASED).replace(address.lower(), ERASED)
        return value
    if isinstance(value, list):
        return [_scrub(item, addresses) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, addresses) for key, item in value.items()}
    return value
