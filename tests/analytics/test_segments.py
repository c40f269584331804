"""Segments and bands (``cloud.analytics.segments``): tercile cut points on hand-counted
populations, fixed cut points for small ones, the rule order, and the same answer whatever
the order customers come in."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from cloud.analytics.segments import (
    FIXED_BALANCE,
    FIXED_INCOME,
    MIN_POPULATION,
    Figures,
    band,
    cut_points,
    segment_all,
)


def figures(income: int, mean: int, minimum: int = 0, accounts: int = 1, ccy: str = "EUR"):
    return Figures(ccy, Decimal(income), Decimal(mean), Decimal(minimum), accounts)


def test_tercile_cut_points_of_thirty_values() -> None:
    values = [Decimal(v) for v in range(100, 3100, 100)]  # 100 .. 3000, 30 values
    # ranks 10 and 20 (nearest rank, lower): 1000 and 2000
    assert cut_points(values, FIXED_INCOME) == (Decimal(1000), Decimal(2000))
    cuts = cut_points(values, FIXED_INCOME)
    assert [band(Decimal(v), cuts) for v in (1000, 1001, 2000, 2001)] == [
        "low",
        "middle",
        "middle",
        "high",
    ]


def test_few_customers_use_the_fixed_cut_points() -> None:
    values = [Decimal(v) for v in range(MIN_POPULATION - 1)]
    assert cut_points(values, FIXED_BALANCE) == FIXED_BALANCE


def test_each_segment_by_its_rule_in_order() -> None:
    population = {
        1: figures(0, 9000),  # no regular income: starter, whatever the balance
        2: figures(2500, 100, minimum=-50),  # overdrawn, low balance
        3: figures(4000, 8000),  # high income, high balance
        4: figures(2000, 8000),  # high balance only
        5: figures(4000, 1000),  # high income only
        6: figures(2000, 1000, accounts=2),
        7: figures(2000, 1000),
        8: figures(2500, 100),  # low balance, never overdrawn
    }
    result = segment_all(population)
    assert {k: a.segment for k, a in result.items()} == {
        1: "starter",
        2: "stretched",
        3: "affluent",
        4: "saver",
        5: "high_earner",
        6: "multi_account",
        7: "everyday",
        8: "everyday",
    }
    assert result[1].income_band == "none" and result[3].income_band == "high"
    assert (result[2].balance_band, result[4].balance_band) == ("low", "high")


def test_currencies_are_banded_apart() -> None:
    gbp = {i: figures(1000 + 100 * i, 1000, ccy="GBP") for i in range(30)}
    eur = {100 + i: figures(10 * i + 10, 1000) for i in range(30)}
    result = segment_all({**gbp, **eur})
    assert result[29].income_band == "high" and result[129].income_band == "high"
    assert result[0].income_band == "low" and result[100].income_band == "low"


@given(st.lists(st.tuples(st.integers(0, 9000), st.integers(-500, 20000)), max_size=60))
def test_the_same_population_in_any_order_gets_the_same_segments(rows) -> None:
    population = {i: figures(income, mean, min(mean, 0)) for i, (income, mean) in enumerate(rows)}
    keys = list(population)
    random.Random(len(keys)).shuffle(keys)
    shuffled = {k: population[k] for k in keys}
    assert segment_all(shuffled) == segment_all(population)
