"""The applications' pure decisions: affordability bands, the loan's annuity and reasons,
holding alerts' once-per-crossing state machine."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cloud.analytics.profile import compute_profile
from cloud.apps import affordability, holdings, underwriting
from cloud.apps.underwriting import Evidence
from tests.cloud.apps_actions import history

TODAY = dt.date(2026, 11, 29)


@pytest.mark.parametrize(
    ("salary", "rent", "outcome", "balance"),
    [
        (3000, 1000, "cashback", "£9,850"),  # 5 x (3,000 - 1,000) - 10 x 15
        (1500, 1400, "instalments", "£350"),
        (1500, 1500, "warning", "-£150"),
    ],
)
def test_affordability_bands(salary: int, rent: int, outcome: str, balance: str) -> None:
    profile = compute_profile(history(TODAY, salary, rent, 28, 15), TODAY, "GBP")
    verdict = affordability.decide(profile)
    assert (verdict.outcome, verdict.reasons[0]) == (outcome, "balance " + balance)
    assert len(verdict.reasons) == 4


def test_monthly_payment_is_the_standard_annuity() -> None:
    # 10,000 at 12% a year over 12 months: 888.49 (any loan table); no interest: a share.
    assert underwriting.monthly_payment(Decimal(10000), 12, Decimal("0.12")) == Decimal("888.49")
    assert underwriting.monthly_payment(Decimal(1200), 12, Decimal(0)) == Decimal("100.00")


def test_loan_reasons_are_specific_and_at_most_four() -> None:
    profile = compute_profile(history(TODAY, 1500, 1500, 28, 15), TODAY, "GBP")
    sensors = [Evidence("s%d" % i, True, 0, 0) for i in range(5)]
    verdict = underwriting.decide(Decimal(30000), 12, profile, sensors)
    assert verdict.outcome == "declined"
    assert len(verdict.reasons) == 4
    assert verdict.reasons[0].startswith("payments of £")
    assert verdict.reasons[1].startswith("balance expected to go below zero")
    assert all("model" not in reason and "score" not in reason for reason in verdict.reasons)
    alarms = underwriting.decide(
        Decimal(1000),
        12,
        compute_profile(history(TODAY, 3000, 1000, 28, 15), TODAY, "GBP"),
        [Evidence("safe-1", True, 40, 2)],
    )
    assert (alarms.outcome, alarms.reasons) == (
        "referred",
        ("collateral sensor safe-1 reported 2 threshold alarms in the last 30 days",),
    )


@pytest.mark.parametrize(
    ("direction", "prices", "fired"),
    [
        ("above", ["90", "100", "101", "99", "100"], [False, True, False, False, True]),
        ("below", ["120", "100", "99", "101", "50"], [False, True, False, False, True]),
    ],
)
def test_alerts_fire_once_per_crossing(
    direction: str, prices: list[str], fired: list[bool]
) -> None:
    armed, out = True, []
    for price in prices:
        notify, armed = holdings.step(direction, Decimal(100), armed, Decimal(price))
        out.append(notify)
    assert out == fired


def test_every_life_event_kind_has_a_suggestion() -> None:
    from cloud.analytics.events import KINDS

    assert set(holdings.SUGGESTIONS) == set(KINDS)
