"""The transaction record the analytics take, and the one error they raise.

The bank area (statement importers) maps its rows into ``Transaction``; nothing here depends
on its models. Amounts are signed ``Decimal``: credits positive, debits negative.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

_CURRENCY = re.compile(r"[A-Z]{3}\Z")


class AnalyticsError(ValueError):
    """Bad input to the analytics: a malformed record, or records out of date order."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """One booked transaction of one account.

    ``amount`` is signed (credit > 0, debit < 0) in ``currency`` (ISO 4217). ``mcc`` is the
    ISO 18245 merchant category code of a card payment, or None; ``bank_code`` the ISO 20022
    bank transaction code (``DOMAIN-FAMILY-SUBFAMILY``, e.g. ``PMNT-RCDT-SALA``) or None;
    ``balance_after`` the booked balance after it when the statement gives one.
    """

    booked: date
    amount: Decimal
    currency: str
    counterparty: str
    remittance: str = ""
    mcc: int | None = None
    bank_code: str | None = None
    balance_after: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.booked, date) or isinstance(self.booked, datetime):
            raise AnalyticsError("transaction booked date must be a date, got %r" % (self.booked,))
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise AnalyticsError(
                "transaction amount must be a finite Decimal, got %r" % (self.amount,)
            )
        if not isinstance(self.currency, str) or not _CURRENCY.match(self.currency):
            raise AnalyticsError("transaction currency must be ISO 4217, got %r" % (self.currency,))
        if self.mcc is not None and (
            not isinstance(self.mcc, int) or isinstance(self.mcc, bool) or not 0 <= self.mcc <= 9999
        ):
            raise AnalyticsError("transaction MCC must be an integer 0..9999, got %r" % (self.mcc,))
        if self.balance_after is not None and (
            not isinstance(self.balance_after, Decimal) or not self.balance_after.is_finite()
        ):
            raise AnalyticsError(
                "transaction balance_after must be a finite Decimal, got %r" % (self.balance_after,)
            )

    @property
    def payee(self) -> str:
        """The counterparty as a grouping key: upper case, single spaces."""
        return payee_key(self.counterparty)


def payee_key(counterparty: str) -> str:
    """Normalise a counterparty name so that one payer or payee groups under one key."""
    return " ".join(counterparty.upper().split())
