"""Life and financial events from a profile: a score in [0, 1] and at most four reasons.

Each detector gathers evidence from one ``Profile`` (``profile.Profile``): signals, each
with a weight in [0, 1] and a sentence naming the payee, amount and month behind it. The
score combines the weights as a noisy-OR, ``1 - (1 - w1)(1 - w2)...``: each signal alone is
an independent chance that the event happened, so one strong signal is enough and weak ones
add up without ever passing 1. The reasons are the four heaviest signals' sentences.

Windows: "recent" is the last ``RECENT_MONTHS`` complete months, "before" the
``BASELINE_MONTHS`` complete months ahead of them (monthly averages); a recurring series is
new when its first payment falls within ``NEW_DAYS`` days of the profile's date, ended when it
is overdue (``RecurringSeries.is_active``) and its last payment is within ``ENDED_DAYS`` days.
Only regular bills and transfers count as new or ended series: a shop visited twice in a
fortnight is not a new commitment.

The signals of each event and why they were chosen are in ``docs/analytics.md``; the weights
and ``THRESHOLDS`` were tuned on population seed 1 only (see ``evaluation``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from statistics import median

from cloud.analytics.categories import BILL_CATEGORIES, TRANSFERS
from cloud.analytics.profile import CREDIT, DEBIT, SALARY_CADENCES, SALARY_FLOOR, Profile
from cloud.analytics.recurring import RecurringSeries

LIFE_EVENTS = ("moving_house", "new_child", "job_change", "relationship")
KINDS = (*LIFE_EVENTS, "distress")
# Alert when the score reaches these. Chosen on population seed 1 only (2,000 customers,
# ``bench/life_events.py --tune``): per kind, the best F1 among thresholds whose precision is
# at least 0.85. Seed 2 is the report seed.
THRESHOLDS: dict[str, float] = {
    "moving_house": 0.6,
    "new_child": 0.55,
    "job_change": 0.5,
    "relationship": 0.6,
    "distress": 0.45,
}
MAX_REASONS = 4
RECENT_MONTHS = 3
BASELINE_MONTHS = 6
NEW_DAYS = 120
ENDED_DAYS = 150
# A salary-like credit is at least this share of the largest regular credit.
SALARY_LIKE_SHARE = Decimal("0.7")
# A debit transfer is rent or a mortgage when it is the largest and at least this share of pay.
HOUSING_SHARE = Decimal("0.15")
# Transfers to or from a person below this a month are pocket money, not a partner.
PARTNER_FLOOR = Decimal(100)
# ... and above this share of pay it is more likely pay or rent than a partner's share.
PARTNER_CAP = Decimal("0.75")
# People pay each other by standing order weekly, fortnightly or monthly; four-weekly
# credits are how UK benefits arrive (child benefit), so they are not a person's transfer.
PERSON_CADENCES = frozenset({"weekly", "fortnightly", "monthly"})
PAY_CHANGE = 0.07
# Words in a credit's payee that name a payment made for a child or a parent's leave: UK
# child benefit ("HMRC CHILD BENEFIT", "CHB"), statutory maternity, paternity and shared
# parental pay ("SMP", "SPP", "SHPP"), and the same in words.
CHILD_CREDIT_WORDS = (
    "CHILD BENEFIT",
    "CHB ",
    "MATERNITY",
    "PATERNITY",
    "PARENTAL",
    " SMP",
    " SHPP",
)
# A month at baby and children's shops over this, on top of four times the usual, is a
# pram, a cot or a car seat.
BABY_PURCHASE = 150
REGULAR_CATEGORIES = BILL_CATEGORIES | {TRANSFERS, "housing", "childcare", "education"}
_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}


@dataclass(frozen=True, slots=True)
class Prediction:
    """One event's score at ``as_of`` with at most four reasons (none when the score is 0).

    ``detail`` says which way an event with two sides went (``start`` or ``end`` of a
    relationship), else it is empty.
    """

    kind: str
    as_of: date
    score: float
    reasons: tuple[str, ...]
    detail: str = ""

    def alert(self, thresholds: dict[str, float] | None = None) -> bool:
        """True when the score reaches the kind's threshold."""
        return self.score > 0 and self.score >= (thresholds or THRESHOLDS)[self.kind]


