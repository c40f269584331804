"""A customer's financial profile from their bank transactions, through the analytics'
pure functions (``cloud.analytics.profile.compute_profile``), for the applications.

The account used is the customer's account with the most booked transactions; pending and
informational entries are left out. None when the customer has no booked transaction. The
balance starts from the opening balance of the account's first statement (as the stored
profile's does, ``cloud.analytics.store``), zero when the bank sent none.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.analytics.profile import Profile, compute_profile
from cloud.analytics.records import Transaction
from cloud.bank.models import BankAccount, BankStatement, BankTransaction


def _bank_code(row: BankTransaction) -> str | None:
    parts = (row.domain_code, row.family_code, row.subfamily_code)
    return "-".join(parts) if all(parts) else None


def transaction_of(row: BankTransaction) -> Transaction:
    """A bank row as the analytics' record (credits positive, debits negative)."""
    amount = Decimal(row.amount)
    signed = -amount if row.direction == "DBIT" else amount
    if row.reversal:
        signed = -signed
    assert row.booking_date is not None
    return Transaction(
        booked=row.booking_date,
        amount=signed,
        currency=row.currency,
        counterparty=row.counterparty_name,
        remittance=row.remittance,
        mcc=int(row.mcc) if row.mcc.isdigit() else None,
        bank_code=_bank_code(row),
    )


def customer_profile(session: Session, customer_id: int, as_of: dt.date) -> Profile | None:
    """The customer's profile at the end of ``as_of`` (module docstring)."""
    booked = (
        BankTransaction.status == "BOOK",
        BankTransaction.booking_date.is_not(None),
        BankTransaction.booking_date <= as_of,
    )
    account = session.execute(
        select(BankAccount.id, BankAccount.currency)
        .join(BankTransaction, BankTransaction.account_id == BankAccount.id)
        .where(BankAccount.customer_id == customer_id, *booked)
        .group_by(BankAccount.id, BankAccount.currency)
        .order_by(func.count(BankTransaction.id).desc(), BankAccount.id)
        .limit(1)
    ).first()
    if account is None:
        return None
    rows = session.scalars(
        select(BankTransaction)
        .where(BankTransaction.account_id == account.id, *booked)
        .order_by(BankTransaction.booking_date, BankTransaction.id)
    ).all()
    first = session.scalars(
        select(BankStatement.opening_balance)
        .where(BankStatement.account_id == account.id)
        .order_by(
            BankStatement.opening_date.is_(None), BankStatement.opening_date, BankStatement.id
        )
        .limit(1)
    ).first()
    opening = Decimal(first) if first is not None else Decimal(0)
    return compute_profile((transaction_of(row) for row in rows), as_of, account.currency, opening)
