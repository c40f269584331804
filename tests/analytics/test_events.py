"""Each event detector on a small planted case and on a negative case."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from cloud.analytics.events import KINDS, MAX_REASONS, THRESHOLDS, Prediction, detect_events, money
from cloud.analytics.profile import compute_profile
from tests.analytics.builders import (
    CHANGE,
    END,
    GBP,
    START,
    eating_out,
    energy,
    every,
    groceries,
    monthly,
    plain,
    rent,
    salary,
    tx,
)


def _predict(history, as_of: date = END, opening: str = "3000.00") -> dict[str, Prediction]:
    profile = compute_profile(history, as_of, GBP, Decimal(opening))
    predictions = detect_events(profile)
    assert [p.kind for p in predictions] == list(KINDS)
    for p in predictions:
        assert 0.0 <= p.score <= 1.0
        assert len(p.reasons) <= MAX_REASONS
        if p.alert():
            assert p.reasons and all(p.reasons)
    return {p.kind: p for p in predictions}


def _alerts(predictions: dict[str, Prediction]) -> set[str]:
    return {kind for kind, p in predictions.items() if p.alert()}


def test_plain_customer_raises_no_alert():
    predictions = _predict(plain())
    assert _alerts(predictions) == set()
    assert all(p.score < THRESHOLDS[p.kind] for p in predictions.values())


def test_moving_house_new_rent_payee_removals_new_bills_diy():
    history = plain(
        rent=rent(CHANGE - timedelta(days=1)) + monthly("CITY HOMES", "-1050.00", CHANGE, END, 1),
        energy=energy(CHANGE - timedelta(days=1))
        + monthly("EDF ENERGY", "-80.00", CHANGE, END, 6, 4900),
        council=monthly("LEEDS CITY COUNCIL", "-160.00", CHANGE, END, 15, 9311),
        removals=[tx(date(2025, 10, 2), "-780.00", "PICKFORDS REMOVALS", 4214)],
        diy=[tx(date(2025, 10, d), "-85.00", "B&Q", 5200) for d in (4, 11, 18, 25)],
    )
    moving = _predict(history)["moving_house"]
    assert moving.alert()
    text = " | ".join(moving.reasons)
    assert "CITY HOMES" in text and "OAK LETTINGS" in text
    assert "£780 to removals" in text
    assert "EDF ENERGY" in text and "LEEDS CITY COUNCIL" in text


def test_renovation_alone_is_not_a_move():
    history = plain(diy=[tx(date(2025, 10, d), "-85.00", "B&Q", 5200) for d in (4, 11, 18, 25)])
    moving = _predict(history)["moving_house"]
    assert not moving.alert()
    assert moving.score > 0  # the DIY is seen, but it is not enough


def test_new_child_baby_shops_and_four_weekly_benefit():
    history = plain(
        baby=[
            tx(date(2025, m, d), "-150.00", "MOTHERCARE", 5641)
            for m in (10, 11, 12)
            for d in (3, 17)
        ],
        benefit=every("HMRC CHILD BENEFIT", "102.40", date(2025, 10, 20), END, 28),
    )
    child = _predict(history)["new_child"]
    assert child.alert()
    text = " | ".join(child.reasons)
    assert "baby and children's shops" in text
    assert "new four-weekly payment of £102.40 from HMRC CHILD BENEFIT since October 2025" in text


def test_a_family_that_always_had_child_benefit_is_no_new_child():
    history = plain(
        baby=[tx(date(2025, m, 3), "-40.00", "MOTHERCARE", 5641) for m in range(1, 13)],
        benefit=every("HMRC CHILD BENEFIT", "102.40", date(2025, 1, 6), END, 28),
    )
    assert not _predict(history)["new_child"].alert()


def test_new_job_new_payer_replaces_the_old_salary():
    history = plain(
        salary=salary(date(2025, 9, 30))
        + monthly("NEWCO LTD", "3000.00", date(2025, 10, 24), END, 24),
    )
    job = _predict(history)["job_change"]
    assert job.alert()
    assert job.reasons[0].startswith("salary from NEWCO LTD since October 2025")
    assert "ACME LTD" in job.reasons[0] and "last paid 25 September" in job.reasons[0]


def test_salary_rise_from_the_same_payer_is_named_with_its_size_and_month():
    history = plain(
        salary=salary(date(2025, 9, 30)) + monthly("ACME LTD", "2950.00", CHANGE, END, 25),
    )
    job = _predict(history)["job_change"]
    assert job.alert()
    assert job.reasons == ("salary from ACME LTD rose 18 % since October 2025 (£2,500 to £2,950)",)


def test_a_small_yearly_rise_is_no_job_change():
    history = plain(
        salary=salary(date(2025, 9, 30)) + monthly("ACME LTD", "2575.00", CHANGE, END, 25),
    )
    assert not _predict(history)["job_change"].alert()


def test_relationship_start_new_transfer_from_one_person_and_more_eating_out():
    history = plain(
        partner=monthly("EMMA SMITH", "450.00", date(2025, 10, 3), END, 3),
        eating_out=eating_out(START, CHANGE - timedelta(days=1))
        + eating_out(CHANGE, END, per_month=4),
    )
    together = _predict(history)["relationship"]
    assert together.alert()
    assert together.detail == "start"
    assert together.reasons[0] == "new monthly transfer of £450 from EMMA SMITH since October 2025"
    assert any(r.startswith("eating out up to £100 a month from £50") for r in together.reasons)


def test_relationship_end_transfer_stops_and_household_spending_falls():
    history = plain(
        partner=monthly("EMMA SMITH", "450.00", START, date(2025, 9, 30), 3),
        eating_out=eating_out(START, CHANGE - timedelta(days=1), per_month=3)
        + eating_out(CHANGE, END, per_month=1),
        groceries=groceries(START, CHANGE - timedelta(days=1)) + groceries(CHANGE, END, "-40.00"),
    )
    apart = _predict(history)["relationship"]
    assert apart.alert()
    assert apart.detail == "end"
    assert apart.reasons[0] == "monthly transfer of £450 from EMMA SMITH stopped after 3 September"


def test_a_friend_repaying_a_loan_in_varying_amounts_is_no_relationship():
    history = plain(
        friend=[
            tx(date(2025, 10, 8), "120.00", "TOM JONES"),
            tx(date(2025, 11, 8), "200.00", "TOM JONES"),
            tx(date(2025, 12, 8), "150.00", "TOM JONES"),
        ],
    )
    assert not _predict(history)["relationship"].alert()


def _low_balance_case(balance: str):
    """Salary on the 25th, a £350 loan payment on the 15th, the balance stated on 10 Dec."""
    last = date(2025, 12, 10)
    history = plain(
        salary=salary(last),
        rent=rent(last),
        energy=energy(last),
        groceries=groceries(START, date(2025, 12, 9)),
        eating_out=eating_out(START, last),
        broadband=monthly("BT BROADBAND", "-35.00", START, last, 10, 4814),
        loan=monthly("CAR FINANCE LTD", "-350.00", START, last, 15),
    )
    history.append(tx(last, "-12.00", "TESCO STORES", 5411, balance_after=balance))
    return _predict(history, as_of=last)["distress"]


def test_distress_projected_below_zero_before_payday():
    distress = _low_balance_case("200.00")
    assert distress.alert()
    text = " | ".join(distress.reasons)
    assert "before salary from ACME LTD due 25 December" in text
    assert "CAR FINANCE LTD £350 on 15 December" in text
    assert "balance £200 on 10 December" in text


def test_no_distress_with_a_buffer():
    distress = _low_balance_case("3000.00")
    assert not distress.alert()
    assert distress.score < 0.01


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("1050.00"), "£1,050"),
        (Decimal("1234.56"), "£1,235"),
        (Decimal("102.4"), "£102.40"),
        (Decimal("12.5"), "£12.50"),
        (Decimal("-420.7"), "-£420.70"),
        (Decimal("450.00"), "£450"),
    ],
)
def test_money_in_sentences(amount, text):
    assert money(amount, GBP) == text
    assert money(Decimal("5.5"), "CHF") == "5.50 CHF"


# ---- the two new-child signals added for recall (docs/analytics.md) ------------------------
# Each alone, on the plain customer, against the same history without it. Known answers
# from the documented weights: a new credit whose payee names child benefit or parental pay
# 0.7 (unnamed four-weekly: 0.45); one month at baby shops over four times the usual plus
# £150, a pram or a cot, 0.4 (a smaller month: the weak "doubled" signal, 0.25).

CHILD_BENEFIT_SINCE = date(2025, 10, 20)


@pytest.mark.parametrize("payee", ["HMRC CHILD BENEFIT", "HMRC CHB 4411-0087", "ACME LTD SHPP"])
def test_a_new_credit_naming_a_child_payment_scores_0_7_with_its_reason(payee):
    history = plain(benefit=every(payee, "102.40", CHILD_BENEFIT_SINCE, END, 28))
    child = _predict(history)["new_child"]
    assert child.score == 0.7 and child.alert()
    assert child.reasons == (
        "new four-weekly payment of £102.40 from %s since October 2025" % payee,
    )


def test_the_same_credit_without_a_name_for_it_scores_only_its_rhythm():
    history = plain(benefit=every("DWP PAYMENTS", "102.40", CHILD_BENEFIT_SINCE, END, 28))
    child = _predict(history)["new_child"]
    assert child.score == 0.45 and not child.alert()
    assert _predict(plain())["new_child"].score == 0.0


def test_a_pram_month_at_baby_shops_scores_0_4_with_its_reason():
    history = plain(pram=[tx(date(2025, 11, 8), "-480.00", "MOTHERCARE", 5641)])
    child = _predict(history)["new_child"]
    assert child.score == 0.4
    assert child.reasons == (
        "£160 a month at baby and children's shops over the last 3 months, against £0 before",
    )


def test_a_smaller_month_at_baby_shops_is_only_the_weak_signal():
    history = plain(present=[tx(date(2025, 11, 8), "-300.00", "MOTHERCARE", 5641)])
    child = _predict(history)["new_child"]
    assert child.score == 0.25  # "doubled", not a pram: a present or a sale
    assert child.reasons[0].startswith("£100 a month at baby and children's shops")
