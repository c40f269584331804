"""SWIFT MT940 customer statements into the common parsed form, read by the ``mt-940``
library (``mt940``): it is the parser, this module maps its output.

A file may hold several statements one after another; each starts with ``:20:`` and is
parsed on its own, so each keeps its own balances. The debit/credit mark of ``:61:`` gives
the direction (``C`` and ``RD``, the reversal of a debit, are credits; ``D`` and ``RC``
debits). ``:86:`` details follow the German structured form when present (``?20``..``?29``
purpose, ``?32`` name, ``EREF+``), which the library takes apart; the three digits before
``?00`` are the GVC.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

import mt940

from cloud.bank.parsed import (
    BOOKED,
    CREDIT,
    DEBIT,
    AccountRef,
    Balance,
    BankCode,
    BankImportError,
    Entry,
    Statement,
    check_currency,
    day_start,
)

# The library logs each field it cannot read at ERROR, with its whole pattern; the importer
# reports one line instead (``BankImportError``).
logging.getLogger("mt940").setLevel(logging.CRITICAL)

_IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")
_START = re.compile(r"^:20:", re.MULTILINE)
_NONE = ("NONREF", "NOTPROVIDED")


def decode(data: bytes) -> str:
    """The text of an MT940 file: UTF-8, else code page 852 as the library falls back to."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp852")
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def looks_like(data: bytes) -> bool:
    """Whether ``data`` starts like an MT940 message (format detection)."""
    head = data[:512].lstrip(b"\xef\xbb\xbf\r\n\t {}:1234FAB")
    return b":20:" in data[:512] and (b":25:" in data[:2048] or head.startswith(b"20:"))


def parse(name: str, data: bytes) -> tuple[Statement, ...]:
    """Every statement of an MT940 file; ``BankImportError`` if the library refuses one."""
    text = decode(data)
    starts = [match.start() for match in _START.finditer(text)]
    if not starts:
        raise BankImportError(name, ":20:", 1, "no MT940 statement (no :20: field)")
    statements = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(text)
        first_line = text.count("\n", 0, start) + 1
        statements.append(_statement(name, text[start:end], first_line))
    return tuple(statements)


def library_options() -> Any:
    """The library's options: ``?31`` of ``:86:`` is the counterparty's account (as in 4.x;
    5.x prepends it to the name unless asked). None on 4.x, which has no options."""
    options = getattr(mt940, "Options", None)
    return options(applicant_iban=True) if options is not None else None


def library_parse(chunk: str) -> Any:
    """The library's own reading of one statement (``mt940.models.Transactions``)."""
    options = library_options()
    transactions = (
        mt940.models.Transactions(options=options)
        if options is not None
        else mt940.models.Transactions()
    )
    transactions.parse(chunk)
    return transactions


def _statement(name: str, chunk: str, first_line: int) -> Statement:
    try:
        parsed = library_parse(chunk)
    except Exception as exc:  # the library raises RuntimeError, ValueError, decimal errors
        raise _refusal(name, chunk, first_line, exc) from None
    data = parsed.data
    account_id = str(data.get("account_identification") or "").strip()
    if not account_id:
        raise BankImportError(name, ":25:", first_line, "no account identification (:25:)")
    opening = _balance(_first(data, "final_opening_balance", "intermediate_opening_balance"))
    closing = _balance(_first(data, "final_closing_balance", "intermediate_closing_balance"))
    known = opening or closing
    currency = known.currency if known is not None else ""
    if not check_currency(currency):
        raise BankImportError(
            name,
            ":60F:",
            _line_of(chunk, "60", first_line),
            "%r is not an ISO 4217 currency" % currency,
        )
    iban = account_id.replace(" ", "")
    account = AccountRef(
        scheme="IBAN" if _IBAN.fullmatch(iban) else "MT940",
        identifier=iban if _IBAN.fullmatch(iban) else account_id,
        currency=currency,
    )
    lines = _lines_of(chunk, "61", first_line)
    entries = tuple(
        _entry(name, transaction.data, currency, lines[index] if index < len(lines) else 0)
        for index, transaction in enumerate(parsed)
    )
    period = [entry.value_date for entry in entries if entry.value_date] or [
        b.on for b in (opening, closing) if b and b.on
    ]
    return Statement(
        kind="mt940",
        account=account,
        message_id=str(data.get("transaction_reference") or ""),
        statement_id=str(data.get("statement_number") or ""),
        sequence=str(data.get("sequence_number") or ""),
        created=None,
        period_start=day_start(opening.on) if opening and opening.on else None,
        period_end=day_start(max(period)) if period else None,
        opening=opening,
        closing=closing,
        entries=entries,
    )


