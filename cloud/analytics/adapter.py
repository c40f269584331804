"""One bank transaction row (``cloud.bank.models.BankTransaction``) as the analytics'
``records.Transaction``: the only place that knows both.

Signed ``Decimal`` amount (credit > 0), the booking date, the counterparty and remittance
text, the ISO 18245 MCC when the row has a four-digit one, the ISO 20022 bank transaction
code ``DOMAIN-FAMILY-SUBFAMILY`` when all three parts are there, and the balance after it
when the caller knows it (statements give balances per statement, not per entry).
"""

from __future__ import annotations

from decimal import Decimal

from cloud.analytics.records import AnalyticsError, Transaction
from cloud.bank.models import BankTransaction


def transaction_of(row: BankTransaction, balance_after: Decimal | None = None) -> Transaction:
    """``row`` (a booked entry) as an analytics ``Transaction``; ``AnalyticsError`` for a row
    without a booking date or with an amount the analytics refuse."""
    if row.booking_date is None:
        raise AnalyticsError("bank transaction %s has no booking date" % row.id)
    mcc = int(row.mcc) if len(row.mcc) == 4 and row.mcc.isdigit() else None
    parts = (row.domain_code, row.family_code, row.subfamily_code)
    code = "-".join(parts) if all(parts) else None
    return Transaction(
        booked=row.booking_date,
        amount=Decimal(row.signed_amount),
        currency=row.currency,
        counterparty=row.counterparty_name,
        remittance=row.remittance,
        mcc=mcc,
        bank_code=code,
        balance_after=balance_after,
    )
