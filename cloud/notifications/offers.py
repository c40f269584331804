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
  event id their place in the send (1, 2, ...).

A send goes through the audience ``PAGE`` customers at a time, each page in its own
transaction: the campaign's row locked (so pages of two calls take turns), the page
decided, the row's progress (``last_customer_id``, the counts, ``status`` ``done`` after the
last page) moved, committed; then that page's notifications are pushed. A send that failed
half-way (a process killed, a database error: the failed page is rolled back whole) stays
``sending``, and the next send of the campaign continues it after its last committed page
rather than starting another; a call that comes while another is at work waits for its turn
and then continues the same send (or, if it finished meanwhile, starts a new one, which the
cap window keeps from notifying anyone again). So one campaign has at most one send under
way, and each customer is decided once per send. Each page is decided with the campaign as
it is then (the decisions name its version; the send's row keeps the version it started
with).

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
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cloud import audit
from cloud.customers import consent
from cloud.customers.models import Customer, CustomerWearable
from cloud.fleet.errors import Conflict, Invalid, NotFound
from cloud.ingest.models import utc
from cloud.notifications import inbox
from cloud.notifications.models import DONE, SENDING, CampaignSend, Notification
from cloud.notifications.push import Note
from cloud.offers import decisions
from cloud.offers.eligibility import VERSION, decide
from cloud.offers.kiosk import attributes, campaign_view
from cloud.offers.models import Campaign, OfferDecision, OfferResult

INBOX_CHANNELS = ("app", "wearable")
OFFERS_PURPOSE = "offers"  # cloud.customers.consent.PURPOSES
SOURCE = "offers"
COUNTS = ("decided", "notified", "no_consent", "not_offered")  # a send's, per customer
PAGE = 500  # customers decided in one transaction of a send


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
    """What a call of ``send`` did: the send's row (its status and the counts so far) and,
    when the call continued an unfinished send, the customer id it continued after."""

    send: CampaignSend
    resumed_after: int | None


@dataclass(frozen=True)
class _Page:
    """One committed page: the send's row, the notifications to push, and where the call
    began (``SendResult``)."""

    send: CampaignSend
    notes: list[Note]
    resumed_after: int | None


def _take_turn(session: Session, campaign_id: int) -> Campaign | None:
    """Begin a page's transaction by locking the campaign's row: pages of sends of one
    campaign take turns, and each reads the progress the one before it committed.
    ``Conflict`` if SQLite's write lock stays taken past its busy timeout."""
    connection = session.connection()
    raw = connection.connection.dbapi_connection
    if isinstance(raw, sqlite3.Connection) and not raw.in_transaction:
        # SQLite has no row locks, and pysqlite begins a transaction only at the first
        # write: take the database's write lock first, or two sends could both read the
        # same progress before either wrote.
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            if "locked" not in str(exc.orig):
                raise
            raise Conflict(
                "campaign %d: the database is busy (a send of it under way?): try again"
                % campaign_id
            ) from None
    return session.get(Campaign, campaign_id, with_for_update=True, populate_existing=True)


def _unfinished(session: Session, campaign_id: int) -> CampaignSend | None:
    """The campaign's send still ``sending`` (one died, or another call is at it), if any."""
    return session.scalar(
        select(CampaignSend)
        .where(CampaignSend.campaign_id == campaign_id, CampaignSend.status == SENDING)
        .order_by(CampaignSend.id)
        .limit(1)
        .execution_options(populate_existing=True)
    )


def _check(campaign: Campaign | None, campaign_id: int, now: dt.datetime) -> Campaign:
    """``campaign`` if it may be sent at ``now``; else the one-line refusal (``send``)."""
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
    return campaign


def _count(counts: dict[str, int], done: Delivery) -> None:
    counts["decided"] += 1
    if done.note is not None:
        counts["notified"] += 1
    elif not done.consented:
        counts["no_consent"] += 1
    else:
        counts["not_offered"] += 1


