"""App and wearable campaigns delivered to the customer's inbox.

A campaign's channel says where its offers go: ``kiosk`` ones at a check-in
(``cloud.offers.kiosk``), ``app`` and ``wearable`` ones (``INBOX_CHANNELS``) here, as a
notification in the customer's inbox (a ``wearable`` one is relayed by the phone app to the
customer's smartwatch). Two ways in, one decision (``deliver``):

- a rule's ``offer`` action naming such a campaign (``for_rule``, through
  ``cloud.offers.show_offer``), in the event worker's transaction: logged in
  ``offer_decisions`` like a kiosk rule offer (gateway where the event happened, event id
  minus the rule decision's id);
- cloud operations sending the campaign to its audience now (``send``: ``POST
  /api/offers/campaigns/<id>/send``, ``bankiot offers send``): a ``campaign_sends`` row, then
  every active customer decided in id order, each logged with gateway ``send:<send id>`` and
  event id their place in the send (1, 2, ...), in one transaction.

``deliver`` decides as a kiosk check-in is decided (``eligibility.decide`` over the customer's
``attributes``, the campaign, the offers shown in its cap window), with the purpose offers
pushed to a customer need: consent to *personalised offers* (``OFFERS_PURPOSE``; a kiosk's
offers, which the customer asks for on the screen, need only presence in branches; without
it nothing more about the customer is read, and the decision says so). Then, once per
campaign and customer within the campaign's ``cap_days``: a customer who has the campaign in
their inbox from that window is not sent it again (a retried send notifies nobody twice).
An offer decided is staged as a notification (title and text the campaign's) with its
``shown`` result (``inbox``), in the decision's transaction; the caller pushes the ``Note``
after the commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import audit
from cloud.customers import consent
from cloud.customers.models import Customer, CustomerWearable
from cloud.fleet.errors import Conflict, Invalid, NotFound
from cloud.ingest.models import utc
from cloud.notifications import inbox
from cloud.notifications.models import CampaignSend, Notification
from cloud.notifications.push import Note
from cloud.offers import decisions
from cloud.offers.eligibility import VERSION, decide
from cloud.offers.kiosk import attributes, campaign_view
from cloud.offers.models import Campaign, OfferDecision, OfferResult

INBOX_CHANNELS = ("app", "wearable")
OFFERS_PURPOSE = "offers"  # cloud.customers.consent.PURPOSES
SOURCE = "offers"
COUNTS = ("decided", "notified", "no_consent", "not_offered")  # a send's, per customer
_PAGE = 500  # customers read at a time by a send


@dataclass(frozen=True)
class Delivery:
    """One customer's decision: the logged row (None if that event was decided already),
    whether they consented, and the notification staged (None if not offered)."""

    decision: OfferDecision | None
    consented: bool
    note: Note | None


def _consents(session: Session, customer_id: int) -> bool:
    row = consent.latest(session, customer_id).get(OFFERS_PURPOSE)
    return row is not None and row.granted


def _shown(
    session: Session, customer_id: int, campaign: Campaign, now: dt.datetime
) -> list[tuple[int, dt.datetime]]:
    since = now - dt.timedelta(days=campaign.cap_days)
    rows = session.execute(
        select(OfferResult.campaign_id, OfferResult.at).where(
            OfferResult.customer_id == customer_id,
            OfferResult.campaign_id == campaign.id,
            OfferResult.outcome == "shown",
            OfferResult.at >= since,
        )
    ).all()
    return [(cid, utc(at)) for cid, at in rows]


def _in_inbox(
    session: Session, customer_id: int, campaign: Campaign, now: dt.datetime
) -> dt.datetime | None:
    """When the customer last got ``campaign`` in their inbox within its cap window."""
    found = session.scalar(
        select(Notification.created_at)
        .where(
            Notification.customer_id == customer_id,
            Notification.campaign_id == campaign.id,
            Notification.created_at >= now - dt.timedelta(days=campaign.cap_days),
        )
        .order_by(Notification.created_at.desc())
        .limit(1)
    )
    return None if found is None else utc(found)


def deliver(
    session: Session,
    campaign: Campaign,
    customer: Customer,
    *,
    gateway: str,
    event_id: int,
    branch_id: int | None,
    branch_code: str | None,
    now: dt.datetime,
    source: dict[str, Any],
) -> Delivery:
    """Decide, log and (if offered) stage ``campaign``'s offer to ``customer``'s inbox
    (module docstring). ``source`` goes into the decision's inputs (rule or send)."""
    consented = _consents(session, customer.id)
    attrs: dict[str, Any] = {}
    views = []
    shown: list[tuple[int, dt.datetime]] = []
    before = None
    if consented:  # without consent, nothing more about the customer is read
        attrs = attributes(session, customer, branch_code, now)
        views = [campaign_view(campaign)]
        shown = _shown(session, customer.id, campaign, now)
        before = _in_inbox(session, customer.id, campaign, now)
    decision = decide(
        views,
        attrs,
        shown,
        now,
        consented,
        channel=campaign.channel,
        purpose_title=consent.BY_NAME[OFFERS_PURPOSE].title.lower(),
    )
    offered = [c.id for c in decision.offered]
    reasons = decision.reasons
    if offered and before is not None:
        offered = []
        reasons = (
            "%s (campaign %d): in the inbox already since %s (once per %d days)"
            % (campaign.name, campaign.id, before.isoformat(timespec="seconds"), campaign.cap_days),
        )
    inputs = {**source, "channel": campaign.channel, **decision.inputs(attrs, consented)}
    inputs["campaign_versions"] = {str(campaign.id): campaign.version}
    row = decisions.record(
        session,
        at=now,
        gateway=gateway,
        event_id=event_id,
        customer_id=customer.id,
        branch_id=branch_id,
        offered=offered,
        reasons=reasons,
        inputs=inputs,
        version=VERSION,
    )
    if row is None or not offered:
        return Delivery(row, consented, None)
    note = inbox.add(
        session,
        customer_id=customer.id,
        channel=campaign.channel,
        source=SOURCE,
        title=campaign.title,
        text=campaign.text,
        now=now,
        campaign_id=campaign.id,
        offer_decision_id=row.id,
    )
    inbox.record_shown(session, note, campaign.id, now)
    return Delivery(row, consented, note)


