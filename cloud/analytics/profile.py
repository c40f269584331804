"""The customer financial profile, kept up to date one transaction at a time.

``ProfileState`` takes an account's transactions in date order (``add``) and keeps only
bounded summaries: the running balance and the closing balance of recent days, each payee's
latest payments, debits of the last ``window_days`` and spending per category per month for
``months_kept`` months. ``snapshot(as_of)`` turns them into a frozen ``Profile``; it changes
nothing, so a state fed in pieces with snapshots between gives the same profile as one fed
everything at once (``compute_profile``), which the tests check with hypothesis.

Recurring series are recomputed only for payees that received a payment since the last
snapshot (``recurring.detect_series`` over that payee's kept payments); everything else is
reused.

Salary: an active recurring credit paid weekly, fortnightly, four-weekly or monthly, seen at
least three times, which is booked with an ISO 20022 salary code (``...-SALA``) or is at least
``SALARY_SHARE`` of all recurring income and at least ``SALARY_FLOOR`` a month. The income
estimate is the monthly equivalent of every active recurring credit seen at least three times.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from cloud.analytics.balance import BalanceStats, balance_stats, daily_series
from cloud.analytics.categories import category_of
from cloud.analytics.records import AnalyticsError, Transaction
from cloud.analytics.recurring import Payment, RecurringSeries, detect_series

SALARY_SHARE = Decimal("0.4")
SALARY_FLOOR = Decimal(400)
SALARY_CADENCES = frozenset({"weekly", "fortnightly", "four-weekly", "monthly"})
BILL_HORIZON_DAYS = 35

CREDIT = "credit"
DEBIT = "debit"


@dataclass(frozen=True, slots=True)
class Bill:
    """An expected payment: payee, due date, amount (positive) and category."""

    payee: str
    due: date
    amount: Decimal
    category: str


@dataclass(frozen=True, slots=True)
class Income:
    """Monthly income estimate from recurring credits, split into salaries and the rest."""

    monthly: Decimal
    salaries: tuple[RecurringSeries, ...]
    other: tuple[RecurringSeries, ...]


@dataclass(frozen=True, slots=True)
class Profile:
    """A customer's financial profile at the end of day ``as_of``."""

    as_of: date
    currency: str
    balance: Decimal
    balance_stats: BalanceStats
    income: Income
    series: tuple[RecurringSeries, ...]
    spending: tuple[tuple[str, Decimal], ...]
    monthly_spending: tuple[tuple[date, tuple[tuple[str, Decimal], ...]], ...]
    spend_rate: Decimal
    upcoming_bills: tuple[Bill, ...]
    next_salary: date | None

    def active(self, direction: str | None = None, confirmed: bool = True) -> list[RecurringSeries]:
        """Series still running at ``as_of`` (seen three times unless ``confirmed`` is False)."""
        return [
            s
            for s in self.series
            if s.is_active(self.as_of)
            and (direction is None or s.direction == direction)
            and (s.count >= 3 or not confirmed)
        ]

    def month_totals(self, category: str) -> list[Decimal]:
        """Spending in ``category`` per complete month, oldest first."""
        return [dict(cats).get(category, Decimal(0)) for _, cats in self.monthly_spending]