def _begin(
    session: Session, campaign: Campaign, row: CampaignSend | None, actor: str, now: dt.datetime
) -> tuple[CampaignSend, int | None]:
    """The send a call works on: the unfinished ``row``, continued (and the customer id it
    continues after), or a new one; audited either way."""
    target = "campaign:%d" % campaign.id
    if row is not None:
        audit.record(
            session, actor, "campaign.send", target, send=row.id, resumed_after=row.last_customer_id
        )
        return row, row.last_customer_id
    row = CampaignSend(
        campaign_id=campaign.id,
        campaign_version=campaign.version,
        at=now,
        actor=actor,
        counts=dict.fromkeys(COUNTS, 0),
        status=SENDING,
        last_customer_id=0,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(session, actor, "campaign.send", target, send=row.id)
    return row, None


def _page(
    session: Session, campaign_id: int, send_id: int | None, actor: str, now: dt.datetime
) -> _Page:
    """Stage the next page of the campaign's send: the call's first page (``send_id`` None)
    continues the unfinished send or starts one; later pages continue ``send_id``."""
    campaign = _take_turn(session, campaign_id)
    if send_id is None:
        row = _unfinished(session, campaign_id)
    else:
        row = session.get(CampaignSend, send_id, populate_existing=True)
        if row is not None and row.status != SENDING:  # another call finished it meanwhile
            return _Page(row, [], None)
    try:
        campaign = _check(campaign, campaign_id, now)
    except Conflict as exc:
        if row is None:
            raise
        raise Conflict(
            "%s (send %d stopped after customer %d: sending again continues it)"
            % (exc.message, row.id, row.last_customer_id)
        ) from None
    resumed_after = None
    if send_id is None:
        row, resumed_after = _begin(session, campaign, row, actor, now)
    elif row is None:  # a send goes only with its campaign, found above
        raise NotFound("no send %d" % send_id)
    customers = list(
        session.scalars(
            select(Customer)
            .where(Customer.active.is_(True), Customer.id > row.last_customer_id)
            .order_by(Customer.id)
            .limit(PAGE)
        )
    )
    counts = {key: int(row.counts.get(key, 0)) for key in COUNTS}
    notes: list[Note] = []
    source = {"send": row.id, "campaign": str(campaign.id)}
    for customer in customers:
        done = deliver(
            session,
            campaign,
            customer,
            gateway="send:%d" % row.id,
            event_id=counts["decided"] + 1,  # the customer's place in the send
            branch_id=None,
            branch_code=None,
            now=now,
            source=source,
        )
        _count(counts, done)
        if done.note is not None:
            notes.append(done.note)
    row.counts = counts  # a new dict: JSON columns do not track changes inside
    row.updated_at = now
    if customers:
        row.last_customer_id = customers[-1].id
    if len(customers) < PAGE:  # the audience is through
        row.status = DONE
        row.finished_at = now
        audit.record(
            session,
            actor,
            "campaign.send.done",
            "campaign:%d" % campaign.id,
            send=row.id,
            **counts,
        )
    session.flush()
    return _Page(row, notes, resumed_after)


def send(
    session: Session,
    campaign_id: int,
    actor: str,
    now: dt.datetime,
    push: Callable[[list[Note]], object] | None = None,
) -> SendResult:
    """Send app or wearable campaign ``campaign_id`` to its audience now (module docstring):
    ``PAGE`` customers at a time, each page committed (with whatever the caller had
    staged before) and its notifications then handed to ``push``. The campaign's unfinished
    send, if any, is continued instead of starting a new one. ``NotFound``, ``Invalid`` (a
    kiosk campaign) or ``Conflict`` (not active, not started, ended) as one line; a failure
    leaves the pages before it committed and the send resumable. Audited."""
    send_id: int | None = None
    resumed_after: int | None = None
    while True:
        try:
            page = _page(session, campaign_id, send_id, actor, now)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        if send_id is None:
            send_id, resumed_after = page.send.id, page.resumed_after
        if push is not None and page.notes:
            push(page.notes)
        if page.send.status != SENDING:
            return SendResult(page.send, resumed_after)


def send_out(done: SendResult) -> dict[str, Any]:
    """A call of ``send`` as the API and the CLI show it: the send, and where the call
    continued it (``resumed_after``, None for a new send)."""
    row = done.send
    return {
        "id": row.id,
        "campaign_id": row.campaign_id,
        "campaign_version": row.campaign_version,
        "at": utc(row.at),
        "actor": row.actor,
        "status": row.status,
        "last_customer_id": row.last_customer_id,
        "updated_at": utc(row.updated_at),
        "finished_at": None if row.finished_at is None else utc(row.finished_at),
        **{key: int(row.counts.get(key, 0)) for key in COUNTS},
        "resumed_after": done.resumed_after,
    }
