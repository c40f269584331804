"""Offers at the kiosk: what ingest does with kiosk events for the offers application.

Ingest (``cloud.ingest.pipeline``) calls a ``KioskOffers`` at two points of a new batch's
life (duplicates are left alone: their events were handled when first committed):

- ``stage``, inside the batch's own transaction: each stored ``offer_shown`` /
  ``offer_accepted`` / ``offer_declined`` kiosk event (detail: the campaign's id) becomes an
  ``offer_results`` row for the wearable's customer, so a result is stored exactly when its
  kiosk event is. Ingest has already withheld the events of a customer who does not consent
  to presence in branches (``cloud.ingest.consents``): those leave no result either.
- ``after``, once the batch is committed and acknowledged, in a short transaction of its
  own: for each ``checkin`` in the batch (as the kiosk sent it, before consent gating, so
  that "no consent" is logged too), the decision (``eligibility.decide`` over the
  customer's ``attributes``, the active kiosk campaigns and the offers shown in the cap
  windows), logged (``decisions``), and an OFFERS message (``downlink.encode_offers``) for the
  kiosk when there is a consenting customer: the offers (maybe none: "nothing today" is an
  answer), valid for ``lifetime``. Ingest seals it like the acknowledgement and sends it
  right after it, on the same channel: over MQTT within milliseconds of the check-in
  (``bench/offer_latency.py``), over CoAP in the same response.

Delivery is as reliable as the acknowledgement it follows: an OFFERS message lost on the
way is not sent again (it concerns one visit; the kiosk then says offers are not available).

A rule's ``offer`` action (``cloud.events.actions``, through ``cloud.offers.show_offer``)
comes to ``for_rule``, in the event worker's transaction: the same decision for one
campaign (found by id, or by name) at the kiosk where the event happened, logged the same
way (``event_id`` is minus the rule decision's id: kiosks number their events from 0 up, so
the two never meet, and a rule decision is decided once), with the rule and its decision
in the inputs. A kiosk keeps only the newest OFFERS message per wearable, so the message
carries the campaign with the offers the customer's previous decision at that kiosk made
within ``lifetime`` (decided again: an offer shown since may be capped now); nothing is
sent when the rule's campaign is not offered, so the kiosk keeps what it has.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bankiot_core import downlink
from cloud.analytics.store import audience_attributes
from cloud.customers import consent
from cloud.customers.models import Customer, CustomerWearable
from cloud.fleet.models import Branch, Device
from cloud.ingest.models import utc
from cloud.offers import decisions
from cloud.offers.eligibility import VERSION, CampaignView, decide
from cloud.offers.models import Campaign, OfferDecision, OfferResult

log = logging.getLogger(__name__)

BRANCH_PURPOSE = "presence_branch"
RESULT_KINDS = {"offer_shown": "shown", "offer_accepted": "accepted", "offer_declined": "declined"}
DEFAULT_LIFETIME = dt.timedelta(minutes=30)
ENDED_WINDOW = dt.timedelta(days=30)  # ended campaigns still named in reasons this long


def campaign_view(row: Campaign) -> CampaignView:
    """What the decision reads of a campaign row."""
    return CampaignView(
        id=row.id,
        name=row.name,
        version=row.version,
        channel=row.channel,
        status=row.status,
        starts_at=utc(row.starts_at),
        ends_at=utc(row.ends_at),
        cap_count=row.cap_count,
        cap_days=row.cap_days,
        audience=row.audience,
        title=row.title,
        text=row.text,
    )


def attributes(
    session: Session, customer: Customer, branch_code: str | None, now: dt.datetime
) -> dict[str, Any]:
    """The customer's attributes for audience rules (``audience.ATTRIBUTES``). Analytics'
    segment and income band are null until the customer's profile is stored."""
    wearables = session.scalar(
        select(func.count())
        .select_from(CustomerWearable)
        .where(CustomerWearable.customer_id == customer.id)
    )
    purposes = [a.purpose.name for a in consent.answers(session, customer.id) if a.granted]
    return {
        "relationship_days": max(0, (now - utc(customer.created_at)).days),
        "wearables": int(wearables or 0),
        "branch": branch_code,
        "purposes": purposes,
        **audience_attributes(session, customer.id),
    }


def _customer_of(session: Session, wearable: str) -> Customer | None:
    return session.scalar(
        select(Customer)
        .join(CustomerWearable, CustomerWearable.customer_id == Customer.id)
        .where(CustomerWearable.address == wearable)
    )


def find_campaign(session: Session, wanted: str) -> Campaign | None:
    """A campaign by its id (digits) or its name."""
    text = wanted.strip()
    if text.isdigit() and len(text) < 12:
        return session.get(Campaign, int(text))
    return session.scalar(select(Campaign).where(Campaign.name == text))


