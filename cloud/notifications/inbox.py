"""The customer's inbox: stage a notification in the caller's transaction, list a customer's
own, mark them read, and answer an offer.

``add`` stages a row in the session of the decision that caused it (the rule worker's pass,
a shopping or holdings decision, an offer's decision) and returns the ``Note`` for the
post-commit hook (``push``): the notification exists exactly when its decision was
committed, and is due for the pusher (``pusher``: the outbox) from then on.

``mark_relayed``: the customer's phone app says it passed a ``wearable`` notification on to
the watch (``relayed_at``, set once).

Every read and change names the customer: a notification is found by its id *and* the
signed-in customer's id, so another customer's notification is "not found", never shown,
marked or answered (object-level authorization).

**Offer results.** An offer delivered to the inbox counts as ``shown`` (``offer_results``,
channel ``app`` or ``wearable``, gateway ``inbox``, event id the notification's id); the
customer's Accept or Decline is ``accepted`` / ``declined`` with event id minus the
notification's id. ``offer_results`` is UNIQUE on (gateway, event id): an offer is shown once
and answered at most once, whatever the clicks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.ingest.models import utc
from cloud.notifications.models import (
    CHANNELS,
    SOURCE_LEN,
    TEXT_LEN,
    TITLE_LEN,
    Notification,
)
from cloud.notifications.push import Note
from cloud.offers.models import Campaign, OfferResult

INBOX = "inbox"  # the offer_results gateway of offers answered in the inbox
ANSWERS = ("accepted", "declined")
PAGE = 50  # notifications the page and its JSON list
LABELS = {"offers": "Offer", "holdings": "Price alert", "shopping": "Shopping"}


class NotificationError(ValueError):
    """A notification that cannot be stored or an answer that cannot be taken; the message
    is one line for the customer or the log."""


class NotFound(NotificationError):
    """No such notification of this customer."""


class Refused(NotificationError):
    """An answer that cannot be taken (not an offer, answered already, ended)."""


def add(
    session: Session,
    *,
    customer_id: int,
    channel: str,
    source: str,
    title: str,
    text: str,
    now: dt.datetime,
    campaign_id: int | None = None,
    offer_decision_id: int | None = None,
) -> Note:
    """Stage a notification for ``customer_id`` in ``session`` (the caller commits it with
    its decision); the ``Note`` to push after the commit. ``NotificationError`` if it cannot
    be one (nothing staged)."""
    if channel not in CHANNELS:
        raise NotificationError(
            "channel must be one of %s, not %r" % (", ".join(CHANNELS), channel)
        )
    if not 1 <= len(source) <= SOURCE_LEN:
        raise NotificationError("source must be 1 to %d characters" % SOURCE_LEN)
    if not 1 <= len(title) <= TITLE_LEN or "\x00" in title:
        raise NotificationError("title must be 1 to %d characters" % TITLE_LEN)
    if len(text) > TEXT_LEN or "\x00" in text:
        raise NotificationError("text must be at most %d characters" % TEXT_LEN)
    row = Notification(
        customer_id=customer_id,
        channel=channel,
        source=source,
        title=title,
        text=text,
        campaign_id=campaign_id,
        offer_decision_id=offer_decision_id,
        created_at=now,
        read_at=None,
        push_attempts=0,
        next_push_at=now,  # the outbox: due for the pusher as soon as it is committed
    )
    session.add(row)
    session.flush()
    return Note(row.id, customer_id, channel, source, title, text)


def record_shown(session: Session, note: Note, campaign_id: int, now: dt.datetime) -> None:
    """Stage the ``shown`` result of offer ``note`` (delivered to the inbox)."""
    session.add(_result(campaign_id, note.customer_id, note.channel, "shown", note.id, now))
    session.flush()


def _result(
    campaign_id: int, customer_id: int, channel: str, outcome: str, event_id: int, now: dt.datetime
) -> OfferResult:
    return OfferResult(
        campaign_id=campaign_id,
        customer_id=customer_id,
        channel=channel,
        outcome=outcome,
        at=now,
        gateway=INBOX,
        event_id=event_id,
        branch_id=None,
    )


def latest(session: Session, customer_id: int, limit: int = PAGE) -> list[Notification]:
    """The customer's newest notifications, newest first."""
    return list(
        session.scalars(
            select(Notification)
            .where(Notification.customer_id == customer_id)
            .order_by(Notification.id.desc())
            .limit(limit)
        )
    )


