"""The decision log: every decision to offer or not, with its inputs and reasons.

One ``offer_decisions`` row per kiosk check-in that reached the offers application
(``models``), written in the same transaction that takes the downlink number of its OFFERS
message, so that no offer reaches a kiosk without its decision on record. ``record`` is
idempotent per (gateway, event id): a check-in is decided once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.offers.models import OfferDecision


def record(
    session: Session,
    *,
    at: dt.datetime,
    gateway: str,
    event_id: int,
    customer_id: int | None,
    branch_id: int | None,
    offered: Sequence[int],
    reasons: Sequence[str],
    inputs: dict[str, Any],
    version: str,
) -> OfferDecision | None:
    """Stage the decision for check-in ``event_id`` of ``gateway``; None if that check-in
    was decided already (nothing staged)."""
    exists = session.scalar(
        select(OfferDecision.id).where(
            OfferDecision.gateway == gateway, OfferDecision.event_id == event_id
        )
    )
    if exists is not None:
        return None
    row = OfferDecision(
        at=at,
        gateway=gateway,
        event_id=event_id,
        customer_id=customer_id,
        branch_id=branch_id,
        outcome="offered" if offered else "none",
        offered=list(offered),
        reasons=list(reasons)[:4],
        inputs=inputs,
        version=version,
    )
    session.add(row)
    session.flush()
    return row


def decision_out(row: OfferDecision) -> dict[str, Any]:
    """A decision as the API and the CLI show it."""
    return {
        "id": row.id,
        "at": row.at,
        "customer_id": row.customer_id,
        "gateway": row.gateway,
        "event_id": row.event_id,
        "branch_id": row.branch_id,
        "outcome": row.outcome,
        "offered": list(row.offered),
        "reasons": list(row.reasons),
        "inputs": row.inputs,
        "version": row.version,
    }