class _Evidence:
    """Signals for one event: weights and sentences, combined as a noisy-OR."""

    def __init__(self) -> None:
        self.signals: list[tuple[float, str]] = []

    def add(self, weight: float, reason: str) -> None:
        self.signals.append((min(max(weight, 0.0), 1.0), reason))

    @property
    def score(self) -> float:
        remaining = 1.0
        for weight, _ in self.signals:
            remaining *= 1.0 - weight
        return 1.0 - remaining

    def prediction(self, kind: str, as_of: date, detail: str = "") -> Prediction:
        ranked = sorted(self.signals, key=lambda s: -s[0])[:MAX_REASONS]
        return Prediction(kind, as_of, round(self.score, 4), tuple(r for _, r in ranked), detail)


def money(amount: Decimal | float, currency: str) -> str:
    """An amount for a sentence: pence unless whole or from 1,000 up; symbol when known."""
    value = amount if isinstance(amount, Decimal) else Decimal(repr(amount))
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole = value >= 1000 or value == value.to_integral_value()
    text = f"{value:,.0f}" if whole else f"{value:,.2f}"
    symbol = _SYMBOLS.get(currency)
    return "%s%s%s" % (sign, symbol, text) if symbol else "%s%s %s" % (sign, text, currency)


def _month(day: date) -> str:
    return day.strftime("%B %Y")


def _day(day: date) -> str:
    return "%d %s" % (day.day, day.strftime("%B"))


def _compare(profile: Profile, category: str) -> tuple[Decimal, Decimal] | None:
    """Monthly average spending in ``category``: (recent, before), or None without history."""
    totals = profile.month_totals(category)
    if len(totals) < RECENT_MONTHS + BASELINE_MONTHS:
        return None  # three months of "before" are too few to call anything a change
    recent = totals[-RECENT_MONTHS:]
    before = totals[-RECENT_MONTHS - BASELINE_MONTHS : -RECENT_MONTHS]
    return sum(recent, Decimal(0)) / len(recent), sum(before, Decimal(0)) / len(before)


class _View:
    """The profile's series sorted into what the detectors ask about."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        as_of = profile.as_of
        self.regular = [s for s in profile.series if s.category in REGULAR_CATEGORIES]
        self.active = [s for s in self.regular if s.is_active(as_of)]
        self.ended = [
            s
            for s in self.regular
            if s.count >= 3 and not s.is_active(as_of) and (as_of - s.last).days <= ENDED_DAYS
        ]
        self.new = [s for s in self.active if (as_of - s.first).days <= NEW_DAYS]
        credits = [s for s in self.active + self.ended if s.direction == CREDIT]
        self.top_credit = max((s.monthly for s in credits), default=Decimal(0))
        self.pay = max(profile.income.monthly, self.top_credit)
        # Rent or mortgage: the largest large debit transfer, among those paid for longer
        # than ``NEW_DAYS`` when there is one (a new transfer beside a rent that goes on is
        # more likely a partner's share than a second home).
        housing = [s for s in self.active if self._housing_like(s)]
        settled = [s for s in housing if s not in self.new]
        self.housing = max(settled or housing, key=lambda s: s.monthly, default=None)
        # A rent or mortgage that stopped counts only when a new one replaced it (or none
        # is paid now): a partner's transfer that stops is not the old rent.
        replaced = self.housing is None or self.housing in self.new
        reference = self.housing.monthly if self.housing is not None else Decimal(0)
        self.ended_housing = [
            s
            for s in self.ended
            if replaced
            and s.direction == DEBIT
            and s.category in (TRANSFERS, "housing")
            and s.monthly >= max(reference * Decimal("0.6"), self.pay * HOUSING_SHARE)
        ]

    def _housing_like(self, s: RecurringSeries) -> bool:
        return (
            s.direction == DEBIT
            and s.category in (TRANSFERS, "housing")
            and s.monthly >= self.pay * HOUSING_SHARE
        )

    def salary_like(self, s: RecurringSeries) -> bool:
        """A credit that looks like pay: salary code, or near the largest regular credit."""
        if s.direction != CREDIT or s.cadence.name not in SALARY_CADENCES:
            return False
        if s.bank_code is not None and s.bank_code.upper().endswith("SALA"):
            return True
        return s.monthly >= max(SALARY_FLOOR, self.top_credit * SALARY_LIKE_SHARE)

    def person_transfer(self, s: RecurringSeries) -> bool:
        """A regular transfer that is neither pay nor rent: to or from a person."""
        return (
            s.category == TRANSFERS
            and s.cadence.name in PERSON_CADENCES
            and not self.salary_like(s)
            and s is not self.housing
            and s not in self.ended_housing
            and PARTNER_FLOOR <= s.monthly <= self.pay * PARTNER_CAP
        )


def detect_events(profile: Profile) -> tuple[Prediction, ...]:
    """Every event's prediction for ``profile``, in ``KINDS`` order."""
    view = _View(profile)
    return (
        moving_house(view),
        new_child(view),
        job_change(view),
        relationship(view),
        distress(profile),
    )


