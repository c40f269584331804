"""Risk-aware shopping's decision, a pure function: can the customer afford to shop now?

Headroom = balance - the bills due before the next salary - recent discretionary spending
per day x the days until that salary (``BILL_HORIZON`` days when no salary is known).

| headroom | outcome | the customer gets |
|---|---|---|
| at least ``CASHBACK_FLOOR`` | ``cashback`` | cashback at this merchant |
| above 0 | ``instalments`` | the option to pay in instalments |
| 0 or less | ``warning`` | a gentle warning that money is tight before payday |

Every outcome carries at most four reasons, with the figures it used.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from cloud.analytics.events import money
from cloud.analytics.profile import Profile

VERSION = "shopping-1"
CASHBACK_FLOOR = Decimal(500)
BILL_HORIZON = 30  # days, when no next salary is known
CASHBACK = "cashback"
INSTALMENTS = "instalments"
WARNING = "warning"

MESSAGES = {
    CASHBACK: "%s: 2%% cashback on what you buy here today with your card.",
    INSTALMENTS: "%s: spread today's purchase over 3 interest-free instalments in the app.",
    WARNING: "Money looks tight before your next payday; a purchase at %s may leave bills "
    "unpaid. Your balance and upcoming bills are in the app.",
}


@dataclass(frozen=True)
class Affordability:
    """The decision: ``outcome``, the figures, up to four ``reasons``."""

    outcome: str
    headroom: Decimal
    reasons: tuple[str, ...]

    def message(self, merchant: str) -> str:
        """What the customer is told, at ``merchant``."""
        return MESSAGES[self.outcome] % merchant


def decide(profile: Profile) -> Affordability:
    """Affordability from ``profile`` (module docstring)."""
    cur = profile.currency
    if profile.next_salary is not None and profile.next_salary > profile.as_of:
        until, payday = profile.next_salary, "payday on %s" % profile.next_salary.isoformat()
    else:
        until, payday = profile.as_of + dt.timedelta(days=BILL_HORIZON), "the next 30 days"
    days = (until - profile.as_of).days
    bills = sum((b.amount for b in profile.upcoming_bills if b.due <= until), Decimal(0))
    spending = profile.spend_rate * days
    headroom = profile.balance - bills - spending
    if headroom >= CASHBACK_FLOOR:
        outcome = CASHBACK
    elif headroom > 0:
        outcome = INSTALMENTS
    else:
        outcome = WARNING
    reasons = (
        "balance %s" % money(profile.balance, cur),
        "bills of %s due before %s" % (money(bills, cur), payday),
        "spending about %s a day for %d days" % (money(profile.spend_rate, cur), days),
        "%s left before %s (cashback from %s)"
        % (money(headroom, cur), payday, money(CASHBACK_FLOOR, cur)),
    )
    return Affordability(outcome, headroom, reasons)
