"""Bank data imported from statements: accounts, statements, transactions.

- ``bank_accounts``: an account as statements name it, UNIQUE on (scheme, identifier,
  currency): a multi-currency IBAN is one row per currency. ``provider_ref`` is the
  servicer's own id of it (Open Banking ``AccountId``); ``customer_id`` the owner, if known.
- ``bank_statements``: one statement or report as imported: the file's SHA-256, its kind,
  message id, statement id and sequence, period and balances. UNIQUE on (account, kind,
  ref): ``ref`` is ``message id/statement id`` when the file has them, else the file's
  digest and the statement's place in it, so the same statement is recorded once.
- ``bank_transactions``: one entry, amount as NUMERIC (magnitude; ``direction`` CRDT or
  DBIT), UNIQUE on (account, ``entry_key``): ``cloud.bank.keys`` explains the key. It points
  at the statement that first brought it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId

# ISO 20022 amounts: at most 18 digits, 5 after the point.
Amount = Numeric(18, 5, asdecimal=True)


class BankAccount(Base):
    """A bank account that statements are about."""

    __tablename__ = "bank_accounts"
    __table_args__ = (UniqueConstraint("scheme", "identifier", "currency"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme: Mapped[str] = mapped_column(String(40))  # IBAN, OTHER, MT940, UK.OBIE....
    identifier: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    servicer: Mapped[str] = mapped_column(String(140), default="")
    name: Mapped[str] = mapped_column(String(140), default="")
    provider_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class BankStatement(Base):
    """One imported statement (camt.053), report (camt.052), MT940 message or export."""

    __tablename__ = "bank_statements"
    __table_args__ = (UniqueConstraint("account_id", "kind", "ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("bank_accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # parsed.KINDS
    ref: Mapped[str] = mapped_column(String(200))
    file_digest: Mapped[str] = mapped_column(String(64), index=True)  # SHA-256 hex
    file_name: Mapped[str] = mapped_column(String(255), default="")
    message_id: Mapped[str] = mapped_column(String(64), default="")
    statement_id: Mapped[str] = mapped_column(String(64), default="")
    sequence: Mapped[str] = mapped_column(String(32), default="")
    created: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    period_start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    opening_balance: Mapped[Decimal | None] = mapped_column(Amount)  # signed
    opening_date: Mapped[dt.date | None] = mapped_column(Date)
    closing_balance: Mapped[Decimal | None] = mapped_column(Amount)  # signed
    closing_date: Mapped[dt.date | None] = mapped_column(Date)
    balance_currency: Mapped[str] = mapped_column(String(3), default="")
    entries: Mapped[int] = mapped_column(default=0)  # entries in the file's statement
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    imported_by: Mapped[str] = mapped_column(String(128), default="")


class BankTransaction(Base):
    """One entry on an account, kept once whatever the number of files it came in."""

    __tablename__ = "bank_transactions"
    __table_args__ = (UniqueConstraint("account_id", "entry_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("bank_accounts.id", ondelete="CASCADE"))
    statement_id: Mapped[int] = mapped_column(
        ForeignKey("bank_statements.id", ondelete="CASCADE"), index=True
    )
    entry_key: Mapped[str] = mapped_column(String(64))  # keys.entry_keys
    amount: Mapped[Decimal] = mapped_column(Amount)  # magnitude
    currency: Mapped[str] = mapped_column(String(3))
    direction: Mapped[str] = mapped_column(String(4))  # CRDT or DBIT
    status: Mapped[str] = mapped_column(String(4))  # BOOK, PDNG, INFO
    reversal: Mapped[bool] = mapped_column(Boolean, default=False)
    booking_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    value_date: Mapped[dt.date | None] = mapped_column(Date)
    counterparty_name: Mapped[str] = mapped_column(String(140), default="")
    counterparty_account: Mapped[str] = mapped_column(String(64), default="")
    remittance: Mapped[str] = mapped_column(Text, default="")
    domain_code: Mapped[str] = mapped_column(String(4), default="")
    family_code: Mapped[str] = mapped_column(String(40), default="")
    subfamily_code: Mapped[str] = mapped_column(String(40), default="")
    proprietary_code: Mapped[str] = mapped_column(String(64), default="")
    proprietary_issuer: Mapped[str] = mapped_column(String(64), default="")
    gvc: Mapped[str] = mapped_column(String(3), default="")
    mcc: Mapped[str] = mapped_column(String(4), default="")
    end_to_end_id: Mapped[str] = mapped_column(String(64), default="")
    servicer_ref: Mapped[str] = mapped_column(String(64), default="")
    reference: Mapped[str] = mapped_column(String(64), default="")
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    @property
    def signed_amount(self) -> Decimal:
        """The amount with its sign: negative for a debit."""
        return self.amount if self.direction == "CRDT" else -self.amount