def branch_of(session: Session, gateway: str) -> tuple[int | None, str | None]:
    """The branch (id, code) of device ``gateway``; (None, None) when it has none."""
    found = session.execute(
        select(Device.branch_id, Branch.code)
        .outerjoin(Branch, Branch.id == Device.branch_id)
        .where(Device.uid == gateway)
    ).first()
    return (None, None) if found is None else (found[0], found[1])


class KioskOffers:
    """Ingest's hooks for the offers application (module docstring). ``lifetime``: how long
    the kiosk keeps a customer's offers."""

    def __init__(self, lifetime: dt.timedelta = DEFAULT_LIFETIME) -> None:
        self.lifetime = lifetime

    # ---- in the batch's transaction -------------------------------------------------------

    def stage(self, session: Session, gateway: str, kiosk: Iterable[Mapping[str, Any]]) -> int:
        """Stage an ``offer_results`` row per offer event of ``kiosk`` (a batch's kiosk
        rows, after consent gating); how many."""
        staged = 0
        branch_id: int | None = None
        looked_up = False
        for event in kiosk:
            outcome = RESULT_KINDS.get(event["kind"])
            if outcome is None or event["wearable"] is None:
                continue
            if not looked_up:
                branch_id, looked_up = branch_of(session, gateway)[0], True
            result = self._result(session, gateway, event, outcome, branch_id)
            if result is not None:
                session.add(result)
                staged += 1
        if staged:
            session.flush()
        return staged

    def _result(
        self,
        session: Session,
        gateway: str,
        event: Mapping[str, Any],
        outcome: str,
        branch_id: int | None,
    ) -> OfferResult | None:
        detail = str(event["detail"])
        campaign_id = int(detail) if detail.isdigit() and len(detail) < 12 else None
        if campaign_id is None or session.get(Campaign, campaign_id) is None:
            log.warning("kiosk %s: offer result for unknown campaign %r", gateway, detail)
            return None
        customer = _customer_of(session, event["wearable"])
        if customer is None:
            return None  # unpaired since: nobody's result
        seen = session.scalar(
            select(OfferResult.id).where(
                OfferResult.gateway == gateway, OfferResult.event_id == event["event_id"]
            )
        )
        if seen is not None:
            return None
        return OfferResult(
            campaign_id=campaign_id,
            customer_id=customer.id,
            channel="kiosk",
            outcome=outcome,
            at=event["occurred_at"],
            gateway=gateway,
            event_id=event["event_id"],
            branch_id=branch_id,
        )

    # ---- after the commit -----------------------------------------------------------------

    def after(
        self,
        session: Session,
        gateway: str,
        checkins: Sequence[tuple[int, str]],
        now: dt.datetime,
    ) -> list[bytes]:
        """Decide, log and stage the decisions for ``checkins`` ((event id, wearable
        address) of a batch's check-ins at ``gateway``); the OFFERS messages to seal for the
        kiosk (plaintext). The caller commits, then seals and sends."""
        if not checkins:
            return []
        branch_id, branch_code = branch_of(session, gateway)
        out = []
        for event_id, wearable in checkins:
            message = self._decide_one(
                session, gateway, event_id, wearable, branch_id, branch_code, now
            )
            if message is not None:
                out.append(message)
        return out

    def _decide_one(
        self,
        session: Session,
        gateway: str,
        event_id: int,
        wearable: str,
        branch_id: int | None,
        branch_code: str | None,
        now: dt.datetime,
    ) -> bytes | None:
        customer = _customer_of(session, wearable)
        base = {"at": now, "gateway": gateway, "event_id": event_id, "branch_id": branch_id}
        if customer is None:
            decisions.record(
                session,
                **base,
                customer_id=None,
                offered=(),
                reasons=("the wearable is no customer's: no offers",),
                inputs={"customer": None},
                version=VERSION,
            )
            return None
        consented = consent.consented(session, wearable, BRANCH_PURPOSE)
        attrs: dict[str, Any] = {}
        campaigns: list[CampaignView] = []
        shown: list[tuple[int, dt.datetime]] = []
        if consented:  # without consent, nothing more about the customer is read
            attrs = attributes(session, customer, branch_code, now)
            campaigns = self._campaigns(session, now)
            shown = self._shown(session, customer.id, campaigns, now)
        decision = decide(campaigns, attrs, shown, now, consented)
        inputs = decision.inputs(attrs, consented)
        inputs["campaign_versions"] = {str(c.id): c.version for c in campaigns}
        row = decisions.record(
            session,
            **base,
            customer_id=customer.id,
            offered=[c.id for c in decision.offered],
            reasons=decision.reasons,
            inputs=inputs,
            version=VERSION,
        )
        if row is None or not consented:
            return None
        address = bytes.fromhex(wearable.replace(":", ""))
        expires = int((now + self.lifetime).timestamp())
        items = [(c.id, c.title, c.text) for c in decision.offered]
        return downlink.encode_offers(address, expires, items)

    # ---- a rule's offer action --------------------------------------------------------------

    def for_rule(
        self,
        session: Session,
        *,
        gateway: str,
        wearable: str,
        campaign: str,
        rule: str,
        decision_id: int,
        now: dt.datetime,
    ) -> bytes | None:
        """Decide and log rule ``rule``'s offer of ``campaign`` (an id or a name) to the
        customer of ``wearable`` at kiosk ``gateway`` (module docstring); the OFFERS message
        for the kiosk (plaintext), or None when nothing is to be sent."""
        branch_id, branch_code = branch_of(session, gateway)
        source: dict[str, Any] = {"rule": rule, "rule_decision": decision_id, "campaign": campaign}
        base = {"at": now, "gateway": gateway, "event_id": -decision_id, "branch_id": branch_id}
        customer = _customer_of(session, wearable)
        kind = session.scalar(select(Device.kind).where(Device.uid == gateway))
        refusal = None
        if customer is None:
            refusal = "the wearable is no customer's: no offers"
        elif kind != "kiosk":
            refusal = "%s is not a kiosk: offers are shown on kiosks only" % gateway
        if refusal is not None:
            decisions.record(
                session,
                **base,
                customer_id=None if customer is None else customer.id,
                offered=(),
                reasons=(refusal,),
                inputs={**source, "customer": None if customer is None else customer.id},
                version=VERSION,
            )
            return None
        assert customer is not None
        consented = consent.consented(session, wearable, BRANCH_PURPOSE)
        wanted = find_campaign(session, campaign) if consented else None
        attrs: dict[str, Any] = {}
        campaigns: list[CampaignView] = []
        shown: list[tuple[int, dt.datetime]] = []
        if wanted is not None:  # without consent, nothing more about the customer is read
            attrs = attributes(session, customer, branch_code, now)
            held = self._held(session, customer.id, gateway, now)
            rows = [wanted, *(session.get(Campaign, cid) for cid in held if cid != wanted.id)]
            campaigns = [campaign_view(row) for row in rows if row is not None]
            shown = self._shown(session, customer.id, campaigns, now)
        decision = decide(campaigns, attrs, shown, now, consented)
        reasons = decision.reasons
        if consented and wanted is None:
            reasons = ("no campaign %r: no offers" % campaign,)
        inputs = {**source, **decision.inputs(attrs, consented)}
        inputs["campaign_versions"] = {str(c.id): c.version for c in campaigns}
        offered = [c.id for c in decision.offered]
        if wanted is not None and wanted.id not in offered:  # nothing is sent: say why
            reasons = tuple(v.reason for v in decision.verdicts if v.campaign == wanted.id)
        if wanted is None or wanted.id not in offered:
            offered = []
        row = decisions.record(
            session,
            **base,
            customer_id=customer.id,
            offered=offered,
            reasons=reasons,
            inputs=inputs,
            version=VERSION,
        )
        if row is None or not offered:
            return None
        address = bytes.fromhex(wearable.replace(":", ""))
        expires = int((now + self.lifetime).timestamp())
        items = [(c.id, c.title, c.text) for c in decision.offered]
        return downlink.encode_offers(address, expires, items)

    def _held(
        self, session: Session, customer_id: int, gateway: str, now: dt.datetime
    ) -> list[int]:
        """The campaigns the customer's newest decision at ``gateway`` offered, if the
        kiosk still holds them (decided within ``lifetime``)."""
        found = session.scalar(
            select(OfferDecision.offered)
            .where(
                OfferDecision.customer_id == customer_id,
                OfferDecision.gateway == gateway,
                OfferDecision.at >= now - self.lifetime,
            )
            .order_by(OfferDecision.at.desc(), OfferDecision.id.desc())
            .limit(1)
        )
        return [int(cid) for cid in found or ()]

    def _campaigns(self, session: Session, now: dt.datetime) -> list[CampaignView]:
        rows = session.scalars(
            select(Campaign).where(
                Campaign.channel == "kiosk",
                Campaign.status == "active",
                Campaign.ends_at > now - ENDED_WINDOW,
            )
        )
        return [campaign_view(row) for row in rows]

    def _shown(
        self,
        session: Session,
        customer_id: int,
        campaigns: Sequence[CampaignView],
        now: dt.datetime,
    ) -> list[tuple[int, dt.datetime]]:
        if not campaigns:
            return []
        since = now - dt.timedelta(days=max(c.cap_days for c in campaigns))
        rows = session.execute(
            select(OfferResult.campaign_id, OfferResult.at).where(
                OfferResult.customer_id == customer_id,
                OfferResult.outcome == "shown",
                OfferResult.at >= since,
            )
        ).all()
        return [(cid, utc(at)) for cid, at in rows]
