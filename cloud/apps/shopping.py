"""Risk-aware shopping, the shell: a customer who consents to *presence at partner shops*
is seen at a partner merchant's beacon; the event rule ``partner-shopping``
(``cloud.events.defaults``, action ``app``) acts, and this application decides between a
tailored offer and a gentle warning (``affordability``) and tells the customer on the app.

``ShoppingApp.run_once`` takes the acted decisions of ``RULES`` that have no shopping
decision yet (UNIQUE on the rule decision: each is handled once), and for each, in one
transaction:

1. the customer of the wearable (none: ``not_customer``, as for a beacon's own presence),
   and their consent to ``presence_partner`` *now* (a withdrawal since the rule acted
   stops here: ``no_consent``);
2. the partner merchant: a registered merchant beacon heard in the same batch as the
   wearable's presence, or present at that batch's gateway
   (``cloud.ingest.consents.partners_present``), found by address
   (``cloud.fleet.beacons.find_places``); none: ``not_partner``;
3. the profile from the customer's bank transactions (``finance``); none: ``no_data``;
4. ``affordability.decide``: ``cashback``, ``instalments`` or ``warning``.

Every outcome is logged in ``app_decisions``; an offer or a warning is staged in the
customer's inbox (``cloud.notifications``, channel ``app``) in the same transaction, and
pushed (``NotificationChannel``) after the commit, at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from cloud.apps import affordability, decisions, finance
from cloud.apps.models import AppDecision
from cloud.customers.consent import consented
from cloud.customers.models import CustomerWearable
from cloud.db import Database
from cloud.events.models import RuleDecision
from cloud.fleet.beacons import find_places
from cloud.ingest.consents import partners_present
from cloud.ingest.models import DeviceEvent, Reading
from cloud.notifications import inbox
from cloud.notifications.push import LoggingChannel, Note, NotificationChannel, push_all

log = logging.getLogger(__name__)

APP = "shopping"
RULES = ("partner-shopping",)
PURPOSE = "presence_partner"
PAGE = 100
CHANNEL = "app"
TITLES = {  # the inbox's title per outcome (the text names the merchant)
    affordability.CASHBACK: "An offer where you shop",
    affordability.INSTALMENTS: "An offer where you shop",
    affordability.WARNING: "Before you buy",
}


def _merchant(session: Session, event_id: int | None, wearable: str) -> Any:
    """The partner merchant whose beacon was heard in the batch of ``event_id``."""
    if event_id is None:
        return None
    found = session.execute(
        select(DeviceEvent.receipt_id, DeviceEvent.gateway).where(DeviceEvent.id == event_id)
    ).first()
    if found is None:
        return None
    receipt, gateway = found
    heard = set(
        session.scalars(select(DeviceEvent.device).where(DeviceEvent.receipt_id == receipt))
    )
    heard |= set(session.scalars(select(Reading.device).where(Reading.receipt_id == receipt)))
    # The wearable's enter came in a batch of its own: partner beacons present at the gateway.
    heard |= partners_present(session, gateway, receipt)
    heard.discard(wearable)
    places = find_places(session, (), sorted(heard))
    merchants = sorted(
        (p for p in places.values() if p.kind == "merchant"), key=lambda p: p.beacon_id
    )
    return merchants[0] if merchants else None


class ShoppingApp:
    """The shell (module docstring)."""

    def __init__(self, database: Database, channel: NotificationChannel | None = None) -> None:
        self.database = database
        self.channel: NotificationChannel = channel or LoggingChannel()

    def run_once(self, now: dt.datetime | None = None) -> list[AppDecision]:
        """Decide every pending rule decision; notify after the commit."""
        now = now or dt.datetime.now(dt.UTC)
        later: list[Note] = []
        with self.database.sessions() as session:
            pending = session.scalars(
                select(RuleDecision)
                .outerjoin(
                    AppDecision,
                    and_(AppDecision.app == APP, AppDecision.rule_decision_id == RuleDecision.id),
                )
                .where(
                    RuleDecision.rule_id.in_(RULES),
                    RuleDecision.acted.is_(True),
                    AppDecision.id.is_(None),
                )
                .order_by(RuleDecision.id)
                .limit(PAGE)
            ).all()
            made = []
            for rule_decision in pending:
                row, message = self._decide(session, rule_decision, now)
                made.append(row)
                if message is not None and row.customer_id is not None:
                    later.append(
                        inbox.add(
                            session,
                            customer_id=row.customer_id,
                            channel=CHANNEL,
                            source=APP,
                            title=TITLES.get(row.outcome, "From your bank"),
                            text=message,
                            now=now,
                        )
                    )
            session.commit()
            for row in made:
                session.refresh(row)
        push_all(self.channel, later)
        return made

    def _decide(
        self, session: Session, rule_decision: RuleDecision, now: dt.datetime
    ) -> tuple[AppDecision, str | None]:
        subject = rule_decision.subject
        inputs: dict[str, Any] = {"rule": rule_decision.rule_id, "event_id": rule_decision.event_id}
        customer_id = session.scalar(
            select(CustomerWearable.customer_id).where(CustomerWearable.address == subject)
        )

        def log_it(outcome: str, reasons: tuple[str, ...]) -> AppDecision:
            return decisions.record(
                session,
                app=APP,
                at=now,
                customer_id=customer_id,
                subject="rule_decision:%d" % rule_decision.id,
                outcome=outcome,
                reasons=reasons,
                inputs=inputs,
                version=affordability.VERSION,
                rule_decision_id=rule_decision.id,
            )

        if customer_id is None:  # the rule acts on devices too (a beacon's own presence)
            return log_it("not_customer", ("the subject is no customer's wearable",)), None
        if not consented(session, subject, PURPOSE):
            return log_it("no_consent", ("no consent to %s now" % PURPOSE,)), None
        merchant = _merchant(session, rule_decision.event_id, subject)
        if merchant is None:
            return log_it("not_partner", ("no partner merchant's beacon in the batch",)), None
        inputs["merchant"] = {"id": merchant.id, "name": merchant.name, "mcc": merchant.category}
        profile = finance.customer_profile(session, customer_id, now.date())
        if profile is None:
            return log_it("no_data", ("no booked transactions to judge affordability",)), None
        verdict = affordability.decide(profile)
        inputs["profile"] = {
            "as_of": profile.as_of.isoformat(),
            "balance": str(profile.balance),
            "spend_rate": str(profile.spend_rate),
            "next_salary": None if profile.next_salary is None else profile.next_salary.isoformat(),
            "bills": [[b.payee, b.due.isoformat(), str(b.amount)] for b in profile.upcoming_bills],
            "headroom": str(verdict.headroom),
        }
        row = log_it(verdict.outcome, verdict.reasons)
        return row, verdict.message(merchant.name)


async def run(app: ShoppingApp, stop: asyncio.Event, interval: float = 1.0) -> None:
    """``run_once`` until ``stop`` is set; a failing pass is logged and tried again."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(app.run_once)
        except Exception:
            log.exception("shopping pass failed; trying again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
