"""The common parsed form every importer returns, and the one error they raise.

Importers are pure: ``parse(name, data) -> tuple[Statement, ...]`` or ``BankImportError``.
Amounts are ``Decimal``: an entry's ``amount`` is its magnitude and ``direction`` its sign
(ISO 20022's ``CdtDbtInd``: ``CRDT`` adds to the account, ``DBIT`` takes from it);
balances are signed (negative: the account owes the bank).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

CREDIT = "CRDT"
DEBIT = "DBIT"
DIRECTIONS = (CREDIT, DEBIT)
BOOKED, PENDING, INFORMATION = "BOOK", "PDNG", "INFO"
STATUSES = (BOOKED, PENDING, INFORMATION)
KINDS = ("camt.053", "camt.052", "mt940", "obie", "csv")

# ISO 4217 in ISO 20022's own pattern (ActiveOrHistoricCurrencyCode: [A-Z]{3,3}).
_CURRENCY = re.compile(r"[A-Z]{3}")
# ActiveOrHistoricCurrencyAndAmount: at most 18 digits, 5 of them after the point.
MAX_DIGITS, MAX_FRACTION = 18, 5


class BankImportError(Exception):
    """A statement file that cannot be imported: which file, element and line, and why.

    ``str()`` is one line: ``statement.xml: /Document/BkToCstmrStmt/Stmt/Ntry[2]/Amt
    (line 41): no amount``. Named so as not to shadow Python's own ``ImportError``.
    """

    def __init__(self, file: str, element: str, line: int, message: str) -> None:
        self.file, self.element, self.line, self.message = file, element, line, message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.element
        if self.line:
            where = "%s (line %d)" % (where, self.line) if where else "line %d" % self.line
        return (
            "%s: %s: %s" % (self.file, where, self.message)
            if where
            else ("%s: %s" % (self.file, self.message))
        )


@dataclass(frozen=True)
class AccountRef:
    """The account a statement is about, as the file names it."""

    scheme: str  # "IBAN", or the file's scheme ("UK.OBIE.SortCodeAccountNumber", "MT940")
    identifier: str  # empty when only ``provider_ref`` is known (Open Banking transactions)
    currency: str
    servicer: str = ""  # BIC or name of the bank that keeps the account
    name: str = ""
    provider_ref: str = ""  # the servicer's own account id (Open Banking AccountId)


@dataclass(frozen=True)
class Balance:
    """A signed balance on a date."""

    amount: Decimal
    currency: str
    on: dt.date | None


@dataclass(frozen=True)
class BankCode:
    """Bank transaction code: ISO 20022 domain/family/subfamily, proprietary, SWIFT GVC."""

    domain: str = ""
    family: str = ""
    subfamily: str = ""
    proprietary: str = ""  # camt Prtry/Cd, MT940 :61: type (NTRF), Open Banking codes
    issuer: str = ""
    gvc: str = ""  # German "Geschäftsvorfallcode", three digits (MT940 :86:, DK camt)


@dataclass(frozen=True)
class Entry:
    """One booked (or pending) movement on the account."""

    amount: Decimal  # magnitude, > 0 unless the file says 0
    currency: str
    direction: str  # CREDIT or DEBIT
    status: str  # BOOKED, PENDING or INFORMATION
    booking_date: dt.date | None
    value_date: dt.date | None
    counterparty_name: str = ""
    counterparty_account: str = ""
    remittance: str = ""
    bank_code: BankCode = BankCode()
    mcc: str = ""  # ISO 18245 merchant category code, four digits
    end_to_end_id: str = ""
    servicer_ref: str = ""  # the account servicer's reference: unique per entry if present
    reference: str = ""  # any other reference (MT940 customer reference, OBIE reference)
    reversal: bool = False
    line: int = 0  # where the entry starts in its file


@dataclass(frozen=True)
class Statement:
    """One statement (or report) of one account."""

    kind: str  # one of KINDS
    account: AccountRef
    message_id: str  # GrpHdr/MsgId, MT940 :20:; empty if the format has none
    statement_id: str  # Stmt/Id or Rpt/Id, MT940 :28C:
    sequence: str  # ElctrncSeqNb / LglSeqNb, MT940 :28C: sequence
    created: dt.datetime | None
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    opening: Balance | None
    closing: Balance | None
    entries: tuple[Entry, ...]


def check_currency(code: str) -> bool:
    """Whether ``code`` has ISO 4217's shape (three capital letters)."""
    return bool(_CURRENCY.fullmatch(code))


def parse_amount(text: str, decimal_separator: str = ".") -> Decimal:
    """A non-negative amount in ISO 20022's limits; ``ValueError`` with the reason if not."""
    cleaned = text.strip()
    if decimal_separator != ".":
        cleaned = cleaned.replace(decimal_separator, ".")
    if not re.fullmatch(r"\d+(\.\d*)?|\.\d+", cleaned):
        raise ValueError("%r is not an amount" % text)
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("%r is not an amount" % text) from None
    _sign, digits, exponent = value.as_tuple()
    fraction = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if fraction > MAX_FRACTION or len(digits) > MAX_DIGITS:
        raise ValueError(
            "%r has more than %d digits or %d decimals" % (text, MAX_DIGITS, MAX_FRACTION)
        )
    return value


def as_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` with a time zone: a time without an offset is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def day_start(day: dt.date) -> dt.datetime:
    """Midnight UTC at the start of ``day`` (for formats that give only dates)."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