def _spike(
    evidence: _Evidence,
    view: _View,
    category: str,
    label: str,
    factor: float,
    floor: int,
    weight: float,
) -> None:
    compared = _compare(view.profile, category)
    if compared is None:
        return
    recent, before = compared
    if recent >= before * Decimal(repr(factor)) + floor:
        cur = view.profile.currency
        evidence.add(
            weight,
            "%s a month at %s over the last %d months, against %s before"
            % (money(recent, cur), label, RECENT_MONTHS, money(before, cur)),
        )


def moving_house(view: _View) -> Prediction:
    """Moving house: removals, a new rent or mortgage payee, new bills, DIY and furniture."""
    profile, cur = view.profile, view.profile.currency
    evidence = _Evidence()
    removals = profile.month_totals("removals")[-RECENT_MONTHS:]
    spent = sum(removals, Decimal(0))
    if spent >= 250:
        evidence.add(
            0.6,
            "%s to removals and storage firms in the last %d months"
            % (money(spent, cur), RECENT_MONTHS),
        )
    elif spent > 0:
        evidence.add(
            0.35,
            "%s on van hire or removals in the last %d months" % (money(spent, cur), RECENT_MONTHS),
        )
    new_home = view.housing if view.housing is not None and view.housing in view.new else None
    if new_home is not None and view.ended_housing:
        old = max(view.ended_housing, key=lambda s: s.last)
        # The same rent to a new payee is more often a new agent or landlord than a new home.
        same = abs(new_home.typical - old.typical) <= old.typical * Decimal("0.02")
        evidence.add(
            0.45 if same else 0.75,
            "rent or mortgage to %s since %s (%s a month); payments to %s (%s) stopped after %s"
            % (
                new_home.payee,
                _month(new_home.first),
                money(new_home.monthly, cur),
                old.payee,
                money(old.monthly, cur),
                _day(old.last),
            ),
        )
    elif new_home is not None:
        evidence.add(
            0.45,
            "new rent or mortgage payment to %s since %s (%s a month)"
            % (new_home.payee, _month(new_home.first), money(new_home.monthly, cur)),
        )
    elif view.housing is not None and view.housing.count >= 6:
        home = view.housing
        before = Decimal(median(home.amounts[-6:-3]))
        change = float(home.typical / before) - 1 if before else 0.0
        if abs(change) >= 0.1 and (profile.as_of - home.dates[-3]).days <= NEW_DAYS:
            evidence.add(
                0.4,
                "payments to %s changed from %s to %s a month since %s"
                % (
                    home.payee,
                    money(before, cur),
                    money(home.typical, cur),
                    _month(home.dates[-3]),
                ),
            )
    bills = [s for s in view.new if s.direction == DEBIT and s.category in BILL_CATEGORIES]
    if bills:
        names = ", ".join(s.payee for s in bills[:3])
        weight = 0.55 if len(bills) >= 2 else 0.2
        evidence.add(
            weight,
            "%d new bill%s set up since %s: %s"
            % (
                len(bills),
                "s" if len(bills) > 1 else "",
                _month(min(s.first for s in bills)),
                names,
            ),
        )
    _spike(evidence, view, "diy", "DIY and hardware stores", 3.0, 50, 0.3)
    _spike(evidence, view, "furniture", "furniture and appliance stores", 3.0, 80, 0.3)
    return evidence.prediction("moving_house", profile.as_of)