def unread(session: Session, customer_id: int) -> int:
    """How many of the customer's notifications are unread."""
    count = session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.customer_id == customer_id, Notification.read_at.is_(None))
    )
    return int(count or 0)


def _own(session: Session, customer_id: int, notification_id: int) -> Notification:
    row = None
    if 0 < notification_id < 2**63:
        row = session.scalar(
            select(Notification).where(
                Notification.id == notification_id, Notification.customer_id == customer_id
            )
        )
    if row is None:
        raise NotFound("You have no such notification.")
    return row


def mark_read(
    session: Session, customer_id: int, notification_id: int, now: dt.datetime
) -> Notification:
    """Mark the customer's notification read (staged; already read stays as it was);
    ``NotFound`` if it is not theirs."""
    row = _own(session, customer_id, notification_id)
    if row.read_at is None:
        row.read_at = now
        session.flush()
    return row


def mark_all_read(session: Session, customer_id: int, now: dt.datetime) -> int:
    """Mark every unread notification of the customer read (staged); how many."""
    result = session.execute(
        update(Notification)
        .where(Notification.customer_id == customer_id, Notification.read_at.is_(None))
        .values(read_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def mark_relayed(
    session: Session, customer_id: int, notification_id: int, now: dt.datetime
) -> Notification:
    """Record that the customer's phone passed their ``wearable`` notification on (staged;
    the first time counts). ``NotFound`` if it is not theirs; ``Refused`` if it is not for
    a wearable."""
    row = _own(session, customer_id, notification_id)
    if row.channel != "wearable":
        raise Refused("This notification is not for a wearable.")
    if row.relayed_at is None:
        row.relayed_at = now
        session.flush()
    return row


def answers(session: Session, customer_id: int, ids: Sequence[int]) -> dict[int, str]:
    """The answers (``accepted`` / ``declined``) the customer gave to the offers among the
    notifications ``ids``, by notification id."""
    if not ids:
        return {}
    rows = session.execute(
        select(OfferResult.event_id, OfferResult.outcome).where(
            OfferResult.gateway == INBOX,
            OfferResult.customer_id == customer_id,
            OfferResult.event_id.in_([-i for i in ids]),
        )
    )
    return {-int(event_id): outcome for event_id, outcome in rows}


def answer(
    session: Session, customer_id: int, notification_id: int, outcome: str, now: dt.datetime
) -> Notification:
    """Record the customer's ``outcome`` (``accepted`` or ``declined``) for the offer in
    their notification (staged, and the notification marked read). ``NotFound`` if it is
    not theirs; ``Refused`` if it is no offer, was answered already, or (to accept) its
    campaign has ended."""
    if outcome not in ANSWERS:
        raise Refused("An answer is accepted or declined, not %r." % outcome[:16])
    row = _own(session, customer_id, notification_id)
    campaign = session.get(Campaign, row.campaign_id) if row.campaign_id is not None else None
    if campaign is None:
        raise Refused("This notification is not an offer.")
    if answers(session, customer_id, [row.id]):
        raise Refused("You have answered this offer already.")
    if outcome == "accepted" and (campaign.status != "active" or now >= utc(campaign.ends_at)):
        raise Refused("This offer has ended.")
    try:
        with session.begin_nested():  # two clicks at once: the UNIQUE result decides
            session.add(_result(campaign.id, customer_id, row.channel, outcome, -row.id, now))
    except IntegrityError:
        raise Refused("You have answered this offer already.") from None
    if row.read_at is None:
        row.read_at = now
    session.flush()
    return row


def label(source: str) -> str:
    """What the customer reads for ``source`` (a rule's notifications are the bank's)."""
    return LABELS.get(source, "Your bank")


def item_out(row: Notification, answered: str | None) -> dict[str, Any]:
    """A notification as the inbox's JSON shows it (``docs/customers.md``)."""
    return {
        "id": row.id,
        "channel": row.channel,
        "source": row.source,
        "label": label(row.source),
        "title": row.title,
        "text": row.text,
        "created_at": utc(row.created_at).isoformat(),
        "read": row.read_at is not None,
        "offer": row.campaign_id is not None,
        "answer": answered,
        "relay_to_wearable": row.channel == "wearable",
        "relayed_at": None if row.relayed_at is None else utc(row.relayed_at).isoformat(),
    }
