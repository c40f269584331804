"""Recurring series and salary detection on hand-made series."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from cloud.analytics.profile import compute_profile
from cloud.analytics.recurring import Payment, detect_series
from tests.analytics.builders import GBP, every, in_order, monthly, tx


def _payments(days: list[date], amounts: list[str]) -> list[Payment]:
    return [Payment(d, Decimal(a)) for d, a in zip(days, amounts, strict=True)]


def _working_day_before(day: date) -> date:
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def test_monthly_salary_moved_off_weekends_is_monthly_with_the_usual_day_next():
    days = [_working_day_before(date(2025, m, 25)) for m in range(1, 13)]
    series = detect_series("ACME LTD", "credit", _payments(days, ["2500.00"] * 12))
    assert series is not None
    assert series.cadence.name == "monthly"
    assert series.count == 12
    # Mostly paid on the 25th: the next is expected on 25 January.
    assert series.next_due == date(2026, 1, 25)
    assert series.monthly == Decimal("2500.00")


def test_four_weekly_series_is_four_weekly_with_a_monthly_equivalent():
    days = [date(2025, 1, 3) + timedelta(days=28 * k) for k in range(8)]
    series = detect_series("HMRC CHILD BENEFIT", "credit", _payments(days, ["102.40"] * 8))
    assert series is not None
    assert series.cadence.name == "four-weekly"
    assert series.next_due == days[-1] + timedelta(days=28)
    # 102.40 every 28 days is 102.40 * 30.44 / 28 a month.
    assert series.monthly == (Decimal("102.40") * Decimal("30.44") / 28).quantize(Decimal("0.01"))


def test_weekly_wages_are_weekly():
    days = [date(2025, 3, 7) + timedelta(days=7 * k) for k in range(10)]
    series = detect_series("CORNER CAFE", "credit", _payments(days, ["410.00", "395.50"] * 5))
    assert series is not None and series.cadence.name == "weekly"


def test_irregular_credits_are_no_series():
    days = [
        date(2025, 1, 2),
        date(2025, 1, 19),
        date(2025, 3, 2),
        date(2025, 3, 9),
        date(2025, 5, 30),
        date(2025, 8, 1),
    ]
    assert detect_series("J SMITH", "credit", _payments(days, ["100.00"] * 6), minimum=3) is None


def test_one_off_bonus_is_left_out_of_the_salary_series():
    days = [date(2025, m, 25) for m in range(1, 10)]
    payments = _payments(days, ["2500.00"] * 9)
    payments.insert(6, Payment(date(2025, 6, 25), Decimal("5000.00")))  # bonus, same day
    series = detect_series("ACME LTD", "credit", payments)
    assert series is not None
    assert series.count == 9
    assert Decimal("5000.00") not in series.amounts


def test_profile_salary_is_the_recurring_pay_and_not_a_bonus_or_a_one_off():
    history = in_order(
        monthly("ACME LTD", "2500.00", date(2025, 1, 1), date(2025, 6, 30), 25),
        [tx(date(2025, 3, 25), "4000.00", "ACME LTD")],  # a one-off bonus on payday
        [tx(date(2025, 4, 2), "3000.00", "PREMIUM BONDS PRIZE")],  # a one-off payer
        every("HMRC CHILD BENEFIT", "102.40", date(2025, 1, 6), date(2025, 6, 30), 28),
    )
    profile = compute_profile(history, date(2025, 6, 30), GBP)
    assert [s.payee for s in profile.income.salaries] == ["ACME LTD"]
    assert profile.income.salaries[0].typical == Decimal("2500.00")
    # Child benefit is recurring income but not salary; the prize and bonus are neither.
    assert [s.payee for s in profile.income.other] == ["HMRC CHILD BENEFIT"]
    benefit = profile.income.other[0].monthly
    assert profile.income.monthly == Decimal("2500.00") + benefit
    assert profile.next_salary == date(2025, 7, 25)


def test_a_single_large_credit_is_not_salary():
    history = [tx(date(2025, 5, 1), "9000.00", "ACME LTD", code="PMNT-RCDT-SALA")]
    profile = compute_profile(history, date(2025, 6, 30), GBP)
    assert profile.income.salaries == ()
    assert profile.income.monthly == 0


def test_subscriptions_rent_and_utilities_are_recurring_payments():
    history = in_order(
        monthly("OAK LETTINGS", "-900.00", date(2025, 1, 1), date(2025, 6, 30), 1),
        monthly("NETFLIX.COM", "-10.99", date(2025, 1, 1), date(2025, 6, 30), 14, 4899),
        monthly("OCTOPUS ENERGY", "-88.00", date(2025, 1, 1), date(2025, 6, 30), 5, 4900),
        every("TESCO STORES", "-40.00", date(2025, 1, 3), date(2025, 6, 30), 3, 5411),
    )
    profile = compute_profile(history, date(2025, 6, 30), GBP)
    recurring = {(s.payee, s.category, s.cadence.name) for s in profile.active("debit")}
    assert recurring == {
        ("OAK LETTINGS", "transfers", "monthly"),
        ("NETFLIX.COM", "subscriptions", "monthly"),
        ("OCTOPUS ENERGY", "utilities", "monthly"),
    }


def test_a_series_that_stopped_is_not_active():
    history = monthly("OCTOPUS ENERGY", "-88.00", date(2025, 1, 1), date(2025, 4, 30), 5, 4900)
    profile = compute_profile(history, date(2025, 8, 31), GBP)
    assert profile.active() == []
    assert [s.payee for s in profile.series] == ["OCTOPUS ENERGY"]
