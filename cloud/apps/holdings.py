"""Investment management: thresholds customers set on their holdings, prices pushed in,
a notification to the wearable or the app once per crossing (in the customer's inbox,
``cloud.notifications``, staged with the decision; pushed after the commit); and
suggestions tied to the life events the analytics detect.

**Once per crossing** (``step``, pure): an alert is *armed* when set. A price beyond the
threshold (at or above it for ``above``, at or below for ``below``) while armed notifies
and disarms it; a price back on the other side re-arms it. So a price hovering above the
threshold notifies once, and every new crossing notifies once more.

**Suggestions** (``SUGGESTIONS``): one line per detected life event kind, shown with the
event's own reasons (``cloud.analytics.events``) when its score reaches its threshold.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.analytics.events import detect_events
from cloud.apps import decisions, finance
from cloud.apps.models import HoldingAlert
from cloud.notifications import inbox
from cloud.notifications.push import Note, NotificationChannel, push_all

APP = "holdings"
VERSION = "holdings-1"
ABOVE, BELOW = "above", "below"

SUGGESTIONS: dict[str, str] = {
    "moving_house": "Moving home: review how much of your portfolio to keep liquid for the "
    "deposit and moving costs, and consider home insurance.",
    "new_child": "A new child: a junior ISA or a children's savings plan, and a look at "
    "life cover.",
    "job_change": "A new job or salary: revisit your monthly investment amount and your "
    "pension contributions.",
    "relationship": "A change in your relationship: review joint holdings and the "
    "beneficiaries of your accounts.",
    "distress": "Money may be tight before payday: keep an emergency fund in cash before "
    "investing more.",
}


def plain(value: Decimal) -> str:
    """A price or threshold for a sentence: no exponent, no trailing zeros."""
    return format(Decimal(value).normalize(), "f")


def step(direction: str, threshold: Decimal, armed: bool, price: Decimal) -> tuple[bool, bool]:
    """(notify now, armed after) for one price (module docstring)."""
    beyond = price >= threshold if direction == ABOVE else price <= threshold
    if beyond:
        return armed, False
    return False, True


def push_price(
    session: Session, instrument: str, price: Decimal, now: dt.datetime
) -> list[tuple[HoldingAlert, Note]]:
    """Apply ``price`` to every alert on ``instrument``; log each notification decided in
    ``app_decisions`` and stage it in the customer's inbox; return (alert, notification) to
    push after the commit."""
    out = []
    alerts = session.scalars(
        select(HoldingAlert).where(HoldingAlert.instrument == instrument).order_by(HoldingAlert.id)
    ).all()
    for alert in alerts:
        notify, armed = step(alert.direction, Decimal(alert.threshold), alert.armed, price)
        previous = alert.last_price
        alert.armed, alert.last_price = armed, price
        if not notify:
            continue
        threshold = plain(alert.threshold)
        message = "%s is %s at %s (your alert: %s %s)" % (
            instrument,
            "up" if alert.direction == ABOVE else "down",
            plain(price),
            alert.direction,
            threshold,
        )
        decisions.record(
            session,
            app=APP,
            at=now,
            customer_id=alert.customer_id,
            subject="alert:%d" % alert.id,
            outcome="notified",
            reasons=(
                "price %s is %s the threshold %s" % (plain(price), alert.direction, threshold),
                "previous price %s" % ("unknown" if previous is None else plain(previous)),
            ),
            inputs={"instrument": instrument, "price": str(price), "channel": alert.channel},
            version=VERSION,
        )
        note = inbox.add(
            session,
            customer_id=alert.customer_id,
            channel=alert.channel,
            source=APP,
            title="Price alert: %s" % instrument,
            text=message,
            now=now,
        )
        out.append((alert, note))
    return out


def notify_all(channel: NotificationChannel, sent: list[tuple[HoldingAlert, Note]]) -> None:
    """Push the notifications of a committed price (a failure is logged, never retried:
    each is in the customer's inbox)."""
    push_all(channel, [note for _, note in sent])


def suggestions(session: Session, customer_id: int, as_of: dt.date) -> list[dict[str, Any]]:
    """Suggestions for the life events detected in the customer's transactions."""
    profile = finance.customer_profile(session, customer_id, as_of)
    if profile is None:
        return []
    return [
        {
            "event": p.kind,
            "score": p.score,
            "suggestion": SUGGESTIONS[p.kind],
            "reasons": list(p.reasons),
        }
        for p in detect_events(profile)
        if p.alert() and p.kind in SUGGESTIONS
    ]
