"""Loan processing's decision, a pure function: approve, refer to a branch manager, or
decline, with at most four specific reasons (adverse-action reasons in the ECOA / Reg B
sense for a decline or a referral: a factor and its figure, never "score" or "model").

Inputs: the application (amount, term), the customer's profile from their bank
transactions (verified monthly income, regular payments, lowest balance, a distress
prediction) and the consented IoT evidence (per collateral sensor: readings in the last
``FRESH_DAYS`` days, threshold alarms in the last ``ALARM_DAYS`` days).

| finding | effect |
|---|---|
| no bank history, or no verified income | refer |
| debt payments over ``DECLINE_DTI`` of income | decline |
| debt payments over ``REFER_DTI`` of income | refer |
| overdraft expected before payday | refer |
| a collateral sensor silent or unknown | refer |
| a collateral sensor with threshold alarms | refer |

The monthly payment is the annuity at ``APR`` over the term.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from cloud.analytics.events import distress, money
from cloud.analytics.profile import DEBIT, Profile

VERSION = "loan-1"
APR = Decimal("0.099")
REFER_DTI = Decimal("0.40")
DECLINE_DTI = Decimal("0.60")
FRESH_DAYS = 7
ALARM_DAYS = 30
APPROVED, REFERRED, DECLINED = "approved", "referred", "declined"


@dataclass(frozen=True)
class Evidence:
    """One collateral sensor: whether it is a registered device, its recent readings and
    threshold alarms."""

    device: str
    known: bool
    readings: int
    alarms: int


@dataclass(frozen=True)
class LoanDecision:
    """``outcome`` with at most four ``reasons`` and the figures (``facts``)."""

    outcome: str
    reasons: tuple[str, ...]
    facts: Mapping[str, str]


def monthly_payment(amount: Decimal, term_months: int, apr: Decimal = APR) -> Decimal:
    """The annuity payment of ``amount`` over ``term_months`` at ``apr`` (to the cent)."""
    rate = apr / 12
    if rate == 0:
        payment = amount / term_months
    else:
        payment = amount * rate / (1 - (1 + rate) ** -term_months)
    return payment.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _regular_debits(profile: Profile) -> Decimal:
    return sum((s.monthly for s in profile.active(DEBIT)), Decimal(0))


def decide(
    amount: Decimal, term_months: int, profile: Profile | None, evidence: list[Evidence]
) -> LoanDecision:
    """The decision (module docstring); reasons ordered from the weightiest."""
    payment = monthly_payment(amount, term_months)
    facts: dict[str, str] = {"monthly_payment": str(payment)}
    declines: list[str] = []
    refers: list[str] = []
    if profile is None:
        refers.append("no account history with the bank to verify income")
    else:
        cur = profile.currency
        income = profile.income.monthly
        facts.update(income=str(income), balance=str(profile.balance))
        if income <= 0:
            refers.append("no regular income found in the account's last months")
        else:
            debts = _regular_debits(profile)
            ratio = ((payment + debts) / income).quantize(Decimal("0.01"))
            facts.update(regular_debits=str(debts), dti=str(ratio))
            text = (
                "payments of %s a month (%s regular + %s for this loan) are %d%% of income %s"
                % (
                    money(payment + debts, cur),
                    money(debts, cur),
                    money(payment, cur),
                    int(ratio * 100),
                    money(income, cur),
                )
            )
            if ratio > DECLINE_DTI:
                declines.append(text + " (limit %d%%)" % int(DECLINE_DTI * 100))
            elif ratio > REFER_DTI:
                refers.append(text + " (review above %d%%)" % int(REFER_DTI * 100))
        risk = distress(profile)
        if risk.alert():
            refers.append(
                "balance expected to go below zero before the next payday"
                + (": " + risk.reasons[0] if risk.reasons else "")
            )
    for item in evidence:
        if not item.known:
            refers.append("collateral sensor %s is not a registered device" % item.device)
        elif item.readings == 0:
            refers.append(
                "collateral sensor %s sent no readings in the last %d days"
                % (item.device, FRESH_DAYS)
            )
        elif item.alarms:
            refers.append(
                "collateral sensor %s reported %d threshold alarms in the last %d days"
                % (item.device, item.alarms, ALARM_DAYS)
            )
    if declines:
        return LoanDecision(DECLINED, tuple((declines + refers)[:4]), facts)
    if refers:
        return LoanDecision(REFERRED, tuple(refers[:4]), facts)
    good = [
        "payments are %d%% of verified income" % int(Decimal(facts["dti"]) * 100),
        "no overdraft expected before payday",
    ]
    if evidence:
        good.append("%d collateral sensors reporting without alarms" % len(evidence))
    return LoanDecision(APPROVED, tuple(good[:4]), facts)
