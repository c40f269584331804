"""Recurring series from one payee's payments: cadence, amount, next due date.

A series is the longest chain of one payee's payments in one direction in which

- each interval fits one cadence's window (table ``CADENCES``: weekly 6-8 days, fortnightly
  12-16, four-weekly 27-29, monthly 26-35 because a monthly payment moves to the working day
  before or after a weekend or holiday, quarterly 84-98, yearly 350-380); and
- each amount is within ``AMOUNT_TOLERANCE`` (x0.7 to x1.43) of the one before, so a salary
  can rise or a bill change while a one-off payment far from it (a bonus, a refund) is left
  out as an extra instead of breaking the series.

Payments that do not fit (a bonus on top of a salary, an extra top-up) are skipped, not
counted against the series, but the chain must hold at least three quarters of the payee's payments
within its span (``MIN_REGULARITY``) so that a shop visited often with amounts that happen to
chain is not a subscription. Cadence ties go to the narrower window, except that four-weekly
and monthly tie unless every interval is exactly 28 days: a series paid every 28 days is
four-weekly, one on the same day each month is monthly.
"""

from __future__ import annotations

import calendar
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from statistics import median

from cloud.analytics.categories import category_of

AMOUNT_TOLERANCE = Decimal("1.43")
MIN_REGULARITY = 0.75
AVERAGE_MONTH_DAYS = 30.44


@dataclass(frozen=True, slots=True)
class Cadence:
    """A payment rhythm: its name, mean period in days and the interval window accepted."""

    name: str
    period_days: float
    low: int
    high: int


CADENCES: tuple[Cadence, ...] = (
    Cadence("weekly", 7.0, 6, 8),
    Cadence("fortnightly", 14.0, 12, 16),
    Cadence("four-weekly", 28.0, 27, 29),
    Cadence("monthly", AVERAGE_MONTH_DAYS, 26, 35),
    Cadence("quarterly", 91.31, 84, 98),
    Cadence("yearly", 365.25, 350, 380),
)


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment of a payee in one direction: date, absolute amount, MCC, bank code."""

    booked: date
    amount: Decimal
    mcc: int | None = None
    bank_code: str | None = None


@dataclass(frozen=True, slots=True)
class RecurringSeries:
    """A payee's recurring payments in one direction (``credit`` or ``debit``)."""

    payee: str
    direction: str
    cadence: Cadence
    dates: tuple[date, ...]
    amounts: tuple[Decimal, ...]
    mcc: int | None
    bank_code: str | None

    @property
    def first(self) -> date:
        """The first payment of the chain."""
        return self.dates[0]

    @property
    def last(self) -> date:
        """The latest payment of the chain."""
        return self.dates[-1]

    @property
    def count(self) -> int:
        """How many payments the chain holds."""
        return len(self.dates)

    @property
    def typical(self) -> Decimal:
        """The current amount: the median of the last three payments."""
        return Decimal(median(self.amounts[-3:])).quantize(Decimal("0.01"))

    @property
    def category(self) -> str:
        """The spending category of its MCC (``transfers`` without one)."""
        return category_of(self.mcc)

    @property
    def monthly(self) -> Decimal:
        """The typical amount as a monthly equivalent."""
        factor = Decimal(repr(AVERAGE_MONTH_DAYS / self.cadence.period_days))
        return (self.typical * factor).quantize(Decimal("0.01"))

    @property
    def next_due(self) -> date:
        """When the next payment is expected after the latest one."""
        return self.due_after(self.last)

    def due_after(self, day: date) -> date:
        """The first expected payment date strictly after ``day`` (``day`` >= last)."""
        due = self.last
        while due <= day:
            due = _step(self, due)
        return due

    def is_active(self, as_of: date) -> bool:
        """True while the next payment is not overdue by more than half a period."""
        grace = timedelta(days=round(self.cadence.period_days * 1.5) + 3)
        return as_of - self.last <= grace


def _step(series: RecurringSeries, day: date) -> date:
    """One period on from ``day``: the series' usual day of month for monthly and longer."""
    months = {"monthly": 1, "quarterly": 3, "yearly": 12}.get(series.cadence.name)
    if months is None:
        return day + timedelta(days=round(series.cadence.period_days))
    usual = Counter(d.day for d in series.dates).most_common(1)[0][0]
    year, month = divmod(day.month - 1 + months, 12)
    year, month = day.year + year, month + 1
    return date(year, month, min(usual, calendar.monthrange(year, month)[1]))


def _chain(payments: list[Payment], cadence: Cadence) -> list[int]:
    """The longest chain (latest end on ties) of payment indices under one cadence."""
    count = len(payments)
    best = [1] * count
    previous = [-1] * count
    for i in range(count):
        day, amount = payments[i].booked, payments[i].amount
        for j in range(i - 1, -1, -1):
            gap = (day - payments[j].booked).days
            if gap > cadence.high:
                break
            if gap < cadence.low or best[j] + 1 <= best[i]:
                continue
            other = payments[j].amount
            if other <= 0 or amount <= 0:
                continue
            ratio = amount / other
            if 1 / AMOUNT_TOLERANCE <= ratio <= AMOUNT_TOLERANCE:
                best[i] = best[j] + 1
                previous[i] = j
    end = max(range(count), key=lambda k: (best[k], k))
    chain = []
    while end >= 0:
        chain.append(end)
        end = previous[end]
    chain.reverse()
    return chain


def detect_series(
    payee: str, direction: str, payments: list[Payment], minimum: int = 2
) -> RecurringSeries | None:
    """The recurring series in one payee's ``payments`` (date order), or None.

    ``minimum`` is the fewest payments that make a series (two: a series can be new; callers
    that need it confirmed ask for ``count >= 3``).
    """
    if len(payments) < minimum:
        return None
    found: tuple[int, list[int], Cadence] | None = None
    for cadence in CADENCES:
        chain = _chain(payments, cadence)
        if len(chain) < minimum:
            continue
        within = chain[-1] - chain[0] + 1
        if len(chain) / within < MIN_REGULARITY:
            continue
        if found is None or len(chain) > found[0]:
            found = (len(chain), chain, cadence)
        elif (
            cadence.name == "monthly" and found[2].name == "four-weekly" and len(chain) == found[0]
        ):
            gaps = {(payments[b].booked - payments[a].booked).days for a, b in pairwise(chain)}
            if gaps != {28}:
                found = (len(chain), chain, cadence)
    if found is None:
        return None
    _, chain, cadence = found
    members = [payments[i] for i in chain]
    mccs = Counter(p.mcc for p in members).most_common(1)[0][0]
    codes = Counter(p.bank_code for p in members).most_common(1)[0][0]
    return RecurringSeries(
        payee=payee,
        direction=direction,
        cadence=cadence,
        dates=tuple(p.booked for p in members),
        amounts=tuple(p.amount for p in members),
        mcc=mccs,
        bank_code=codes,
    )
