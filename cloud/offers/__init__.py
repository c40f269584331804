"""Offers and campaigns: who gets which offer, on which channel, and what became of it.

- ``models``: campaigns, offer results (shown, accepted, declined), the decision log;
- ``audience``: audience rules, a small JSON rule tree over customer attributes (no eval);
- ``eligibility``: the decision itself, pure: consent, channel, status, dates, audience,
  frequency cap, with up to four reasons;
- ``decisions``: the decision log (every decision, including not to offer);
- ``kiosk``: what ingest calls for kiosk events: offer results stored with their kiosk
  events, and after a check-in the decision and the OFFERS downlink message for the kiosk;
  and a rule's ``offer`` action (``show_offer``, below);
- ``campaigns``, ``schemas``, ``views``, ``cli``: managing campaigns (API under
  ``/api/offers``, for cloud operations; ``bankiot offers``).

App and wearable campaigns go to the customer's inbox instead of a kiosk
(``cloud.notifications.offers``): through a rule's ``offer`` action, or sent by cloud
operations to the campaign's audience (``POST /api/offers/campaigns/<id>/send``, ``bankiot
offers send``).

``init_app(app)`` registers the API.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from flask import Flask
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from cloud.notifications.push import Note

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Install the offers API on ``app`` (after ``fleet``, whose refusals it answers with)."""
    from cloud.offers import views

    app.register_blueprint(views.bp)


def show_offer(
    session: Session,
    *,
    gateway: str,
    subject: str,
    offer: str,
    rule: str,
    decision_id: int,
    now: dt.datetime,
    kiosk: bool = True,
) -> bytes | Note | None:
    """A rule's ``offer`` action (``cloud.events.actions``), in the event worker's
    transaction: decide and log the offer of campaign ``offer`` (its id or name) to the
    customer of wearable ``subject``, as a check-in's offers are decided (consent, status,
    dates, audience, frequency cap).

    A kiosk campaign is offered at kiosk ``gateway``: the OFFERS message for the kiosk to
    seal and send, or None (``kiosk.KioskOffers.for_rule``); when ``kiosk`` is False (no
    downlink to send it on) nothing is decided. An app or wearable campaign goes to the
    customer's inbox: the notification staged, to push after the commit, or None
    (``cloud.notifications.offers.for_rule``)."""
    from cloud.offers.kiosk import KioskOffers, branch_of, find_campaign

    wanted = find_campaign(session, offer)
    if wanted is not None and wanted.channel != "kiosk":
        from cloud.notifications.offers import for_rule

        return for_rule(
            session,
            campaign=wanted,
            gateway=gateway,
            branch=branch_of(session, gateway),
            wearable=subject,
            rule=rule,
            decision_id=decision_id,
            now=now,
        )
    if not kiosk:
        log.info("offer %r of rule %s not shown: no offers downlink", offer, rule)
        return None
    return KioskOffers().for_rule(
        session,
        gateway=gateway,
        wearable=subject,
        campaign=offer,
        rule=rule,
        decision_id=decision_id,
        now=now,
    )
