"""The applications' decision log (``app_decisions``): one row per decision, acting or not,
with inputs, version and at most four reasons; and its JSON form for the API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from cloud.apps.models import AppDecision
from cloud.ingest.models import utc

MAX_REASONS = 4


def record(
    session: Session,
    *,
    app: str,
    at: dt.datetime,
    customer_id: int | None,
    subject: str,
    outcome: str,
    reasons: Sequence[str],
    inputs: dict[str, Any],
    version: str,
    rule_decision_id: int | None = None,
) -> AppDecision:
    """Stage one decision (flushed, so it has its id)."""
    row = AppDecision(
        app=app,
        at=at,
        customer_id=customer_id,
        rule_decision_id=rule_decision_id,
        subject=subject,
        outcome=outcome,
        reasons=list(reasons)[:MAX_REASONS],
        inputs=inputs,
        version=version,
    )
    session.add(row)
    session.flush()
    return row


def decision_out(row: AppDecision) -> dict[str, Any]:
    """A decision as the API shows it."""
    return {
        "id": row.id,
        "app": row.app,
        "at": utc(row.at).isoformat(),
        "customer_id": row.customer_id,
        "rule_decision_id": row.rule_decision_id,
        "subject": row.subject,
        "outcome": row.outcome,
        "reasons": list(row.reasons),
        "inputs": dict(row.inputs),
        "version": row.version,
    }
