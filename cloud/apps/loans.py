"""Loan processing, the shell: an application with the customer's consented IoT evidence,
decided by ``underwriting`` and logged; referrals wait in a review queue for a branch
manager, whose decision is logged too.

Evidence: the devices the customer named (collateral monitored by sensors), read only with
``evidence_consent`` given in the application; for each, its readings in the last
``FRESH_DAYS`` days and its ``threshold`` alarms in the last ``ALARM_DAYS`` days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.apps import decisions, finance, underwriting
from cloud.apps.models import PENDING, LoanApplication
from cloud.apps.underwriting import ALARM_DAYS, FRESH_DAYS, Evidence
from cloud.fleet.models import Device
from cloud.ingest.models import DeviceEvent, Reading, utc

APP = "loan"
MANUAL = "manual-1"


class LoanError(ValueError):
    """An application or a review that cannot be taken (one line)."""


def gather(session: Session, devices: Sequence[str], now: dt.datetime) -> list[Evidence]:
    """The evidence of each device (module docstring)."""
    out = []
    for device in devices:
        known = session.scalar(select(Device.id).where(Device.uid == device)) is not None
        readings = session.scalar(
            select(func.count())
            .select_from(Reading)
            .where(
                Reading.device == device, Reading.measured_at >= now - dt.timedelta(days=FRESH_DAYS)
            )
        )
        alarms = session.scalar(
            select(func.count(DeviceEvent.id)).where(
                DeviceEvent.device == device,
                DeviceEvent.kind == "threshold",
                DeviceEvent.occurred_at >= now - dt.timedelta(days=ALARM_DAYS),
            )
        )
        out.append(Evidence(device, known, int(readings or 0), int(alarms or 0)))
    return out


def apply(
    session: Session,
    *,
    customer_id: int,
    branch_id: int | None,
    amount: Decimal,
    currency: str,
    term_months: int,
    purpose: str,
    evidence: Sequence[str],
    evidence_consent: bool,
    actor: str,
    now: dt.datetime,
) -> LoanApplication:
    """Decide an application and stage it with its decision; LoanError for evidence
    without the customer's consent to use it."""
    if evidence and not evidence_consent:
        raise LoanError("evidence devices given without the customer's consent to use them")
    profile = finance.customer_profile(session, customer_id, now.date())
    found = gather(session, evidence, now)
    verdict = underwriting.decide(amount, term_months, profile, found)
    row = LoanApplication(
        customer_id=customer_id,
        branch_id=branch_id,
        amount=amount,
        currency=currency,
        term_months=term_months,
        purpose=purpose,
        evidence=list(evidence),
        outcome=verdict.outcome,
        reasons=list(verdict.reasons),
        review=PENDING if verdict.outcome == underwriting.REFERRED else None,
        review_note="",
        created_at=now,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    decisions.record(
        session,
        app=APP,
        at=now,
        customer_id=customer_id,
        subject="loan:%d" % row.id,
        outcome=verdict.outcome,
        reasons=verdict.reasons,
        inputs={
            "amount": str(amount),
            "currency": currency,
            "term_months": term_months,
            "facts": dict(verdict.facts),
            "evidence": [e.__dict__ for e in found],
        },
        version=underwriting.VERSION,
    )
    return row


def review(
    session: Session,
    row: LoanApplication,
    *,
    outcome: str,
    reasons: Sequence[str],
    note: str,
    actor: str,
    now: dt.datetime,
) -> LoanApplication:
    """A branch manager's decision on a referred application; LoanError if it is not
    waiting for one, or a decline comes without reasons (the automatic ones are used when
    none are given)."""
    if row.review != PENDING:
        raise LoanError("application %d is not waiting for review" % row.id)
    if outcome not in (underwriting.APPROVED, underwriting.DECLINED):
        raise LoanError("a review decides approved or declined, not %r" % (outcome,))
    given = [r for r in reasons if r.strip()] or list(row.reasons)
    row.review, row.reviewed_by, row.reviewed_at, row.review_note = outcome, actor, now, note
    decisions.record(
        session,
        app=APP,
        at=now,
        customer_id=row.customer_id,
        subject="loan:%d" % row.id,
        outcome=outcome,
        reasons=given,
        inputs={"automatic": row.outcome, "automatic_reasons": list(row.reasons), "by": actor},
        version=MANUAL,
    )
    return row


def loan_out(row: LoanApplication) -> dict[str, Any]:
    """An application as the API shows it."""

    def iso(moment: dt.datetime | None) -> str | None:
        if moment is None:
            return None
        return utc(moment).isoformat()

    final = row.outcome if row.review is None else row.review
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "branch_id": row.branch_id,
        "amount": str(Decimal(row.amount).quantize(Decimal("0.01"))),
        "currency": row.currency,
        "term_months": row.term_months,
        "purpose": row.purpose,
        "evidence": list(row.evidence),
        "outcome": row.outcome,
        "reasons": list(row.reasons),
        "review": row.review,
        "decision": final,
        "reviewed_by": row.reviewed_by,
        "reviewed_at": iso(row.reviewed_at),
        "review_note": row.review_note,
        "created_at": iso(row.created_at),
    }
