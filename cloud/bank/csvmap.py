"""CSV exports into the common parsed form, read through a column mapping.

The mapping is a small TOML or JSON file (``docs/operations.md``, "Bank data")::

    [account]                 # the account the file is about
    identifier = "DE89370400440532013000"   # or identifier_column = "Account"
    scheme = "IBAN"           # default: IBAN if it looks like one
    currency = "EUR"          # when there is no currency column

    [columns]                 # field -> column heading
    booking_date = "Booking date"
    amount = "Amount"
    # value_date, currency, direction, debit, credit, counterparty_name,
    # counterparty_account, remittance, reference, servicer_ref, end_to_end_id,
    # mcc, bank_code

    [format]
    delimiter = ","           # default ","
    encoding = "utf-8"
    date = "%Y-%m-%d"         # strptime format
    decimal = "."             # decimal separator
    thousands = ""            # grouping separator to drop
    sign = "signed"           # signed (negative: debit), indicator (a direction
                              # column), or split (debit and credit columns)
    credit_values = ["C", "CR", "CRDT"]
    debit_values = ["D", "DR", "DBIT"]
    skip_lines = 0            # lines before the heading

Errors name the column and the file's line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from cloud.bank.parsed import (
    BOOKED,
    CREDIT,
    DEBIT,
    AccountRef,
    BankCode,
    BankImportError,
    Entry,
    Statement,
    check_currency,
    day_start,
    parse_amount,
)

FIELDS = (
    "booking_date",
    "value_date",
    "amount",
    "currency",
    "direction",
    "debit",
    "credit",
    "counterparty_name",
    "counterparty_account",
    "remittance",
    "reference",
    "servicer_ref",
    "end_to_end_id",
    "mcc",
    "bank_code",
)
SIGNS = ("signed", "indicator", "split")
_IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")
_MCC = re.compile(r"\d{4}")


@dataclass(frozen=True)
class CsvMapping:
    """How to read one bank's CSV export."""

    columns: Mapping[str, str]
    identifier: str = ""
    identifier_column: str = ""
    scheme: str = ""
    currency: str = ""
    servicer: str = ""
    delimiter: str = ","
    encoding: str = "utf-8"
    date_format: str = "%Y-%m-%d"
    decimal: str = "."
    thousands: str = ""
    sign: str = "signed"
    credit_values: tuple[str, ...] = ("C", "CR", "CRDT", "CREDIT")
    debit_values: tuple[str, ...] = ("D", "DR", "DBIT", "DEBIT")
    skip_lines: int = 0


