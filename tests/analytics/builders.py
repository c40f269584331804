"""Hand-made transaction histories for the analytics tests: a plain customer and changes."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from cloud.analytics.records import Transaction

GBP = "GBP"


def tx(
    day: date,
    amount: str | Decimal,
    payee: str,
    mcc: int | None = None,
    code: str | None = None,
    balance_after: str | None = None,
) -> Transaction:
    """One transaction in GBP."""
    return Transaction(
        day,
        Decimal(amount),
        GBP,
        payee,
        "",
        mcc,
        code,
        Decimal(balance_after) if balance_after is not None else None,
    )


def monthly(
    payee: str,
    amount: str,
    first: date,
    last: date,
    day: int,
    mcc: int | None = None,
    code: str | None = None,
) -> list[Transaction]:
    """A payment on ``day`` of every month from ``first`` to ``last``."""
    out = []
    year, month = first.year, first.month
    while True:
        when = date(year, month, min(day, calendar.monthrange(year, month)[1]))
        if when > last:
            return out
        if when >= first:
            out.append(tx(when, amount, payee, mcc, code))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def every(
    payee: str,
    amount: str,
    first: date,
    last: date,
    period: int,
    mcc: int | None = None,
    code: str | None = None,
) -> list[Transaction]:
    """A payment every ``period`` days from ``first`` to ``last``."""
    out, when = [], first
    while when <= last:
        out.append(tx(when, amount, payee, mcc, code))
        when += timedelta(days=period)
    return out


def in_order(*parts: Iterable[Transaction]) -> list[Transaction]:
    """All parts merged in date order (credits first within a day)."""
    merged = [t for part in parts for t in part]
    return sorted(merged, key=lambda t: (t.booked, t.amount < 0, t.counterparty))


START = date(2025, 1, 1)
CHANGE = date(2025, 10, 1)  # when the hand-made events happen
END = date(2025, 12, 31)  # the profile's date


def salary(last: date = END) -> list[Transaction]:
    return monthly("ACME LTD", "2500.00", START, last, 25)


def rent(last: date = END) -> list[Transaction]:
    return monthly("OAK LETTINGS", "-900.00", START, last, 1)


def energy(last: date = END) -> list[Transaction]:
    return monthly("OCTOPUS ENERGY", "-95.00", START, last, 5, 4900)


def broadband() -> list[Transaction]:
    return monthly("BT BROADBAND", "-35.00", START, END, 10, 4814)


def groceries(first: date = START, last: date = END, amount: str = "-62.40") -> list[Transaction]:
    return every("TESCO STORES", amount, first, last, 7, 5411)


def eating_out(first: date = START, last: date = END, per_month: int = 2) -> list[Transaction]:
    out = []
    for k in range(per_month):
        out += monthly("PIZZA EXPRESS", "-25.00", first, last, 6 + k * 9, 5812)
    return out


def plain(**changes: list[Transaction]) -> list[Transaction]:
    """The plain customer: salary, rent, energy, broadband, groceries, eating out."""
    parts = {
        "salary": salary(),
        "rent": rent(),
        "energy": energy(),
        "broadband": broadband(),
        "groceries": groceries(),
        "eating_out": eating_out(),
    }
    parts.update(changes)
    return in_order(*parts.values())
