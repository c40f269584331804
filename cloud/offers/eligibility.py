"""Which campaigns to offer a customer now, and why: the decision itself, pure.

``decide`` takes everything as arguments (the campaigns, the customer's attributes, when
their offers were shown before, the consent, the time) and returns a ``Decision``: the
campaigns offered (at most ``MAX_OFFERS``, lowest id first), a verdict per campaign, and up to
four human-readable reasons. In order, a campaign is offered when:

1. the customer consents to presence in branches (``presence_branch``: a kiosk check-in is
   presence in a branch; without it, nothing is decided at all);
2. its channel is the one asking (``kiosk`` at a check-in; ``app`` or ``wearable`` for the
   inbox, ``cloud.notifications.offers``), and its status is ``active``;
3. now is within ``starts_at`` .. ``ends_at`` (the end excluded);
4. the customer is in its audience (``audience.evaluate``);
5. it was shown to the customer fewer than ``cap_count`` times in the last ``cap_days`` days
   (the frequency cap counts offers seen on screen, not offers sent: an offer a customer
   never asked to see is not spent).

``VERSION`` names this logic in every decision logged (with each campaign's own version in
the inputs), so a decision can be explained later even after the rules changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bankiot_core.downlink import MAX_OFFERS
from cloud.offers import audience

VERSION = "offers-1"
MAX_REASONS = 4


@dataclass(frozen=True)
class CampaignView:
    """What the decision reads of a campaign."""

    id: int
    name: str
    version: int
    channel: str
    status: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    cap_count: int
    cap_days: int
    audience: Any
    title: str = ""
    text: str = ""


@dataclass(frozen=True)
class Verdict:
    """One campaign's verdict: offered or not, and why."""

    campaign: int
    offered: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """The campaigns offered, every verdict, and the reasons (at most four)."""

    offered: tuple[CampaignView, ...]
    verdicts: tuple[Verdict, ...]
    reasons: tuple[str, ...]

    def inputs(self, attributes: Mapping[str, Any], consented: bool) -> dict[str, Any]:
        """What the decision read and concluded, for the log (JSON-ready)."""
        return {
            "consented": consented,
            "attributes": dict(attributes),
            "verdicts": [
                {"campaign": v.campaign, "offered": v.offered, "reason": v.reason}
                for v in self.verdicts
            ],
        }


def decide(
    campaigns: Iterable[CampaignView],
    attributes: Mapping[str, Any],
    shown: Sequence[tuple[int, dt.datetime]],
    now: dt.datetime,
    consented: bool,
    channel: str = "kiosk",
    purpose_title: str = "presence in branches",
) -> Decision:
    """The decision for one customer (module docstring). ``shown``: (campaign id, when)
    of every offer shown to the customer recently (enough to cover the longest cap);
    ``consented``: to the purpose the channel's offers need, ``purpose_title`` in the
    reason when not."""
    if not consented:
        reason = "no consent to %s: no offers decided" % purpose_title
        return Decision((), (), (reason,))
    offered: list[CampaignView] = []
    verdicts: list[Verdict] = []
    for campaign in sorted(campaigns, key=lambda c: c.id):
        ok, why = _judge(campaign, attributes, shown, now, channel)
        if ok and len(offered) >= MAX_OFFERS:
            ok, why = False, "not offered: %d offers at most at once" % MAX_OFFERS
        if ok:
            offered.append(campaign)
        label = "%s (campaign %d)" % (campaign.name, campaign.id)
        verdicts.append(Verdict(campaign.id, ok, "%s: %s" % (label, why)))
    return Decision(tuple(offered), tuple(verdicts), _reasons(verdicts))


def _judge(
    campaign: CampaignView,
    attributes: Mapping[str, Any],
    shown: Sequence[tuple[int, dt.datetime]],
    now: dt.datetime,
    channel: str,
) -> tuple[bool, str]:
    if campaign.channel != channel:
        return False, "for the %s channel, not %s" % (campaign.channel, channel)
    if campaign.status != "active":
        return False, "campaign is %s" % campaign.status
    if now < campaign.starts_at:
        return False, "starts %s" % campaign.starts_at.date().isoformat()
    if now >= campaign.ends_at:
        return False, "ended %s" % campaign.ends_at.date().isoformat()
    ok, why = audience.evaluate(campaign.audience, attributes)
    if not ok:
        return False, "not in the audience: %s" % why
    since = now - dt.timedelta(days=campaign.cap_days)
    seen = sum(1 for cid, at in shown if cid == campaign.id and at >= since)
    if seen >= campaign.cap_count:
        return False, "capped: shown %d times in %d days (at most %d)" % (
            seen,
            campaign.cap_days,
            campaign.cap_count,
        )
    return True, "offered (%s)" % why


def _reasons(verdicts: Sequence[Verdict]) -> tuple[str, ...]:
    """Up to four reasons: offers first, then the rest; the last says how many more."""
    if not verdicts:
        return ("no campaign is running",)
    ordered = [v for v in verdicts if v.offered] + [v for v in verdicts if not v.offered]
    if len(ordered) <= MAX_REASONS:
        return tuple(v.reason for v in ordered)
    head = [v.reason for v in ordered[: MAX_REASONS - 1]]
    head.append("and %d more campaigns (see the inputs)" % (len(ordered) - MAX_REASONS + 1))
    return tuple(head)