def load_mapping(name: str, data: bytes) -> CsvMapping:
    """A mapping from TOML or JSON; ``BankImportError`` naming the key that is wrong."""
    try:
        text = data.decode("utf-8-sig")
        raw = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BankImportError(name, "", 0, "not a TOML or JSON mapping: %s" % exc) from None
    account, columns, fmt = (raw.get(key) or {} for key in ("account", "columns", "format"))
    if not all(isinstance(part, dict) for part in (account, columns, fmt)):
        raise BankImportError(name, "", 0, "account, columns and format must be tables")
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise BankImportError(name, "columns." + unknown[0], 0, "unknown field")
    sign = fmt.get("sign", "signed")
    if sign not in SIGNS:
        raise BankImportError(name, "format.sign", 0, "%r is not one of %s" % (sign, SIGNS))
    needed = {"signed": ("amount",), "indicator": ("amount", "direction")}.get(
        sign, ("debit", "credit")
    )
    for key in ("booking_date", *needed):
        if key not in columns:
            raise BankImportError(name, "columns." + key, 0, "missing (sign = %s)" % sign)
    if not account.get("identifier") and not account.get("identifier_column"):
        raise BankImportError(name, "account.identifier", 0, "missing (or identifier_column)")
    currency = str(account.get("currency", ""))
    if currency and not check_currency(currency):
        raise BankImportError(name, "account.currency", 0, "%r is not ISO 4217" % currency)
    if not currency and "currency" not in columns:
        raise BankImportError(name, "account.currency", 0, "missing (or a currency column)")
    try:
        return CsvMapping(
            columns={str(k): str(v) for k, v in columns.items()},
            identifier=str(account.get("identifier", "")),
            identifier_column=str(account.get("identifier_column", "")),
            scheme=str(account.get("scheme", "")),
            currency=currency,
            servicer=str(account.get("servicer", "")),
            delimiter=str(fmt.get("delimiter", ",")),
            encoding=str(fmt.get("encoding", "utf-8")),
            date_format=str(fmt.get("date", "%Y-%m-%d")),
            decimal=str(fmt.get("decimal", ".")),
            thousands=str(fmt.get("thousands", "")),
            sign=sign,
            credit_values=tuple(str(v).upper() for v in fmt.get("credit_values", ()))
            or CsvMapping.credit_values,
            debit_values=tuple(str(v).upper() for v in fmt.get("debit_values", ()))
            or CsvMapping.debit_values,
            skip_lines=int(fmt.get("skip_lines", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise BankImportError(name, "format", 0, str(exc)) from None


def parse(name: str, data: bytes, mapping: CsvMapping) -> tuple[Statement, ...]:
    """A statement per account in the file; ``BankImportError`` naming column and line."""
    try:
        text = data.decode(mapping.encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise BankImportError(
            name, "", 0, "cannot decode as %s: %s" % (mapping.encoding, exc)
        ) from None
    text = text.lstrip("\ufeff")
    lines = io.StringIO(text, newline="")
    for _ in range(mapping.skip_lines):
        lines.readline()
    reader = csv.DictReader(lines, delimiter=mapping.delimiter)
    heading = reader.fieldnames or []
    wanted = list(mapping.columns.values())
    if mapping.identifier_column:
        wanted.append(mapping.identifier_column)
    for column in wanted:
        if column not in heading:
            raise BankImportError(
                name, "column %r" % column, mapping.skip_lines + 1, "not in the heading"
            )
    by_account: dict[str, list[Entry]] = {}
    try:
        for row in reader:
            line = mapping.skip_lines + reader.line_num
            if not any((value or "").strip() for value in row.values()):
                continue
            account = mapping.identifier or (row.get(mapping.identifier_column) or "").strip()
            if not account:
                raise BankImportError(
                    name, "column %r" % mapping.identifier_column, line, "no account"
                )
            by_account.setdefault(account, []).append(_entry(name, row, line, mapping))
    except csv.Error as exc:
        raise BankImportError(name, "", mapping.skip_lines + reader.line_num, str(exc)) from None
    if not by_account and mapping.identifier:
        by_account[mapping.identifier] = []
    statements = []
    for identifier, entries in by_account.items():
        compact = identifier.replace(" ", "")
        scheme = mapping.scheme or ("IBAN" if _IBAN.fullmatch(compact) else "OTHER")
        days = [entry.booking_date for entry in entries if entry.booking_date]
        statements.append(
            Statement(
                kind="csv",
                account=AccountRef(
                    scheme=scheme,
                    identifier=compact if scheme == "IBAN" else identifier,
                    currency=mapping.currency or (entries[0].currency if entries else ""),
                    servicer=mapping.servicer,
                ),
                message_id="",
                statement_id="",
                sequence="",
                created=None,
                period_start=day_start(min(days)) if days else None,
                period_end=day_start(max(days)) if days else None,
                opening=None,
                closing=None,
                entries=tuple(entries),
            )
        )
    return tuple(statements)


def _entry(name: str, row: dict[str, str], line: int, mapping: CsvMapping) -> Entry:
    def cell(key: str) -> str:
        column = mapping.columns.get(key)
        return " ".join((row.get(column) or "").split()) if column else ""

    def fail(key: str, message: str) -> BankImportError:
        return BankImportError(name, "column %r" % mapping.columns[key], line, message)

    def amount(key: str) -> Decimal:
        text = cell(key).replace(" ", "")
        if mapping.thousands:
            text = text.replace(mapping.thousands, "")
        negative = text.startswith("-")
        try:
            value = parse_amount(text.lstrip("+-"), mapping.decimal)
        except ValueError as exc:
            raise fail(key, str(exc)) from None
        return -value if negative else value

    def date(key: str, required: bool) -> dt.date | None:
        text = cell(key)
        if not text:
            if required:
                raise fail(key, "no date")
            return None
        try:
            return dt.datetime.strptime(text, mapping.date_format).date()
        except ValueError:
            raise fail(key, "%r is not a date like %s" % (text, mapping.date_format)) from None

    if mapping.sign == "split":
        debit = amount("debit") if cell("debit") else Decimal(0)
        credit = amount("credit") if cell("credit") else Decimal(0)
        if bool(debit) == bool(credit):
            raise fail("debit", "exactly one of the debit and credit columns must be filled")
        value, direction = (abs(credit), CREDIT) if credit else (abs(debit), DEBIT)
    else:
        signed = amount("amount")
        value = abs(signed)
        direction = CREDIT if signed >= 0 else DEBIT
        if mapping.sign == "indicator":
            mark = cell("direction").upper()
            if mark in mapping.credit_values:
                direction = CREDIT
            elif mark in mapping.debit_values:
                direction = DEBIT
            else:
                raise fail("direction", "%r is neither a credit nor a debit mark" % mark)
    currency = cell("currency") or mapping.currency
    if not check_currency(currency):
        raise (fail("currency", "%r is not an ISO 4217 currency code" % currency))
    mcc = cell("mcc")
    if mcc and not _MCC.fullmatch(mcc):
        raise fail("mcc", "%r is not an ISO 18245 merchant category code" % mcc)
    return Entry(
        amount=value,
        currency=currency,
        direction=direction,
        status=BOOKED,
        booking_date=date("booking_date", True),
        value_date=date("value_date", False),
        counterparty_name=cell("counterparty_name"),
        counterparty_account=cell("counterparty_account").replace(" ", ""),
        remittance=cell("remittance"),
        bank_code=BankCode(proprietary=cell("bank_code")),
        mcc=mcc,
        end_to_end_id=cell("end_to_end_id"),
        servicer_ref=cell("servicer_ref"),
        reference=cell("reference"),
        line=line,
    )