# ---- a rule's offer action --------------------------------------------------------------------


def for_rule(
    session: Session,
    *,
    campaign: Campaign,
    gateway: str,
    branch: tuple[int | None, str | None],
    wearable: str,
    rule: str,
    decision_id: int,
    now: dt.datetime,
) -> Note | None:
    """Rule ``rule``'s offer of ``campaign`` (an app or wearable one) to the customer of
    ``wearable``, decided and logged in the worker's transaction (event id minus the rule
    decision's id, at ``gateway`` of ``branch`` (id, code)); the notification to push, or
    None."""
    source = {"rule": rule, "rule_decision": decision_id, "campaign": str(campaign.id)}
    customer = session.scalar(
        select(Customer)
        .join(CustomerWearable, CustomerWearable.customer_id == Customer.id)
        .where(CustomerWearable.address == wearable.upper())
    )
    if customer is None:
        decisions.record(
            session,
            at=now,
            gateway=gateway,
            event_id=-decision_id,
            customer_id=None,
            branch_id=branch[0],
            offered=(),
            reasons=("the wearable is no customer's: no offers",),
            inputs={**source, "customer": None},
            version=VERSION,
        )
        return None
    done = deliver(
        session,
        campaign,
        customer,
        gateway=gateway,
        event_id=-decision_id,
        branch_id=branch[0],
        branch_code=branch[1],
        now=now,
        source=source,
    )
    return done.note


# ---- operations send a campaign -----------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    """What a send did: its row (with the counts) and the notifications to push."""

    send: CampaignSend
    notes: list[Note]


def _audience(session: Session) -> Iterator[Customer]:
    """Every active customer, in id order, a page at a time."""
    after = 0
    while True:
        page = list(
            session.scalars(
                select(Customer)
                .where(Customer.active.is_(True), Customer.id > after)
                .order_by(Customer.id)
                .limit(_PAGE)
            )
        )
        if not page:
            return
        yield from page
        after = page[-1].id


def send(session: Session, campaign_id: int, actor: str, now: dt.datetime) -> SendResult:
    """Send app or wearable campaign ``campaign_id`` to its audience now (module docstring),
    staged in the caller's transaction (the campaign's row locked, so two sends of one
    campaign take turns). ``NotFound``, ``Invalid`` (a kiosk campaign) or ``Conflict`` (not
    active, not started, ended) as one line; audited."""
    campaign = session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise NotFound("no campaign %d" % campaign_id)
    if campaign.channel not in INBOX_CHANNELS:
        raise Invalid(
            "campaign %d is for the %s channel: only app and wearable campaigns are sent"
            % (campaign.id, campaign.channel)
        )
    if campaign.status != "active":
        raise Conflict("campaign %d is %s: activate it first" % (campaign.id, campaign.status))
    if now < utc(campaign.starts_at):
        raise Conflict("campaign %d starts %s" % (campaign.id, utc(campaign.starts_at).isoformat()))
    if now >= utc(campaign.ends_at):
        raise Conflict("campaign %d ended %s" % (campaign.id, utc(campaign.ends_at).isoformat()))
    row = CampaignSend(
        campaign_id=campaign.id, campaign_version=campaign.version, at=now, actor=actor, counts={}
    )
    session.add(row)
    session.flush()
    counts: dict[str, int] = dict.fromkeys(COUNTS, 0)
    notes: list[Note] = []
    gateway = "send:%d" % row.id
    source = {"send": row.id, "campaign": str(campaign.id)}
    for place, customer in enumerate(_audience(session), start=1):
        done = deliver(
            session,
            campaign,
            customer,
            gateway=gateway,
            event_id=place,
            branch_id=None,
            branch_code=None,
            now=now,
            source=source,
        )
        counts["decided"] += 1
        if done.note is not None:
            notes.append(done.note)
            counts["notified"] += 1
        elif not done.consented:
            counts["no_consent"] += 1
        else:
            counts["not_offered"] += 1
    row.counts = counts
    session.flush()
    audit.record(
        session, actor, "campaign.send", "campaign:%d" % campaign.id, send=row.id, **counts
    )
    return SendResult(row, notes)


def send_out(row: CampaignSend) -> dict[str, Any]:
    """A send as the API and the CLI show it."""
    return {
        "id": row.id,
        "campaign_id": row.campaign_id,
        "campaign_version": row.campaign_version,
        "at": utc(row.at),
        "actor": row.actor,
        **{key: int(row.counts.get(key, 0)) for key in COUNTS},
    }