def _first(data: dict[str, Any], *names: str) -> Any:
    return next((data[name] for name in names if data.get(name) is not None), None)


def _balance(balance: Any) -> Balance | None:
    if balance is None or balance.amount is None:
        return None
    amount = balance.amount.amount
    # the library signs a balance's amount by its own mark already (D: negative)
    return Balance(amount, str(balance.amount.currency or ""), _date(balance.date))


def _date(value: Any) -> dt.date | None:
    return dt.date(value.year, value.month, value.day) if value else None


def _clean(value: Any) -> str:
    text = " ".join(str(value or "").split())
    return "" if text in _NONE else text


def _entry(name: str, data: dict[str, Any], currency: str, line: int) -> Entry:
    status = str(data.get("status") or "").upper()
    if status not in ("C", "D", "RC", "RD"):
        raise BankImportError(name, ":61:", line, "%r is not a debit/credit mark" % status)
    direction = CREDIT if status in ("C", "RD") else DEBIT
    amount = data["amount"]
    entry_currency = str(amount.currency or currency)
    return Entry(
        amount=abs(amount.amount),
        currency=entry_currency,
        direction=direction,
        status=BOOKED,
        booking_date=_date(data.get("entry_date") or data.get("guessed_entry_date")),
        value_date=_date(data.get("date")),
        counterparty_name=_clean(data.get("applicant_name")),
        counterparty_account=_clean(data.get("applicant_iban") or data.get("gvc_applicant_iban")),
        remittance=_clean(data.get("purpose") or data.get("transaction_details")),
        bank_code=BankCode(
            proprietary=_clean(data.get("id")), gvc=_clean(data.get("transaction_code"))
        ),
        end_to_end_id=_clean(data.get("end_to_end_reference")),
        servicer_ref=_clean(data.get("bank_reference")),
        reference=_clean(data.get("customer_reference")),
        reversal=status.startswith("R"),
        line=line,
    )


def _lines_of(chunk: str, tag: str, first_line: int) -> list[int]:
    marker = ":%s:" % tag
    return [
        first_line + number
        for number, text in enumerate(chunk.split("\n"))
        if text.strip().startswith(marker)
    ]


def _line_of(chunk: str, tag: str, first_line: int) -> int:
    found = _lines_of(chunk, tag, first_line)
    return found[0] if found else first_line


def _refusal(name: str, chunk: str, first_line: int, exc: Exception) -> BankImportError:
    """The library's complaint as one line, at the field it could not read."""
    tag = exc.args[1] if len(exc.args) > 2 else None
    value = str(exc.args[2]) if len(exc.args) > 2 else ""
    tag_id = str(getattr(tag, "id", "") or "")
    if tag_id:
        head = value.split("\n")[0].strip()
        marker = ":%s" % tag_id
        line = first_line
        for number, text in enumerate(chunk.split("\n")):
            stripped = text.strip()
            if stripped.startswith(marker) and stripped.split(":", 2)[-1].startswith(head):
                line = first_line + number
                break
        return BankImportError(
            name, ":%s:" % tag_id, line, "the field does not match MT940's format: %r" % head
        )
    if isinstance(exc, RuntimeError):
        return BankImportError(name, "", first_line, "not a valid MT940 statement")
    return BankImportError(name, "", first_line, "not a valid MT940 statement: %s" % exc)
