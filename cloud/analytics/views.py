"""The analytics API: ``GET /api/analytics/customers/<id>``, a customer's stored profile
and the life events found in it, with their reasons, and their history (``life_event_history``:
when each was first detected, last seen, ended); ``GET /api/analytics/life-events/over-time``,
life events found per month and kind bank-wide (operations only; names nobody).

Scoped like the customer dashboards (``cloud.dashboards.customer_data``): a branch manager
sees the customers who paired a wearable at one of their branches, in full (email, the
profile's summary with payees, each event's reasons); cloud operations see every customer
by number only: figures, segment, income band and each event's kind and score, but no
email, no summary and no reasons (they name payees and people). Anyone else: 403; a
customer the caller may not see: 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiflask import APIBlueprint, Schema, abort
from apiflask.fields import Boolean, Date, DateTime, Dict, Float, Integer, List, Nested, String
from apiflask.validators import Range

from cloud.access import may_see_personal_data, require, visible_branches
from cloud.analytics import store
from cloud.dashboards.analytics_data import first_month
from cloud.dashboards.customer_data import visible_customer
from cloud.db import session
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("analytics", __name__, tag="Analytics")


class ProfileOut(Schema):
    as_of = Date(required=True)
    currency = String(required=True)
    accounts = Integer(required=True)
    income_monthly = String(required=True, metadata={"description": "decimal, a month"})
    balance_mean = String(required=True, metadata={"description": "decimal, 90 days"})
    balance_min = String(required=True, metadata={"description": "decimal, 90 days"})
    segment = String(allow_none=True, required=True)
    income_band = String(allow_none=True, required=True)
    model_version = String(required=True)
    computed_at = DateTime(required=True)
    summary = Dict(allow_none=True, required=True, metadata={"description": "personal only"})


class LifeEventOut(Schema):
    kind = String(required=True)
    as_of = Date(required=True)
    score = Float(required=True)
    detail = String(required=True)
    reasons = List(String(), allow_none=True, required=True)
    model_version = String(required=True)


class LifeEventEpisodeOut(Schema):
    kind = String(required=True)
    detail = String(required=True)
    first_as_of = Date(required=True, metadata={"description": "the profile's date"})
    first_detected_at = DateTime(required=True)
    last_as_of = Date(required=True)
    last_seen_at = DateTime(required=True)
    score = Float(required=True, metadata={"description": "the latest"})
    peak_score = Float(required=True)
    ended_as_of = Date(allow_none=True, required=True)
    ended_at = DateTime(allow_none=True, required=True)
    reasons = List(String(), allow_none=True, required=True, metadata={"description": "latest"})
    model_version = String(required=True)


class CustomerAnalyticsOut(Schema):
    customer = Integer(required=True)
    personal = Boolean(required=True)
    email = String(allow_none=True, required=True)
    profile = Nested(ProfileOut, allow_none=True, required=True)
    life_events = List(Nested(LifeEventOut), required=True)
    life_event_history = List(
        Nested(LifeEventEpisodeOut), required=True, metadata={"description": "newest first"}
    )


class OverTimeQuery(Schema):
    months = Integer(
        load_default=12, validate=Range(1, 120), metadata={"description": "how far back"}
    )


class MonthKindOut(Schema):
    month = String(required=True, metadata={"description": "YYYY-MM of first detection"})
    kind = String(required=True)
    found = Integer(required=True)
    customers = Integer(required=True)
    ongoing = Integer(required=True, metadata={"description": "not ended yet"})


class OverTimeOut(Schema):
    since = Date(required=True)
    items = List(Nested(MonthKindOut), required=True)


@bp.get("/api/analytics/customers/<int:customer_id>")
@require("operations", "branch_manager")
@bp.output(CustomerAnalyticsOut)
@bp.doc(
    summary="A customer's stored financial profile and life events, with reasons",
    security=SECURITY,
    responses=signed_in(404),
)
def customer_analytics(customer_id: int) -> dict[str, Any]:
    db = session()
    customer = visible_customer(db, customer_id, visible_branches())
    if customer is None:
        abort(404, "no such customer")
    personal = may_see_personal_data()
    row = store.profile_row(db, customer_id)
    profile = None
    if row is not None:
        profile = {
            "as_of": row.as_of,
            "currency": row.currency,
            "accounts": row.accounts,
            "income_monthly": str(row.income_monthly),
            "balance_mean": str(row.balance_mean),
            "balance_min": str(row.balance_min),
            "segment": row.segment,
            "income_band": row.income_band,
            "model_version": row.model_version,
            "computed_at": row.computed_at,
            "summary": row.snapshot if personal else None,
        }
    return {
        "customer": customer_id,
        "personal": personal,
        "email": customer.email if personal else None,
        "profile": profile,
        "life_events": [
            {
                "kind": e.kind,
                "as_of": e.as_of,
                "score": e.score,
                "detail": e.detail,
                "reasons": list(e.reasons) if personal else None,
                "model_version": e.model_version,
            }
            for e in store.life_events(db, customer_id)
        ],
        "life_event_history": [
            {
                **store.episode_json(e, reasons=False),
                "first_as_of": e.first_as_of,
                "first_detected_at": e.first_detected_at,
                "last_as_of": e.last_as_of,
                "last_seen_at": e.last_seen_at,
                "ended_as_of": e.ended_as_of,
                "ended_at": e.ended_at,
                "reasons": list(e.reasons) if personal else None,
            }
            for e in store.life_event_history(db, customer_id)
        ],
    }


@bp.get("/api/analytics/life-events/over-time")
@require("operations")
@bp.input(OverTimeQuery, location="query", arg_name="query")
@bp.output(OverTimeOut)
@bp.doc(
    summary="Life events found per month (of first detection) and kind, bank-wide",
    security=SECURITY,
    responses=signed_in(),
)
def life_events_over_time(query: dict[str, Any]) -> dict[str, Any]:
    since = first_month(dt.datetime.now(dt.UTC).date(), query["months"])
    return {"since": since, "items": store.events_over_time(session(), since)}
