"""Balance statistics over a window of days: mean, minimum, volatility.

The series is the end-of-day balance of every calendar day in the window, carried forward
over days without transactions (a balance held for ten days weighs ten days). Volatility is
the population standard deviation of that series, in money units: how far the balance
typically sits from its mean.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from cloud.analytics.records import AnalyticsError


@dataclass(frozen=True, slots=True)
class BalanceStats:
    """Statistics of the daily balance over ``days`` days ending on ``end`` (inclusive)."""

    end: date
    days: int
    mean: float
    minimum: Decimal
    volatility: float


def daily_series(
    end_of_day: dict[date, Decimal], opening: Decimal, end: date, days: int
) -> list[Decimal]:
    """End-of-day balances for the ``days`` days up to ``end``, carried forward.

    ``end_of_day`` maps days with transactions to their closing balance; ``opening`` is the
    balance before the earliest of them.
    """
    if days < 1:
        raise AnalyticsError("balance window must be at least one day, got %d" % days)
    start = end - timedelta(days=days - 1)
    current = opening
    for day in sorted(end_of_day):
        if day < start:
            current = end_of_day[day]
    series = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        current = end_of_day.get(day, current)
        series.append(current)
    return series


def balance_stats(series: list[Decimal], end: date) -> BalanceStats:
    """Mean, minimum and volatility of a daily balance series ending on ``end``."""
    if not series:
        raise AnalyticsError("balance statistics need at least one day")
    values = [float(v) for v in series]
    return BalanceStats(
        end=end,
        days=len(series),
        mean=statistics.fmean(values),
        minimum=min(series),
        volatility=statistics.pstdev(values),
    )
