"""The applications' API (``/api/apps``).

- ``POST /api/apps/loans``: an application (branch managers for their branches, cloud
  operations); decided at once. ``GET /api/apps/loans/review``: the referred applications
  waiting, of the branches I may see (branch managers); ``POST
  /api/apps/loans/<id>/decide``: a branch manager's decision.
- ``POST /api/apps/holdings/alerts``: a customer's threshold; ``POST
  /api/apps/holdings/prices``: the price feed (cloud operations); ``GET
  /api/apps/holdings/suggestions?customer=``: suggestions from detected life events.
- ``GET /api/apps/decisions``: the applications' decision log (branch managers).

Inbound requests (button -> call-back, check-in -> ticket) are served to branch staff by
``/api/events/service-requests``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apiflask import APIBlueprint, Schema, abort
from apiflask.fields import Boolean, Dict, Integer, List, Raw, String
from apiflask.fields import Decimal as DecimalField
from apiflask.validators import Length, OneOf, Range
from marshmallow import ValidationError
from sqlalchemy import select

from cloud import audit
from cloud.access import check_branch, current_principal, require, visible_branches
from cloud.apps import holdings, loans
from cloud.apps.decisions import decision_out
from cloud.apps.models import APPS, PENDING, AppDecision, HoldingAlert, LoanApplication
from cloud.customers.models import Customer, CustomerWearable
from cloud.db import session
from cloud.identity.models import utcnow
from cloud.notifications.push import current_channel
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("apps", __name__, tag="Applications")
APPLICANTS = ("operations", "branch_manager")
MAX_AMOUNT = 1_000_000


def _amount(value: Decimal) -> None:
    # A function, not Range: apispec would write Decimal bounds as strings in the spec.
    if not 1 <= value <= MAX_AMOUNT:
        raise ValidationError("must be between 1 and %d" % MAX_AMOUNT)


def _not_negative(value: Decimal) -> None:
    if value < 0:
        raise ValidationError("must not be negative")


def _customer(customer_id: int) -> Customer:
    row = session().get(Customer, customer_id) if 0 < customer_id < 2**31 else None
    if row is None:
        abort(404, message="no customer %d" % customer_id)
    return row


def _home_branch(customer_id: int) -> int | None:
    return session().scalar(
        select(CustomerWearable.branch_id).where(CustomerWearable.customer_id == customer_id)
    )


class LoanIn(Schema):
    customer = Integer(required=True, validate=Range(1, 2**31 - 1))
    branch = Integer(required=True, validate=Range(1, 2**31 - 1))
    amount = DecimalField(required=True, places=2, validate=_amount)
    currency = String(required=True, validate=Length(3, 3))
    term_months = Integer(required=True, validate=Range(3, 360))
    purpose = String(load_default="", validate=Length(0, 200))
    evidence = List(String(validate=Length(1, 64)), load_default=[], validate=Length(0, 16))
    evidence_consent = Boolean(load_default=False)


class LoanOut(Schema):
    id = Integer()
    customer_id = Integer()
    branch_id = Integer(allow_none=True)
    amount = String()
    currency = String()
    term_months = Integer()
    purpose = String()
    evidence = List(String())
    outcome = String()
    reasons = List(String())
    review = String(allow_none=True)
    decision = String()
    reviewed_by = String(allow_none=True)
    reviewed_at = String(allow_none=True)
    review_note = String()
    created_at = String()


class LoansOut(Schema):
    items = List(Raw())


class ReviewIn(Schema):
    outcome = String(required=True, validate=OneOf(("approved", "declined")))
    reasons = List(String(validate=Length(1, 200)), load_default=[], validate=Length(0, 4))
    note = String(load_default="", validate=Length(0, 1000))


@bp.post("/api/apps/loans")
@require(*APPLICANTS)
@bp.input(LoanIn, arg_name="body")
@bp.output(LoanOut, status_code=201)
@bp.doc(
    summary="Apply for a loan for a customer, with their consented IoT evidence; decided at "
    "once (approved, referred to a branch manager, declined) with at most four reasons",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def apply_loan(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    check_branch(body["branch"])
    _customer(body["customer"])
    db, actor = session(), current_principal().actor
    try:
        row = loans.apply(
            db,
            customer_id=body["customer"],
            branch_id=body["branch"],
            amount=body["amount"],
            currency=body["currency"].upper(),
            term_months=body["term_months"],
            purpose=body["purpose"],
            evidence=body["evidence"],
            evidence_consent=body["evidence_consent"],
            actor=actor,
            now=utcnow(),
        )
    except loans.LoanError as exc:
        abort(422, message=str(exc))
    audit.record(db, actor, "loan.apply", "loan:%d" % row.id)
    db.commit()
    return loans.loan_out(row), 201


@bp.get("/api/apps/loans/review")
@require("branch_manager")
@bp.output(LoansOut)
@bp.doc(summary="Referred loan applications waiting for a branch manager", security=SECURITY)
def review_queue() -> dict[str, Any]:
    statement = select(LoanApplication).where(LoanApplication.review == PENDING)
    visible = visible_branches()
    if visible is not None:
        statement = statement.where(LoanApplication.branch_id.in_(list(visible)))
    rows = session().scalars(statement.order_by(LoanApplication.id)).all()
    return {"items": [loans.loan_out(row) for row in rows]}


@bp.post("/api/apps/loans/<int:loan_id>/decide")
@require("branch_manager")
@bp.input(ReviewIn, arg_name="body")
@bp.output(LoanOut)
@bp.doc(
    summary="A branch manager decides a referred application (a decline keeps the "
    "automatic reasons unless given its own)",
    security=SECURITY,
    responses=signed_in(404, 409),
)
def decide_loan(loan_id: int, body: dict[str, Any]) -> dict[str, Any]:
    db = session()
    row = db.get(LoanApplication, loan_id) if 0 < loan_id < 2**31 else None
    if row is None or row.branch_id is None:
        abort(404)
    check_branch(row.branch_id)
    actor = current_principal().actor
    try:
        loans.review(
            db,
            row,
            outcome=body["outcome"],
            reasons=body["reasons"],
            note=body["note"],
            actor=actor,
            now=utcnow(),
        )
    except loans.LoanError as exc:
        abort(409, message=str(exc))
    audit.record(db, actor, "loan.review", "loan:%d" % row.id, outcome=body["outcome"])
    db.commit()
    return loans.loan_out(row)


class AlertIn(Schema):
    customer = Integer(required=True, validate=Range(1, 2**31 - 1))
    instrument = String(required=True, validate=Length(1, 16))
    direction = String(required=True, validate=OneOf(("above", "below")))
    threshold = DecimalField(required=True, places=5, validate=_not_negative)
    channel = String(load_default="app", validate=OneOf(("wearable", "app")))


class AlertOut(Schema):
    id = Integer()
    customer_id = Integer()
    instrument = String()
    direction = String()
    threshold = String()
    channel = String()
    armed = Boolean()


class PriceIn(Schema):
    instrument = String(required=True, validate=Length(1, 16))
    price = DecimalField(required=True, places=5, validate=_not_negative)


class PriceOut(Schema):
    instrument = String()
    notified = List(Integer())


class SuggestionsQuery(Schema):
    customer = Integer(required=True, validate=Range(1, 2**31 - 1))


class SuggestionsOut(Schema):
    items = List(Dict())


def _alert_out(row: HoldingAlert) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "instrument": row.instrument,
        "direction": row.direction,
        "threshold": holdings.plain(row.threshold),
        "channel": row.channel,
        "armed": row.armed,
    }


def _check_customer(customer_id: int) -> None:
    _customer(customer_id)
    home = _home_branch(customer_id)
    if home is not None:
        check_branch(home)


@bp.post("/api/apps/holdings/alerts")
@require(*APPLICANTS)
@bp.input(AlertIn, arg_name="body")
@bp.output(AlertOut, status_code=201)
@bp.doc(
    summary="Set a customer's alert: notify their wearable or app once each time the price "
    "crosses the threshold",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def add_alert(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    _check_customer(body["customer"])
    db = session()
    row = HoldingAlert(
        customer_id=body["customer"],
        instrument=body["instrument"].upper(),
        direction=body["direction"],
        threshold=body["threshold"],
        channel=body["channel"],
        armed=True,
        last_price=None,
        created_at=utcnow(),
    )
    db.add(row)
    db.flush()
    audit.record(db, current_principal().actor, "holding_alert.add", "alert:%d" % row.id)
    db.commit()
    return _alert_out(row), 201


@bp.post("/api/apps/holdings/prices")
@require("operations")
@bp.input(PriceIn, arg_name="body")
@bp.output(PriceOut)
@bp.doc(
    summary="Push an instrument's price (the price feed); returns the alerts it notified",
    security=SECURITY,
    responses=signed_in(422),
)
def push_price(body: dict[str, Any]) -> dict[str, Any]:
    db = session()
    instrument = body["instrument"].upper()
    sent = holdings.push_price(db, instrument, body["price"], utcnow())
    ids = [alert.id for alert, _ in sent]
    db.commit()
    holdings.notify_all(current_channel(), sent)
    return {"instrument": instrument, "notified": ids}


@bp.get("/api/apps/holdings/suggestions")
@require("branch_manager")
@bp.input(SuggestionsQuery, location="query", arg_name="query")
@bp.output(SuggestionsOut)
@bp.doc(
    summary="Investment suggestions tied to the customer's detected life events",
    security=SECURITY,
    responses=signed_in(404, 422),
)
def suggestions(query: dict[str, Any]) -> dict[str, Any]:
    _check_customer(query["customer"])
    return {"items": holdings.suggestions(session(), query["customer"], utcnow().date())}


class DecisionsQuery(Schema):
    app = String(load_default=None, validate=OneOf(APPS))
    customer = Integer(required=True, validate=Range(1, 2**31 - 1))
    limit = Integer(load_default=100, validate=Range(1, 500))


@bp.get("/api/apps/decisions")
@require("branch_manager")
@bp.input(DecisionsQuery, location="query", arg_name="query")
@bp.output(SuggestionsOut)
@bp.doc(summary="A customer's decisions of the applications, newest first", security=SECURITY)
def app_decisions(query: dict[str, Any]) -> dict[str, Any]:
    statement = select(AppDecision)
    if query["app"]:
        statement = statement.where(AppDecision.app == query["app"])
    _check_customer(query["customer"])
    statement = statement.where(AppDecision.customer_id == query["customer"])
    rows = session().scalars(statement.order_by(AppDecision.id.desc()).limit(query["limit"]))
    return {"items": [decision_out(row) for row in rows]}
