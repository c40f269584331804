"""Carrying out what a rule decided (the imperative shell's hands).

``Executor.stage`` runs in the worker's transaction, beside the decision's row:

- ``callback``, ``ticket``, ``alert``: a ``service_requests`` row at the branch of the
  gateway that saw the event, for branch staff (``views``); stored with the decision or not
  at all. (Fleet alerts, ``cloud.fleet.alerts``, are a device's conditions that resolve
  themselves; a rule's alert is a one-off request to look, so it is a service request.)
- ``notify``: a ``notifications`` row in the customer's inbox (``cloud.notifications``,
  source ``rule:<rule id>``, the action's channel and message), stored with the decision or
  not at all; a decision about no customer (a device rule's) notifies nobody (logged).
- ``offer``: ``cloud.offers.show_offer`` (looked up once, at import: the offers area may
  not be installed), called with the session and keywords ``gateway``, ``subject``,
  ``offer``, ``rule``, ``decision_id``, ``now`` and ``kiosk`` (whether a downlink can send
  a kiosk's offers): it decides and logs the offer of that campaign (consent, cap, ...:
  ``offer_decisions`` beside the rule's decision). A kiosk campaign's OFFERS message, which
  the ``OfferDownlink`` seals for the kiosk where the event happened in the same transaction
  (its downlink number taken there); an app or wearable campaign's notification, staged in
  the customer's inbox. In a savepoint: an offer that fails costs the pass nothing (logged,
  counted). Without the offers area, a logged no-op; without a downlink, kiosk offers are
  not decided (logged).

and returns what must wait for the commit (never act on a decision that was rolled back),
run by the worker afterwards, each at most once:

- a notification stored: pushed to the ``NotificationChannel`` (``cloud.notifications.push``:
  where a phone's push service plugs in); the default ``LoggingChannel`` logs the
  notification's id, channel and source, never the customer, the text or an address;
- ``offer`` at a kiosk: the sealed OFFERS message published (``OfferDownlink.publish``).

A failing post-commit action is logged and counted, never retried: the decision row says
what was meant, the notification is in the inbox, and a customer is not notified twice (an
OFFERS message lost is not sent again either: it concerns one visit, as a check-in's does).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.orm import Session

from bankiot_core import downlink
from cloud.events.engine import Decision
from cloud.events.models import OPEN, ServiceRequest
from cloud.events.rules import Action
from cloud.fleet import delivery
from cloud.fleet.delivery import Outgoing
from cloud.ingest.keys import KeySource
from cloud.ingest.store import take_downlink_seq
from cloud.notifications import inbox
from cloud.notifications.push import LoggingChannel, Note, NotificationChannel, notify

log = logging.getLogger(__name__)

_offers_show: Callable[..., bytes | Note | None] | None
try:  # the offers area may not be installed (another part of the product)
    from cloud.offers import show_offer as _offers_show
except ImportError:
    _offers_show = None

OFFERS_INSTALLED = _offers_show is not None
STAFF_KINDS = ("callback", "ticket", "alert")
RULE_TITLE = "A message from your bank"  # a rule's notification: its message is the text
Later = Callable[[], None]
__all__ = ["Executor", "LoggingChannel", "NotificationChannel", "OfferDownlink", "SealedDownlink"]


class OfferDownlink(Protocol):
    """How a rule's offer reaches its kiosk: sealed in the worker's transaction, published
    after the commit."""

    def seal(self, session: Session, gateway: str, message: bytes) -> Outgoing | None:
        """``message`` sealed for ``gateway`` (its downlink number taken in ``session``);
        None when the gateway cannot be reached now."""
        ...

    def publish(self, outgoing: Outgoing) -> None:
        """Send a sealed message (after the commit)."""
        ...


class SealedDownlink:
    """An ``OfferDownlink`` on the gateway's own MQTT downlink topic, sealed as the fleet's
    delivery seals (``cloud.fleet.delivery``: the key version of the gateway's newest batch,
    nothing for a revoked or never-heard gateway), handed to ``publish`` (for example a
    synchronous MQTT client's, QoS 1). A gateway whose newest batch came over CoAP gets
    its messages only in responses, which a rule's offer cannot wait for: not sent."""

    def __init__(self, keys: KeySource, publish: Callable[[Outgoing], None]) -> None:
        self.keys = keys
        self._publish = publish

    def seal(self, session: Session, gateway: str, message: bytes) -> Outgoing | None:
        """See ``OfferDownlink.seal``."""
        found = delivery.gateway_ring(session, self.keys, gateway)  # the fleet's own rule
        if found is None or found[1] in delivery.RESPONSE_CHANNELS:
            log.info("offers for %s not sent: it is not served on its MQTT topic", gateway)
            return None
        ring, topic = found[0], downlink.downlink_topic(gateway)
        sealed = downlink.seal_downlink(ring, take_downlink_seq(session, gateway), message, topic)
        return Outgoing(topic, sealed, "offers for %s" % gateway)

    def publish(self, outgoing: Outgoing) -> None:
        """See ``OfferDownlink.publish``."""
        self._publish(outgoing)


class Executor:
    """Carries out decisions (module docstring)."""

    def __init__(
        self,
        channel: NotificationChannel | None = None,
        show_offer: Callable[..., bytes | Note | None] | None = _offers_show,
        offers: OfferDownlink | None = None,
    ) -> None:
        self.channel: NotificationChannel = channel or LoggingChannel()
        self.show_offer = show_offer
        self.offers = offers
        self.failures = 0

    def stage(
        self, session: Session, decision: Decision, decision_id: int, now: dt.datetime
    ) -> list[Later]:
        """Write the decision's staff requests; return its post-commit actions."""
        later: list[Later] = []
        rows = []
        for action in decision.actions:
            if action.kind in STAFF_KINDS:
                rows.append(_request(decision, decision_id, action, now))
            elif action.kind == "notify":
                later.extend(self._notify(session, decision, action, now))
            elif action.kind == "app":
                continue  # an application (cloud.apps) reads the stored decision
            else:
                later.extend(self._offer(session, decision, decision_id, action, now))
        if rows:
            session.execute(insert(ServiceRequest), rows)
        return later

    def run_later(self, later: list[Later]) -> None:
        """Run post-commit actions; a failure is logged and counted."""
        for item in later:
            try:
                item()
            except Exception:
                self.failures += 1
                log.exception("a rule's action failed after its decision was stored")

    def _notify(
        self, session: Session, decision: Decision, action: Action, now: dt.datetime
    ) -> list[Later]:
        """Stage the notification in the customer's inbox; its push after the commit."""
        if decision.customer_id is None:
            log.info("rule %s: notify about no customer: nobody to notify", decision.rule)
            return []
        note = inbox.add(
            session,
            customer_id=decision.customer_id,
            channel=action.channel,
            source="rule:%s" % decision.rule,
            title=RULE_TITLE,
            text=action.message,
            now=now,
        )
        return [lambda: notify(self.channel, note)]

    def _offer(
        self,
        session: Session,
        decision: Decision,
        decision_id: int,
        action: Action,
        now: dt.datetime,
    ) -> list[Later]:
        """Decide, log and seal (kiosk) or stage (inbox) the offer in a savepoint (module
        docstring); what publishes or pushes it after the commit."""
        show, offers = self.show_offer, self.offers
        if show is None:
            why = "the offers area is not installed"
            log.info("offer %r of rule %s not shown: %s", action.offer, decision.rule, why)
            return []
        sealed: Outgoing | None = None
        try:
            with session.begin_nested():
                result = show(
                    session,
                    gateway=decision.gateway,
                    subject=decision.subject,
                    offer=action.offer,
                    rule=decision.rule,
                    decision_id=decision_id,
                    now=now,
                    kiosk=offers is not None,
                )
                if isinstance(result, bytes) and offers is not None:
                    sealed = offers.seal(session, decision.gateway, result)
        except Exception:
            self.failures += 1
            log.exception("offer %r of rule %s not decided", action.offer, decision.rule)
            return []
        if isinstance(result, Note):
            note = result
            return [lambda: notify(self.channel, note)]
        if sealed is None or offers is None:
            return []
        outgoing, downlink_ = sealed, offers
        return [lambda: downlink_.publish(outgoing)]


def _request(
    decision: Decision, decision_id: int, action: Action, now: dt.datetime
) -> dict[str, Any]:
    return {
        "kind": action.kind,
        "state": OPEN,
        "branch_id": decision.branch_id,
        "gateway": decision.gateway,
        "subject": decision.subject,
        "customer_id": decision.customer_id,
        "decision_id": decision_id,
        "rule_id": decision.rule,
        "rule_version": decision.version,
        "event_id": decision.event_id,
        "severity": action.severity,
        "message": action.message,
        "created_at": now,
    }
