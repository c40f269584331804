"""UK Open Banking Read/Write API v3.1 account information JSON into the common parsed form:
accounts (``OBReadAccount6``), balances (``OBReadBalance1``) and transactions
(``OBReadTransaction6``), one of them or several in one ``Data`` object.

Open Banking names an account by the servicer's ``AccountId``; the account's scheme and
identification come from the accounts payload. A file with transactions or balances only
names the account by ``AccountId`` (``AccountRef.provider_ref``), which the import service
finds among the accounts imported before. ``TransactionId`` is the servicer's reference.
Errors name the element as a JSON path (``$.Data.Transaction[0].Amount``) and the line its
object starts on.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from cloud.bank import jsonlines
from cloud.bank.parsed import (
    BOOKED,
    CREDIT,
    DEBIT,
    INFORMATION,
    PENDING,
    AccountRef,
    Balance,
    BankCode,
    BankImportError,
    Entry,
    Statement,
    as_utc,
    check_currency,
    parse_amount,
)

DIRECTIONS = {"Credit": CREDIT, "Debit": DEBIT}
STATUSES = {"Booked": BOOKED, "Pending": PENDING, "Rejected": INFORMATION}
OPENING = ("OpeningBooked", "PreviouslyClosedBooked")
CLOSING = ("ClosingBooked", "InterimBooked")
SCHEMES = {"UK.OBIE.IBAN": "IBAN", "IBAN": "IBAN"}


class _Reader:
    """One file's reader: the file name for errors."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error(self, path: str, obj: Any, message: str) -> BankImportError:
        return BankImportError(self.name, path, getattr(obj, "line", 0), message)

    def field(self, obj: Any, path: str, key: str, required: bool = True) -> Any:
        value = obj.get(key) if isinstance(obj, dict) else None
        if required and value in (None, "", [], {}):
            raise self.error("%s.%s" % (path, key), obj, "missing %s" % key)
        return value

    def text(self, obj: Any, path: str, key: str) -> str:
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error("%s.%s" % (path, key), obj, "%s is not a string" % key)
        return " ".join(value.split())

    def money(self, obj: Any, path: str, key: str = "Amount") -> tuple[Decimal, str]:
        holder = self.field(obj, path, key)
        where = "%s.%s" % (path, key)
        if not isinstance(holder, dict):
            raise self.error(where, obj, "%s is not an object" % key)
        amount = self.field(holder, where, "Amount")
        currency = self.field(holder, where, "Currency")
        if not isinstance(currency, str) or not check_currency(currency):
            raise self.error(
                where + ".Currency", holder, "%r is not an ISO 4217 currency code" % currency
            )
        if not isinstance(amount, str):  # the standard sends amounts as strings, never floats
            raise self.error(where + ".Amount", holder, "the amount must be a string")
        try:
            return parse_amount(amount), currency
        except ValueError as exc:
            raise self.error(where + ".Amount", holder, str(exc)) from None

    def direction(self, obj: Any, path: str) -> str:
        value = self.field(obj, path, "CreditDebitIndicator")
        if value not in DIRECTIONS:
            raise self.error(
                path + ".CreditDebitIndicator", obj, "%r is neither Credit nor Debit" % value
            )
        return DIRECTIONS[value]

    def moment(self, obj: Any, path: str, key: str, required: bool) -> dt.datetime | None:
        value = self.field(obj, path, key, required)
        if value in (None, ""):
            return None
        try:
            return as_utc(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))
        except ValueError:
            raise self.error(
                "%s.%s" % (path, key), obj, "%r is not a date and time" % value
            ) from None