def new_child(view: _View) -> Prediction:
    """A new child: baby and children's shops, childcare, a new benefit paid every four weeks."""
    profile, cur = view.profile, view.profile.currency
    evidence = _Evidence()
    compared = _compare(profile, "children")
    if compared is not None:
        recent, before = compared
        # A baby is bought for month after month; one big month is a present or a sale.
        months = profile.month_totals("children")[-RECENT_MONTHS:]
        elevated = sum(1 for m in months if m >= before * 2 + 20)
        sentence = (
            "%s a month at baby and children's shops over the last %d months, against %s before"
            % (money(recent, cur), RECENT_MONTHS, money(before, cur))
        )
        if elevated == RECENT_MONTHS and recent >= before * 3 + 40:
            evidence.add(0.55, sentence)
        elif elevated >= 2 and recent >= before * 3 + 60:
            evidence.add(0.4, sentence)
        elif elevated >= 1 and recent >= before * 4 + BABY_PURCHASE:
            # A pram, a cot or a car seat in one month: a month's spending several times
            # the usual and over a pram's price is rarely a present.
            evidence.add(0.4, sentence)
        elif recent >= before * 2 + 25:
            evidence.add(0.25, sentence)
    care = [s for s in view.new if s.direction == DEBIT and s.category == "childcare"]
    if care:
        evidence.add(
            0.3,
            "childcare paid to %s since %s (%s a month)"
            % (care[0].payee, _month(care[0].first), money(care[0].monthly, cur)),
        )
    for s in view.new:
        if s.direction != CREDIT or view.salary_like(s) or s.monthly >= view.pay * Decimal("0.25"):
            continue
        named = _names_a_child(s.payee)
        weight = 0.45 if s.cadence.name == "four-weekly" else 0.15
        if named:  # the statement names it: a benefit or leave pay is claimed per child
            weight = 0.7
        evidence.add(
            weight,
            "new %s payment of %s from %s since %s"
            % (s.cadence.name, money(s.typical, cur), s.payee, _month(s.first)),
        )
    for s in view.active:
        if s.direction != CREDIT or s.cadence.name != "four-weekly" or s.count < 5 or s in view.new:
            continue
        before = Decimal(median(s.amounts[-6:-3])) if s.count >= 6 else s.amounts[0]
        if s.typical >= before * Decimal("1.3") and (profile.as_of - s.dates[-3]).days <= NEW_DAYS:
            evidence.add(
                0.6 if _names_a_child(s.payee) else 0.45,
                "four-weekly payments from %s rose from %s to %s since %s"
                % (s.payee, money(before, cur), money(s.typical, cur), _month(s.dates[-3])),
            )
    _spike(evidence, view, "health", "pharmacies", 1.8, 15, 0.15)
    _spike(evidence, view, "groceries", "supermarkets", 1.12, 0, 0.1)
    compared = _compare(profile, "eating_out")
    if compared is not None and compared[1] > 0 and compared[0] <= compared[1] * Decimal("0.7"):
        evidence.add(
            0.1,
            "eating out down to %s a month from %s"
            % (money(compared[0], cur), money(compared[1], cur)),
        )
    return evidence.prediction("new_child", profile.as_of)


def _names_a_child(payee: str) -> bool:
    """The credit's payee or reference names a payment made for a child or a parent's
    leave (child benefit, maternity, paternity or shared parental pay)."""
    text = payee.upper()
    return any(word in text for word in CHILD_CREDIT_WORDS)


def job_change(view: _View) -> Prediction:
    """A new job or a pay change: the salary's payer changes, stops, or its amount moves."""
    profile, cur = view.profile, view.profile.currency
    evidence = _Evidence()
    current = [s for s in view.active if view.salary_like(s)]
    stopped = [s for s in view.ended if view.salary_like(s)]
    fresh = [s for s in current if s in view.new]
    if stopped and fresh:
        old, new = max(stopped, key=lambda s: s.last), fresh[0]
        evidence.add(
            0.9,
            "salary from %s since %s (%s a month) after %s (%s a month, last paid %s)"
            % (
                new.payee,
                _month(new.first),
                money(new.monthly, cur),
                old.payee,
                money(old.monthly, cur),
                _day(old.last),
            ),
        )
    elif stopped and not current:
        old = max(stopped, key=lambda s: s.last)
        evidence.add(
            0.65, "salary from %s last paid on %s, none since" % (old.payee, _day(old.last))
        )
    elif fresh and len(current) > len(fresh):
        evidence.add(
            0.45,
            "new regular income from %s since %s (%s a month)"
            % (fresh[0].payee, _month(fresh[0].first), money(fresh[0].monthly, cur)),
        )
    for s in current:
        if s.count < 6:
            continue
        before = Decimal(median(s.amounts[-6:-3]))
        change = float(s.typical / before) - 1 if before else 0.0
        if abs(change) < PAY_CHANGE:
            continue
        since = next(
            (
                d
                for d, a in zip(s.dates[-3:], s.amounts[-3:], strict=True)
                if abs(float(a / before) - 1) >= PAY_CHANGE / 2
            ),
            s.dates[-3],
        )
        if (profile.as_of - since).days > NEW_DAYS:
            continue
        evidence.add(
            min(0.9, 0.3 + 3 * abs(change)),
            "salary from %s %s %d %% since %s (%s to %s)"
            % (
                s.payee,
                "rose" if change > 0 else "fell",
                round(abs(change) * 100),
                _month(since),
                money(before, cur),
                money(s.typical, cur),
            ),
        )
    return evidence.prediction("job_change", profile.as_of)


