"""Segments from a statistical study of income, accounts and balances: pure, deterministic.

``segment_all(figures)`` takes every profiled customer's figures (``Figures``: currency,
monthly income estimate, mean and minimum balance over 90 days, accounts) and returns each
customer's ``Assignment`` (income band, balance band, segment). Customers are compared only
with customers of the same currency.

Bands are terciles of the population: the cut points are the values at ranks n/3 and 2n/3
of the sorted figures (nearest rank, lower), and a value at or below a cut point falls in
the band below. Income is banded among customers with a regular income (> 0); customers
without one are ``none``. While fewer than ``MIN_POPULATION`` customers of a currency have a
figure, terciles say little, so fixed cut points are used instead (``FIXED_INCOME``,
``FIXED_BALANCE``, in the currency's units). Same input, same output, whatever the order.

Segments, the first rule that matches (``RULES``):

| segment | who |
|---|---|
| ``starter`` | no regular income detected |
| ``stretched`` | the balance went below zero in the last 90 days and its mean is in the low band |
| ``affluent`` | high income band and high balance band |
| ``saver`` | high balance band (income not high) |
| ``high_earner`` | high income band, balance not high |
| ``multi_account`` | two accounts or more, middle bands |
| ``everyday`` | everyone else |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

NONE, LOW, MIDDLE, HIGH = "none", "low", "middle", "high"
MIN_POPULATION = 20
FIXED_INCOME = (Decimal(1800), Decimal(3500))
FIXED_BALANCE = (Decimal(500), Decimal(5000))


@dataclass(frozen=True, slots=True)
class Figures:
    """What the segmentation reads of one customer's profile."""

    currency: str
    income: Decimal
    balance_mean: Decimal
    balance_min: Decimal
    accounts: int


@dataclass(frozen=True, slots=True)
class Assignment:
    """One customer's bands and segment."""

    income_band: str
    balance_band: str
    segment: str


def _rules() -> tuple[tuple[str, Callable[[Figures, str, str], bool]], ...]:
    return (
        ("starter", lambda f, i, b: i == NONE),
        ("stretched", lambda f, i, b: f.balance_min < 0 and b == LOW),
        ("affluent", lambda f, i, b: i == HIGH and b == HIGH),
        ("saver", lambda f, i, b: b == HIGH),
        ("high_earner", lambda f, i, b: i == HIGH),
        ("multi_account", lambda f, i, b: f.accounts >= 2),
        ("everyday", lambda f, i, b: True),
    )


RULES = _rules()
SEGMENTS = tuple(name for name, _ in RULES)


def cut_points(
    values: Sequence[Decimal], fixed: tuple[Decimal, Decimal]
) -> tuple[Decimal, Decimal]:
    """The tercile cut points of ``values`` (module docstring), or ``fixed`` for few values."""
    if len(values) < MIN_POPULATION:
        return fixed
    ordered = sorted(values)
    n = len(ordered)
    return ordered[max(0, n // 3 - 1)], ordered[max(0, 2 * n // 3 - 1)]


def band(value: Decimal, cuts: tuple[Decimal, Decimal]) -> str:
    """``low``, ``middle`` or ``high``: at or below a cut point is the band below."""
    if value <= cuts[0]:
        return LOW
    return MIDDLE if value <= cuts[1] else HIGH


def segment_all(figures: Mapping[int, Figures]) -> dict[int, Assignment]:
    """Every customer's bands and segment (module docstring), keyed like ``figures``."""
    by_currency: dict[str, list[int]] = {}
    for key in sorted(figures):
        by_currency.setdefault(figures[key].currency, []).append(key)
    result: dict[int, Assignment] = {}
    for keys in by_currency.values():
        incomes = [figures[k].income for k in keys if figures[k].income > 0]
        income_cuts = cut_points(incomes, FIXED_INCOME)
        balance_cuts = cut_points([figures[k].balance_mean for k in keys], FIXED_BALANCE)
        for key in keys:
            f = figures[key]
            income_band = band(f.income, income_cuts) if f.income > 0 else NONE
            balance_band = band(f.balance_mean, balance_cuts)
            name = next(n for n, test in RULES if test(f, income_band, balance_band))
            result[key] = Assignment(income_band, balance_band, name)
    return result
