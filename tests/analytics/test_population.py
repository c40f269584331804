"""The synthetic population and the detectors' precision and recall on a small one."""

from __future__ import annotations

import pytest

from cloud.analytics.evaluation import CustomerRun, run_customer, score_runs
from cloud.analytics.events import KINDS
from cloud.analytics.records import AnalyticsError
from cloud.analytics.simulation import (
    CARD,
    CREDIT_CODE,
    DIRECT_DEBIT,
    LIFE_EVENTS,
    SALARY_CODE,
    STANDING_ORDER,
    generate_customer,
    generate_population,
    overdrawn_before_payday,
)


def test_customers_are_deterministic_per_seed_and_index():
    assert generate_customer(5, 3) == generate_customer(5, 3)
    assert generate_customer(5, 3) != generate_customer(6, 3)
    assert list(generate_population(5, 4))[3] == generate_customer(5, 3)


def test_transactions_carry_no_marker_and_balances_add_up():
    codes = {CARD, CREDIT_CODE, DIRECT_DEBIT, SALARY_CODE, STANDING_ORDER}
    for customer in generate_population(7, 20):
        balance = customer.opening_balance
        previous = None
        for tx in customer.transactions:
            assert tx.remittance == ""
            assert tx.bank_code in codes
            assert previous is None or tx.booked >= previous
            balance += tx.amount
            assert tx.balance_after == balance
            previous = tx.booked
        for event in customer.events:
            assert event.kind in LIFE_EVENTS
            assert all(event.detail not in tx.counterparty for tx in customer.transactions)


def test_distress_truth_reads_the_simulated_balance_until_the_next_salary():
    overdrawn = comfortable = None
    for customer in generate_population(7, 200):
        negative = [tx for tx in customer.transactions if tx.balance_after < 0]  # type: ignore[operator]
        if negative and overdrawn is None and customer.paydays[0] < negative[0].booked:
            overdrawn = (customer, negative[0])
        if not negative and comfortable is None:
            comfortable = customer
    assert overdrawn is not None and comfortable is not None
    customer, first = overdrawn
    payday = max(d for d in customer.paydays if d < first.booked)
    assert overdrawn_before_payday(customer, payday) is True
    assert overdrawn_before_payday(comfortable, comfortable.paydays[0]) is False
    assert overdrawn_before_payday(customer, customer.transactions[-1].booked) is None


def test_too_short_a_simulation_is_refused():
    with pytest.raises(AnalyticsError, match="at least"):
        generate_customer(1, 0, days=100)


@pytest.fixture(scope="module")
def runs() -> list[CustomerRun]:
    # Seed 2 was never used to tune the thresholds (seed 1 was).
    return [run_customer(customer) for customer in generate_population(2, 200)]


def test_small_population_precision_and_recall_with_margin(runs):
    tallies = score_runs(runs)
    for kind in KINDS:
        tally = tallies[kind]
        assert tally.events >= 10, kind  # enough planted to mean something
        assert tally.precision >= 0.7, (kind, tally)
        # New child is the closest (0.60 here, 12 of 20; 0.66 on the 2,000-customer report).
        assert tally.recall >= 0.5, (kind, tally)


def test_every_alert_has_reasons(runs):
    for run in runs:
        for _, predictions in run.predictions:
            for prediction in predictions:
                if prediction.alert():
                    assert 1 <= len(prediction.reasons) <= 4
                    assert all(isinstance(r, str) and r for r in prediction.reasons)
                assert prediction.score == pytest.approx(min(max(prediction.score, 0.0), 1.0))
