"""The offers API, for cloud operations (who run campaigns: there is no marketing role yet):

- ``GET /api/offers/campaigns`` (``?status=``) and ``POST``: list and create campaigns;
- ``GET`` / ``PATCH /api/offers/campaigns/<id>``: one campaign and its results (shown,
  accepted, declined, customers), or change it (its version rises);
- ``POST /api/offers/campaigns/<id>/send``: send an app or wearable campaign to its
  audience now (``cloud.notifications.offers.send``): every active customer decided and
  logged, the offer put in the inbox of those it is for, once per customer within the
  campaign's cap window; a page of customers per transaction, each page's notifications
  pushed after its commit (``cloud.notifications.push.current_channel``); a send that
  stopped half-way is continued by the next one (the same send id);
- ``GET /api/offers/decisions`` (``?campaign=&offered=&limit=``): the newest decisions to
  offer or not, with their reasons. Operations see that a customer was involved, not who
  (``cloud.access``): the customer's id and attributes are left out for them.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from sqlalchemy import select

from cloud.access import current_principal, may_see_personal_data, require
from cloud.db import session
from cloud.identity.models import utcnow
from cloud.offers import campaigns
from cloud.offers.decisions import decision_out
from cloud.offers.models import OfferDecision
from cloud.offers.schemas import (
    CampaignCreatedOut,
    CampaignIn,
    CampaignOut,
    CampaignPatch,
    CampaignsOut,
    CampaignsQuery,
    DecisionsOut,
    DecisionsQuery,
    SendOut,
)
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("offers", __name__, tag="Offers")
ROLES = ("operations",)


@bp.get("/api/offers/campaigns")
@require(*ROLES)
@bp.input(CampaignsQuery, location="query", arg_name="query")
@bp.output(CampaignsOut)
@bp.doc(summary="Campaigns, newest first, with their results", security=SECURITY)
def list_campaigns(query: dict[str, Any]) -> dict[str, Any]:
    db = session()
    found = campaigns.list_campaigns(db, query.get("status"))
    return {"campaigns": [campaigns.campaign_out(db, c) for c in found]}


@bp.post("/api/offers/campaigns")
@require(*ROLES)
@bp.input(CampaignIn, location="json")
@bp.output(CampaignCreatedOut, status_code=201)
@bp.doc(
    summary="Create a campaign (draft unless status says otherwise)",
    security=SECURITY,
    responses=signed_in(409, 422),
)
def create_campaign(json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    campaign = campaigns.create(db, json_data, current_principal().actor, utcnow())
    db.commit()
    return campaigns.campaign_out(db, campaign)


@bp.get("/api/offers/campaigns/<int:campaign_id>")
@require(*ROLES)
@bp.output(CampaignOut)
@bp.doc(summary="One campaign and its results", security=SECURITY, responses=signed_in(404))
def get_campaign(campaign_id: int) -> dict[str, Any]:
    db = session()
    return campaigns.campaign_out(db, campaigns.get(db, campaign_id))


@bp.patch("/api/offers/campaigns/<int:campaign_id>")
@require(*ROLES)
@bp.input(CampaignPatch, location="json")
@bp.output(CampaignOut)
@bp.doc(
    summary="Change a campaign (activate, pause, end, retarget); its version rises",
    security=SECURITY,
    responses=signed_in(404, 409, 422),
)
def patch_campaign(campaign_id: int, json_data: dict[str, Any]) -> dict[str, Any]:
    db = session()
    campaign = campaigns.update(
        db, campaigns.get(db, campaign_id), json_data, current_principal().actor
    )
    db.commit()
    return campaigns.campaign_out(db, campaign)


@bp.post("/api/offers/campaigns/<int:campaign_id>/send")
@require(*ROLES)
@bp.output(SendOut)
@bp.doc(
    summary="Send an app or wearable campaign to its audience now: each active customer "
    "decided and logged; offered ones get it in their inbox, once within the cap window. "
    "A send that stopped half-way is continued, not started again",
    security=SECURITY,
    responses=signed_in(404, 409, 422),
)
def send_campaign(campaign_id: int) -> dict[str, Any]:
    from cloud.notifications import offers as inbox_offers
    from cloud.notifications.push import current_channel, push_all

    channel = current_channel()
    done = inbox_offers.send(
        session(),
        campaign_id,
        current_principal().actor,
        utcnow(),
        push=lambda notes: push_all(channel, notes),
    )
    return inbox_offers.send_out(done)


@bp.get("/api/offers/decisions")
@require(*ROLES)
@bp.input(DecisionsQuery, location="query", arg_name="query")
@bp.output(DecisionsOut)
@bp.doc(summary="The newest decisions to offer or not, with reasons", security=SECURITY)
def list_decisions(query: dict[str, Any]) -> dict[str, Any]:
    statement = select(OfferDecision)
    if query.get("offered") is not None:
        statement = statement.where(
            OfferDecision.outcome == ("offered" if query["offered"] else "none")
        )
    # The campaign is looked for in a JSON list, which SQLite and PostgreSQL query apart:
    # among the newest 5000 decisions, in Python.
    rows = list(session().scalars(statement.order_by(OfferDecision.id.desc()).limit(5000)))
    if query.get("campaign") is not None:
        rows = [row for row in rows if query["campaign"] in row.offered]
    personal = may_see_personal_data()
    out = []
    for row in rows[: query["limit"]]:
        item = decision_out(row)
        if not personal:
            item["customer_id"] = None
            item["inputs"] = {k: v for k, v in item["inputs"].items() if k != "attributes"}
        out.append(item)
    return {"decisions": out}
