"""The profile: balance statistics, spending, upcoming bills, incremental == full."""

from __future__ import annotations

import statistics
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.analytics.profile import ProfileState, compute_profile
from cloud.analytics.records import AnalyticsError, Transaction
from tests.analytics.builders import GBP, in_order, monthly, plain, tx


def test_balance_stats_match_the_statistics_module_over_carried_forward_days():
    history = [
        tx(date(2025, 3, 1), "100.00", "A"),
        tx(date(2025, 3, 4), "-30.00", "B"),
        tx(date(2025, 3, 4), "-20.00", "C"),
        tx(date(2025, 3, 8), "250.50", "D"),
    ]
    profile = ProfileState(GBP, Decimal("10.00"), window_days=10)
    profile.add_all(history)
    stats = profile.snapshot(date(2025, 3, 10)).balance_stats
    # Days 1..10 March, closing balances carried over days without transactions.
    daily = [110, 110, 110, 60, 60, 60, 60, 310.5, 310.5, 310.5]
    assert stats.days == 10
    assert stats.mean == pytest.approx(statistics.fmean(daily))
    assert stats.volatility == pytest.approx(statistics.pstdev(daily))
    assert stats.minimum == Decimal("60.00")


def test_balance_before_the_window_carries_in_and_statement_balances_win():
    history = [
        tx(date(2025, 1, 1), "500.00", "A"),
        tx(date(2025, 3, 5), "-100.00", "B", balance_after="1000.00"),  # the bank says so
    ]
    state = ProfileState(GBP, window_days=7)
    state.add_all(history)
    profile = state.snapshot(date(2025, 3, 7))
    assert profile.balance == Decimal("1000.00")
    daily = [500, 500, 500, 500, 1000, 1000, 1000]  # 1..7 March
    assert profile.balance_stats.mean == pytest.approx(statistics.fmean(daily))
    assert profile.balance_stats.minimum == Decimal("500.00")


def test_spending_by_category_over_the_window_and_per_month():
    profile = compute_profile(plain(), date(2025, 12, 31), GBP)
    spending = dict(profile.spending)
    # 90 days to 31 December: groceries every 7 days from 1 January.
    tesco_days = [date(2025, 1, 1) + timedelta(days=7 * k) for k in range(53)]
    in_window = [d for d in tesco_days if date(2025, 10, 3) <= d <= date(2025, 12, 31)]
    assert spending["groceries"] == Decimal("62.40") * len(in_window)
    assert spending["utilities"] == Decimal("95.00") * 3
    assert spending["eating_out"] == Decimal("25.00") * 6
    assert spending["transfers"] == Decimal("900.00") * 2  # 1 November, 1 December
    months = dict(profile.monthly_spending)
    assert len(months) == 12
    assert dict(months[date(2025, 11, 1)])["utilities"] == Decimal("95.00")


def test_upcoming_bills_are_next_due_dates_within_35_days():
    history = in_order(
        monthly("OAK LETTINGS", "-900.00", date(2025, 1, 1), date(2025, 6, 30), 1),
        monthly("OCTOPUS ENERGY", "-95.00", date(2025, 1, 1), date(2025, 6, 30), 5, 4900),
        monthly("COUNCIL", "-150.00", date(2025, 1, 1), date(2025, 6, 30), 31, 9311),
    )
    profile = compute_profile(history, date(2025, 6, 30), GBP)
    bills = [(b.payee, b.due, b.amount) for b in profile.upcoming_bills]
    assert bills == [
        ("OAK LETTINGS", date(2025, 7, 1), Decimal("900.00")),
        ("OCTOPUS ENERGY", date(2025, 7, 5), Decimal("95.00")),
        # Paid on the last day of each month: 31 July is due next, then 4 August is past.
        ("COUNCIL", date(2025, 7, 31), Decimal("150.00")),
        ("OAK LETTINGS", date(2025, 8, 1), Decimal("900.00")),
    ]


def test_out_of_order_and_other_currency_are_refused():
    state = ProfileState(GBP)
    state.add(tx(date(2025, 5, 2), "1.00", "A"))
    with pytest.raises(AnalyticsError, match="older than one already taken"):
        state.add(tx(date(2025, 5, 1), "1.00", "A"))
    with pytest.raises(AnalyticsError, match="currency"):
        state.add(Transaction(date(2025, 5, 3), Decimal(1), "EUR", "A"))
    with pytest.raises(AnalyticsError, match="before the newest"):
        state.snapshot(date(2025, 5, 1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"booked": "2025-01-01"},
        {"amount": 1.5},
        {"amount": Decimal("NaN")},
        {"currency": "gbp"},
        {"mcc": 12345},
    ],
)
def test_malformed_records_raise_one_clear_error(kwargs):
    fields = {
        "booked": date(2025, 1, 1),
        "amount": Decimal("1.00"),
        "currency": GBP,
        "counterparty": "A",
    }
    fields.update(kwargs)
    with pytest.raises(AnalyticsError, match="transaction"):
        Transaction(**fields)


PAYEES = ["ACME LTD", "OAK LETTINGS", "TESCO STORES", "OCTOPUS ENERGY", "J SMITH"]
MCCS = [None, 5411, 4900, 5812, 5641]


@st.composite
def histories(draw):
    """Up to 150 transactions over ~14 months, some payees regular, in date order, and
    the points at which to take snapshots while feeding them."""
    count = draw(st.integers(1, 150))
    offsets = sorted(draw(st.lists(st.integers(0, 420), min_size=count, max_size=count)))
    history = []
    for offset in offsets:
        cents = draw(st.integers(-200_000, 300_000).filter(lambda c: c != 0))
        payee = draw(st.sampled_from(PAYEES))
        mcc = draw(st.sampled_from(MCCS))
        stated = draw(st.none() | st.integers(-100_000, 1_000_000))
        history.append(
            Transaction(
                date(2025, 1, 1) + timedelta(days=offset),
                Decimal(cents).scaleb(-2),
                GBP,
                payee,
                "",
                mcc,
                None,
                None if stated is None else Decimal(stated).scaleb(-2),
            )
        )
    # Regular payments too, so that series, salaries and bills are exercised.
    history += monthly("ACME LTD", "2500.00", date(2025, 1, 1), date(2026, 2, 28), 25)
    history += monthly("OAK LETTINGS", "-900.00", date(2025, 1, 1), date(2026, 2, 28), 1)
    history = in_order(history)
    cuts = sorted(draw(st.lists(st.integers(0, len(history)), max_size=6)))
    return history, cuts


@settings(max_examples=60, deadline=None)
@given(histories())
def test_incremental_profile_equals_full_recompute(case):
    history, cuts = case
    as_of = history[-1].booked + timedelta(days=3)
    state = ProfileState(GBP, Decimal("250.00"))
    position = 0
    for cut in [*cuts, len(history)]:
        state.add_all(history[position:cut])
        position = max(position, cut)
        if state.last_booked is not None:
            state.snapshot(state.last_booked)  # snapshots between pieces change nothing
    full = compute_profile(history, as_of, GBP, Decimal("250.00"))
    assert state.snapshot(as_of) == full
