"""Campaigns: create, change, list, and count their results.

Every change is checked whole before it is staged (the audience rule by ``audience.parse``,
title and text by the OFFERS downlink's own encoder, so that anything stored can be sent),
raises a ``cloud.fleet.errors`` refusal with one line (``Invalid`` 422, ``Conflict`` 409,
``NotFound`` 404) and is audited. ``version`` rises with every change. The caller commits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bankiot_core import downlink
from bankiot_core.errors import ConfigError
from cloud import audit
from cloud.fleet.errors import Conflict, Invalid, NotFound
from cloud.identity.models import utc
from cloud.offers import audience
from cloud.offers.models import CHANNELS, NAME_LEN, OUTCOMES, STATUSES, Campaign, OfferResult

MAX_CAP_DAYS = 365
FIELDS = (
    "name",
    "audience",
    "title",
    "text",
    "channel",
    "cap_count",
    "cap_days",
    "starts_at",
    "ends_at",
    "status",
)


def _check(values: dict[str, Any]) -> None:
    """Refuse (``Invalid``) a campaign that cannot be one; messages name the field."""
    name = values["name"]
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_LEN:
        raise Invalid("name must be 1 to %d characters" % NAME_LEN)
    try:
        values["audience"] = audience.parse(values["audience"])
    except audience.AudienceError as exc:
        raise Invalid(str(exc)) from None
    try:
        downlink.encode_offers(bytes(6), 0, [(1, values["title"], values["text"])])
    except ConfigError as exc:
        raise Invalid(exc.message) from None
    if values["channel"] not in CHANNELS:
        raise Invalid("channel must be one of %s" % ", ".join(CHANNELS))
    if values["status"] not in STATUSES:
        raise Invalid("status must be one of %s" % ", ".join(STATUSES))
    cap_count, cap_days = values["cap_count"], values["cap_days"]
    if type(cap_count) is not int or not 1 <= cap_count <= 100:
        raise Invalid("cap_count must be 1..100 offers shown per customer")
    if type(cap_days) is not int or not 1 <= cap_days <= MAX_CAP_DAYS:
        raise Invalid("cap_days must be 1..%d days" % MAX_CAP_DAYS)
    starts, ends = values["starts_at"], values["ends_at"]
    if not isinstance(starts, dt.datetime) or not isinstance(ends, dt.datetime):
        raise Invalid("starts_at and ends_at must be times")
    values["starts_at"], values["ends_at"] = utc(starts), utc(ends)
    if not values["starts_at"] < values["ends_at"]:
        raise Invalid("ends_at must be after starts_at")


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict("a campaign named %r exists already" % name) from None


def create(session: Session, values: dict[str, Any], actor: str, now: dt.datetime) -> Campaign:
    """Stage a new campaign from ``values`` (every name of ``FIELDS``; ``status``
    defaults to ``draft``)."""
    values = dict(values)
    values.setdefault("status", "draft")
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise Invalid("missing: %s" % ", ".join(missing))
    _check(values)
    if session.scalar(select(Campaign.id).where(Campaign.name == values["name"])) is not None:
        raise Conflict("a campaign named %r exists already" % values["name"])
    campaign = Campaign(
        **{name: values[name] for name in FIELDS}, version=1, created_at=now, created_by=actor
    )
    session.add(campaign)
    _flush(session, values["name"])
    audit.record(session, actor, "campaign.create", "campaign:%d" % campaign.id, name=campaign.name)
    return campaign


def get(session: Session, campaign_id: int) -> Campaign:
    """The campaign, or ``NotFound``."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("no campaign %d" % campaign_id)
    return campaign


def update(session: Session, campaign: Campaign, changes: dict[str, Any], actor: str) -> Campaign:
    """Stage ``changes`` (names of ``FIELDS``) to ``campaign``, checked whole; its version
    rises if anything changed."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise Invalid("unknown fields: %s" % ", ".join(unknown))
    values = {name: getattr(campaign, name) for name in FIELDS}
    values.update(changes)
    _check(values)
    changed = sorted(name for name in FIELDS if values[name] != _current(campaign, name))
    if not changed:
        return campaign
    for name in changed:
        setattr(campaign, name, values[name])
    campaign.version += 1
    _flush(session, values["name"])
    audit.record(session, actor, "campaign.update", "campaign:%d" % campaign.id, changed=changed)
    return campaign


def _current(campaign: Campaign, name: str) -> Any:
    value = getattr(campaign, name)
    return utc(value) if isinstance(value, dt.datetime) else value


def list_campaigns(session: Session, status: str | None = None) -> list[Campaign]:
    """Every campaign (of ``status``), newest first."""
    query = select(Campaign).order_by(Campaign.id.desc())
    if status is not None:
        query = query.where(Campaign.status == status)
    return list(session.scalars(query))


def results(session: Session, campaign_id: int) -> dict[str, int]:
    """How often the campaign's offers were shown, accepted and declined, and to how many
    customers."""
    counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
    rows = session.execute(
        select(OfferResult.outcome, func.count())
        .where(OfferResult.campaign_id == campaign_id)
        .group_by(OfferResult.outcome)
    ).all()
    for outcome, count in rows:
        counts[outcome] = int(count)
    customers = session.scalar(
        select(func.count(func.distinct(OfferResult.customer_id))).where(
            OfferResult.campaign_id == campaign_id
        )
    )
    counts["customers"] = int(customers or 0)
    return counts


def campaign_out(session: Session, campaign: Campaign) -> dict[str, Any]:
    """A campaign as the API and the CLI show it, with its results."""
    out = {name: getattr(campaign, name) for name in FIELDS}
    out.update(
        id=campaign.id,
        version=campaign.version,
        created_at=campaign.created_at,
        created_by=campaign.created_by,
        results=results(session, campaign.id),
    )
    return out