def looks_like(data: bytes) -> bool:
    """Whether ``data`` is JSON with Open Banking's ``Data`` envelope (format detection)."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \r\n\t")
    return head.startswith(b"{") and b'"Data"' in data


def parse(name: str, data: bytes) -> tuple[Statement, ...]:
    """A statement per account named in the file; ``BankImportError`` if malformed."""
    reader = _Reader(name)
    try:
        document = jsonlines.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise BankImportError(name, "", 0, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BankImportError(name, "", exc.lineno, "not valid JSON: %s" % exc.msg) from None
    payload = reader.field(document, "$", "Data")
    if not isinstance(payload, dict):
        raise reader.error("$.Data", document, "Data is not an object")
    sections = [key for key in ("Account", "Balance", "Transaction") if key in payload]
    if not sections:
        raise reader.error("$.Data", payload, "no Account, Balance or Transaction list")
    accounts: dict[str, AccountRef] = {}
    for index, item in enumerate(_items(reader, payload, "Account")):
        account = _account(reader, item, "$.Data.Account[%d]" % index)
        accounts[account.provider_ref] = account
    balances: dict[str, list[tuple[str, Balance]]] = {}
    for index, item in enumerate(_items(reader, payload, "Balance")):
        path = "$.Data.Balance[%d]" % index
        account_id = str(reader.field(item, path, "AccountId"))
        balances.setdefault(account_id, []).append(_balance(reader, item, path))
    entries: dict[str, list[Entry]] = {}
    for index, item in enumerate(_items(reader, payload, "Transaction")):
        path = "$.Data.Transaction[%d]" % index
        account_id = str(reader.field(item, path, "AccountId"))
        entries.setdefault(account_id, []).append(_entry(reader, item, path))
    statements = []
    for account_id in dict.fromkeys([*accounts, *balances, *entries]):
        found = entries.get(account_id, [])
        typed = balances.get(account_id, [])
        currency = found[0].currency if found else typed[0][1].currency if typed else ""
        account = accounts.get(account_id) or AccountRef("", "", currency, provider_ref=account_id)
        opening = next((b for kind, b in typed if kind in OPENING), None)
        closing = next((b for kind in CLOSING for k, b in typed if k == kind), None)
        days = [entry.booking_date for entry in found if entry.booking_date]
        statements.append(
            Statement(
                kind="obie",
                account=account,
                message_id="",
                statement_id=account_id,
                sequence="",
                created=None,
                period_start=_start(min(days)) if days else None,
                period_end=_start(max(days)) if days else None,
                opening=opening,
                closing=closing,
                entries=tuple(found),
            )
        )
    return tuple(statements)


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _items(reader: _Reader, payload: dict[str, Any], key: str) -> list[Any]:
    items = payload.get(key, [])
    if not isinstance(items, list):
        raise reader.error("$.Data." + key, payload, "%s is not a list" % key)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise reader.error("$.Data.%s[%d]" % (key, index), payload, "not an object")
    return items


def _account(reader: _Reader, item: Any, path: str) -> AccountRef:
    account_id = str(reader.field(item, path, "AccountId"))
    currency = reader.field(item, path, "Currency")
    if not isinstance(currency, str) or not check_currency(currency):
        raise reader.error(path + ".Currency", item, "%r is not an ISO 4217 currency" % currency)
    identifications = reader.field(item, path, "Account", required=False) or []
    if not isinstance(identifications, list) or not identifications:
        raise reader.error(path + ".Account", item, "no account identification (Account[])")
    first = identifications[0]
    where = path + ".Account[0]"
    scheme = str(reader.field(first, where, "SchemeName"))
    servicer = item.get("Servicer") or {}
    return AccountRef(
        scheme=SCHEMES.get(scheme, scheme),
        identifier=str(reader.field(first, where, "Identification")).replace(" ", ""),
        currency=currency,
        servicer=reader.text(servicer, path + ".Servicer", "Identification"),
        name=reader.text(first, where, "Name") or reader.text(item, path, "Nickname"),
        provider_ref=account_id,
    )


def _balance(reader: _Reader, item: Any, path: str) -> tuple[str, Balance]:
    amount, currency = reader.money(item, path)
    signed = amount if reader.direction(item, path) == CREDIT else -amount
    when = reader.moment(item, path, "DateTime", required=True)
    kind = str(reader.field(item, path, "Type"))
    return kind, Balance(signed, currency, when.date() if when else None)


def _entry(reader: _Reader, item: Any, path: str) -> Entry:
    amount, currency = reader.money(item, path)
    direction = reader.direction(item, path)
    status = reader.field(item, path, "Status")
    if status not in STATUSES:
        raise reader.error(path + ".Status", item, "%r is neither Booked nor Pending" % status)
    booked = reader.moment(item, path, "BookingDateTime", required=True)
    valued = reader.moment(item, path, "ValueDateTime", required=False)
    other = item.get("DebtorAccount" if direction == CREDIT else "CreditorAccount") or {}
    merchant = item.get("MerchantDetails") or {}
    code = item.get("BankTransactionCode") or {}
    proprietary = item.get("ProprietaryBankTransactionCode") or {}
    mcc = reader.text(merchant, path + ".MerchantDetails", "MerchantCategoryCode")
    return Entry(
        amount=amount,
        currency=currency,
        direction=direction,
        status=STATUSES[status],
        booking_date=booked.date() if booked else None,
        value_date=valued.date() if valued else None,
        counterparty_name=reader.text(other, path, "Name")
        or reader.text(merchant, path, "MerchantName"),
        counterparty_account=reader.text(other, path, "Identification").replace(" ", ""),
        remittance=reader.text(item, path, "TransactionInformation"),
        bank_code=BankCode(
            family=reader.text(code, path + ".BankTransactionCode", "Code"),
            subfamily=reader.text(code, path + ".BankTransactionCode", "SubCode"),
            proprietary=reader.text(proprietary, path, "Code"),
            issuer=reader.text(proprietary, path, "Issuer"),
        ),
        mcc=mcc,
        servicer_ref=reader.text(item, path, "TransactionId"),
        reference=reader.text(item, path, "TransactionReference"),
        line=getattr(item, "line", 0),
    )
