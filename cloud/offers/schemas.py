"""Request and response schemas of the offers API (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, Dict, Integer, List, Nested, Raw, String
from apiflask.validators import Length, OneOf, Range

from cloud.identity.schemas import UTCDateTime
from cloud.offers.models import CHANNELS, NAME_LEN, STATUSES, TEXT_BYTES, TITLE_BYTES

_AUDIENCE = {
    "description": "who the campaign is for: true (everyone), or a rule tree of all / any / "
    "not and attribute tests {attr, op, value} (docs/operations.md, cloud.offers.audience)",
    "example": {"all": [{"attr": "relationship_days", "op": "ge", "value": 365}]},
}


class CampaignIn(Schema):
    name = String(required=True, validate=Length(1, NAME_LEN))
    audience = Raw(required=True, metadata=_AUDIENCE)
    title = String(
        required=True,
        validate=Length(1, TITLE_BYTES),
        metadata={"description": "what the screen shows first: 1 to 40 bytes of UTF-8"},
    )
    text = String(
        load_default="",
        validate=Length(0, TEXT_BYTES),
        metadata={"description": "one or two short sentences: at most 160 bytes of UTF-8"},
    )
    channel = String(load_default="kiosk", validate=OneOf(CHANNELS))
    cap_count = Integer(
        load_default=1,
        validate=Range(1, 100),
        metadata={"description": "at most this many times shown to a customer per cap_days"},
    )
    cap_days = Integer(load_default=7, validate=Range(1, 365))
    starts_at = UTCDateTime(required=True)
    ends_at = UTCDateTime(required=True)
    status = String(load_default="draft", validate=OneOf(STATUSES))


class CampaignPatch(Schema):
    name = String(validate=Length(1, NAME_LEN))
    audience = Raw(metadata=_AUDIENCE)
    title = String(validate=Length(1, TITLE_BYTES))
    text = String(validate=Length(0, TEXT_BYTES))
    channel = String(validate=OneOf(CHANNELS))
    cap_count = Integer(validate=Range(1, 100))
    cap_days = Integer(validate=Range(1, 365))
    starts_at = UTCDateTime()
    ends_at = UTCDateTime()
    status = String(validate=OneOf(STATUSES))


class CampaignsQuery(Schema):
    status = String(validate=OneOf(STATUSES))


class ResultsOut(Schema):
    shown = Integer(required=True)
    accepted = Integer(required=True)
    declined = Integer(required=True)
    customers = Integer(required=True, metadata={"description": "distinct customers"})


class CampaignOut(Schema):
    id = Integer(required=True)
    name = String(required=True)
    audience = Raw(required=True, metadata=_AUDIENCE)
    title = String(required=True)
    text = String(required=True)
    channel = String(required=True)
    cap_count = Integer(required=True)
    cap_days = Integer(required=True)
    starts_at = UTCDateTime(required=True)
    ends_at = UTCDateTime(required=True)
    status = String(required=True)
    version = Integer(required=True, metadata={"description": "rises with every change"})
    created_at = UTCDateTime(required=True)
    created_by = String(required=True)
    results = Nested(ResultsOut, required=True)


class CampaignsOut(Schema):
    campaigns = List(Nested(CampaignOut), required=True)


class CampaignCreatedOut(CampaignOut):
    """A campaign just created (its own name in the OpenAPI document)."""


class DecisionsQuery(Schema):
    campaign = Integer(validate=Range(1, 2**31 - 1), metadata={"description": "offered it"})
    offered = Boolean(metadata={"description": "only decisions that offered something"})
    limit = Integer(load_default=100, validate=Range(1, 1000))


class DecisionOut(Schema):
    id = Integer(required=True)
    at = UTCDateTime(required=True)
    customer_id = Integer(
        allow_none=True,
        required=True,
        metadata={"description": "null unless the caller may see personal data"},
    )
    gateway = String(required=True)
    event_id = Integer(required=True)
    branch_id = Integer(allow_none=True, required=True)
    outcome = String(required=True, validate=OneOf(("offered", "none")))
    offered = List(Integer(), required=True)
    reasons = List(String(), required=True, metadata={"description": "at most four"})
    inputs = Dict(required=True, metadata={"description": "what the decision read"})
    version = String(required=True)


class DecisionsOut(Schema):
    decisions = List(Nested(DecisionOut), required=True)


class SendOut(Schema):
    id = Integer(required=True, metadata={"description": "decisions name it: gateway send:<id>"})
    campaign_id = Integer(required=True)
    campaign_version = Integer(required=True)
    at = UTCDateTime(required=True, metadata={"description": "when the send began"})
    actor = String(required=True, metadata={"description": "who began it"})
    status = String(
        required=True,
        validate=OneOf(("sending", "done")),
        metadata={"description": "sending: stopped half-way; sending again continues it"},
    )
    last_customer_id = Integer(
        required=True, metadata={"description": "active customers up to this id decided"}
    )
    updated_at = UTCDateTime(
        required=True, metadata={"description": "the time of the call that committed the last page"}
    )
    finished_at = UTCDateTime(allow_none=True, required=True)
    decided = Integer(required=True, metadata={"description": "active customers decided"})
    notified = Integer(required=True, metadata={"description": "offers put in an inbox"})
    no_consent = Integer(
        required=True, metadata={"description": "no consent to personalised offers"}
    )
    not_offered = Integer(
        required=True,
        metadata={"description": "not in the audience, capped, or in the inbox already"},
    )
    resumed_after = Integer(
        allow_none=True,
        required=True,
        metadata={"description": "this call continued a stopped send after that customer id"},
    )