class ProfileState:
    """The incremental state behind a profile: feed transactions in date order."""

    def __init__(
        self,
        currency: str,
        opening_balance: Decimal = Decimal(0),
        window_days: int = 90,
        months_kept: int = 13,
        payments_kept: int = 36,
    ) -> None:
        self.currency = currency
        self.window_days = window_days
        self.months_kept = months_kept
        self.payments_kept = payments_kept
        self._balance = opening_balance
        self._carried = opening_balance  # closing balance of the newest day trimmed away
        self._end_of_day: dict[date, Decimal] = {}
        self._last: date | None = None
        self._payments: dict[tuple[str, str], list[Payment]] = {}
        self._series: dict[tuple[str, str], RecurringSeries | None] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._debits: deque[tuple[date, str, str, Decimal]] = deque()
        self._monthly: dict[date, dict[str, Decimal]] = defaultdict(dict)

    @property
    def last_booked(self) -> date | None:
        """The date of the newest transaction taken, or None."""
        return self._last

    def add(self, tx: Transaction) -> None:
        """Take one transaction; it must not be older than the newest one already taken."""
        if tx.currency != self.currency:
            raise AnalyticsError(
                "transaction in %s on %s does not match the profile's currency %s"
                % (tx.currency, tx.booked, self.currency)
            )
        if self._last is not None and tx.booked < self._last:
            raise AnalyticsError(
                "transaction booked %s is older than one already taken (%s): feed in date order"
                % (tx.booked, self._last)
            )
        self._last = tx.booked
        self._balance = (
            tx.balance_after if tx.balance_after is not None else self._balance + tx.amount
        )
        self._end_of_day[tx.booked] = self._balance
        direction = CREDIT if tx.amount > 0 else DEBIT
        key = (tx.payee, direction)
        kept = self._payments.setdefault(key, [])
        kept.append(Payment(tx.booked, abs(tx.amount), tx.mcc, tx.bank_code))
        if len(kept) > self.payments_kept:
            del kept[0]
        self._dirty.add(key)
        if tx.amount < 0:
            category = category_of(tx.mcc)
            self._debits.append((tx.booked, tx.payee, category, -tx.amount))
            month = self._monthly[tx.booked.replace(day=1)]
            month[category] = month.get(category, Decimal(0)) - tx.amount
        self._trim(tx.booked)

    def add_all(self, transactions: Iterable[Transaction]) -> None:
        """Take transactions in date order."""
        for tx in transactions:
            self.add(tx)

    def _trim(self, today: date) -> None:
        """Drop what no window can reach any more: old days, debits and months."""
        horizon = today - timedelta(days=self.window_days)
        if len(self._end_of_day) > self.window_days * 2:
            for day in sorted(self._end_of_day):
                if day >= horizon:
                    break
                self._carried = self._end_of_day.pop(day)
        while self._debits and self._debits[0][0] < horizon:
            self._debits.popleft()
        if len(self._monthly) > self.months_kept:
            for month in sorted(self._monthly)[: len(self._monthly) - self.months_kept]:
                del self._monthly[month]

    def _all_series(self) -> list[RecurringSeries]:
        for key in self._dirty:
            payee, direction = key
            self._series[key] = detect_series(payee, direction, self._payments[key])
        self._dirty.clear()
        return sorted(
            (s for s in self._series.values() if s is not None),
            key=lambda s: (s.payee, s.direction),
        )

    def snapshot(self, as_of: date) -> Profile:
        """The profile at the end of day ``as_of`` (not before the newest transaction)."""
        if self._last is not None and as_of < self._last:
            raise AnalyticsError(
                "profile date %s is before the newest transaction (%s)" % (as_of, self._last)
            )
        series = self._all_series()
        stats = balance_stats(
            daily_series(self._end_of_day, self._carried, as_of, self.window_days), as_of
        )
        start = as_of - timedelta(days=self.window_days - 1)
        recent = [d for d in self._debits if d[0] >= start]
        spending: dict[str, Decimal] = {}
        for _, _, category, amount in recent:
            spending[category] = spending.get(category, Decimal(0)) + amount
        active = [s for s in series if s.is_active(as_of)]
        income = _income(active)
        regular = {s.payee for s in active if s.direction == DEBIT and s.count >= 3}
        discretionary = sum((d[3] for d in recent if d[1] not in regular), Decimal(0))
        spend_rate = (discretionary / self.window_days).quantize(Decimal("0.01"))
        bills = _upcoming(active, as_of)
        paydays = [s.due_after(as_of) for s in income.salaries]
        months = tuple(
            (month, tuple(sorted(cats.items())))
            for month, cats in sorted(self._monthly.items())
            if _month_end(month) <= as_of
        )[-(self.months_kept - 1) :]
        return Profile(
            as_of=as_of,
            currency=self.currency,
            balance=self._balance,
            balance_stats=stats,
            income=income,
            series=tuple(series),
            spending=tuple(sorted(spending.items())),
            monthly_spending=months,
            spend_rate=spend_rate,
            upcoming_bills=bills,
            next_salary=min(paydays) if paydays else None,
        )


def compute_profile(
    transactions: Iterable[Transaction],
    as_of: date,
    currency: str,
    opening_balance: Decimal = Decimal(0),
) -> Profile:
    """The profile from scratch: a fresh state fed every transaction, then a snapshot."""
    state = ProfileState(currency, opening_balance)
    state.add_all(transactions)
    return state.snapshot(as_of)


def is_salary(series: RecurringSeries, recurring_income: Decimal) -> bool:
    """The salary rule of the module docstring, for one active credit series."""
    if series.direction != CREDIT or series.count < 3:
        return False
    if series.cadence.name not in SALARY_CADENCES:
        return False
    if series.bank_code is not None and series.bank_code.upper().endswith("SALA"):
        return True
    return series.monthly >= SALARY_FLOOR and series.monthly >= recurring_income * SALARY_SHARE


def _income(active: list[RecurringSeries]) -> Income:
    credits = [s for s in active if s.direction == CREDIT and s.count >= 3]
    total = sum((s.monthly for s in credits), Decimal(0))
    salaries = tuple(s for s in credits if is_salary(s, total))
    other = tuple(s for s in credits if s not in salaries)
    return Income(monthly=total, salaries=salaries, other=other)


def _upcoming(active: list[RecurringSeries], as_of: date) -> tuple[Bill, ...]:
    end = as_of + timedelta(days=BILL_HORIZON_DAYS)
    bills = []
    for s in active:
        if s.direction != DEBIT or s.count < 3:
            continue
        due = s.due_after(as_of)
        while due <= end:
            bills.append(Bill(s.payee, due, s.typical, s.category))
            due = s.due_after(due)
    return tuple(sorted(bills, key=lambda b: (b.due, b.payee)))


def _month_end(month: date) -> date:
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return following - timedelta(days=1)