def relationship(view: _View) -> Prediction:
    """A relationship starting or ending: a regular transfer with one person starts or stops,
    eating out and groceries move together, the rent changes on a move."""
    profile, cur = view.profile, view.profile.currency
    start, end = _Evidence(), _Evidence()
    for s in view.new:
        if view.person_transfer(s):
            way = "from" if s.direction == CREDIT else "to"
            start.add(
                _transfer_weight(s),
                "new monthly transfer of %s %s %s since %s"
                % (money(s.monthly, cur), way, s.payee, _month(s.first)),
            )
    for s in view.ended:
        if s.count >= 4 and view.person_transfer(s):
            way = "from" if s.direction == CREDIT else "to"
            end.add(
                _transfer_weight(s),
                "monthly transfer of %s %s %s stopped after %s"
                % (money(s.monthly, cur), way, s.payee, _day(s.last)),
            )
    for category, label, up, down, least, weight in (
        ("eating_out", "eating out", 1.35, 0.7, 40, 0.3),
        ("groceries", "groceries", 1.15, 0.85, 50, 0.15),
    ):
        compared = _compare(profile, category)
        if compared is None or compared[1] <= 0:
            continue
        recent, before = compared
        if abs(recent - before) < least:
            continue
        sentence = "%s %s to %s a month from %s" % (
            label,
            "up" if recent > before else "down",
            money(recent, cur),
            money(before, cur),
        )
        if recent >= before * Decimal(repr(up)):
            start.add(weight, sentence)
        elif recent <= before * Decimal(repr(down)):
            end.add(weight, sentence)
    _spike(start, view, "gifts", "florists and jewellers", 3.0, 30, 0.15)
    if view.housing is not None and view.housing in view.new and view.ended_housing:
        old = max(view.ended_housing, key=lambda s: s.last)
        ratio = view.housing.monthly / old.monthly
        sentence = "rent or mortgage now %s a month, was %s" % (
            money(view.housing.monthly, cur),
            money(old.monthly, cur),
        )
        if ratio <= Decimal("0.75"):
            start.add(0.15, sentence + " (shared?)")
        elif ratio >= Decimal("1.33"):
            end.add(0.15, sentence)
    if end.score > start.score:
        return end.prediction("relationship", profile.as_of, "end")
    return start.prediction("relationship", profile.as_of, "start" if start.signals else "")


def _transfer_weight(s: RecurringSeries) -> float:
    """A partner's share of a household is a standing order: the same amount every time, and
    the larger, the likelier (0.45-0.65). Varying amounts (a loan repaid as money allows) are
    weak evidence (0.25)."""
    if len(set(s.amounts)) > 1:
        return 0.25
    return 0.45 + min(0.2, float(s.monthly) / 2000)


def distress(profile: Profile) -> Prediction:
    """Overdraft risk before payday: the balance, less the bills due and everyday spending at
    its recent rate, projected day by day until the next salary."""
    cur, as_of = profile.currency, profile.as_of
    if profile.next_salary is None:
        return Prediction("distress", as_of, 0.0, ())
    payday = profile.next_salary
    bills = [b for b in profile.upcoming_bills if as_of < b.due < payday]
    rate = profile.spend_rate
    lowest, lowest_day = profile.balance, as_of
    balance = profile.balance
    for offset in range(1, (payday - as_of).days):
        day = as_of + timedelta(days=offset)
        balance -= rate + sum((b.amount for b in bills if b.due == day), Decimal(0))
        if balance < lowest:
            lowest, lowest_day = balance, day
    scale = max(25.0, float(rate) * 3)
    score = 1.0 / (1.0 + math.exp(max(min(float(lowest) / scale, 50.0), -50.0)))
    evidence = _Evidence()
    payer = profile.income.salaries[0].payee if profile.income.salaries else "the employer"
    evidence.add(
        score,
        "projected balance %s on %s, before salary from %s due %s"
        % (money(lowest, cur), _day(lowest_day), payer, _day(payday)),
    )
    evidence.add(score * 0.9, "balance %s on %s" % (money(profile.balance, cur), _day(as_of)))
    if bills:
        named = sorted(bills, key=lambda b: -b.amount)[:2]
        evidence.add(
            score * 0.8,
            "bills of %s due before payday, largest %s"
            % (
                money(sum((b.amount for b in bills), Decimal(0)), cur),
                " and ".join(
                    "%s %s on %s" % (b.payee, money(b.amount, cur), _day(b.due)) for b in named
                ),
            ),
        )
    if rate > 0:
        evidence.add(
            score * 0.7, "everyday spending about %s a day over the last 90 days" % money(rate, cur)
        )
    prediction = evidence.prediction("distress", as_of)
    return Prediction("distress", as_of, round(score, 4), prediction.reasons)
