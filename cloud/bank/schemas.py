"""Request and response schemas of the bank data API (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, Date, DateTime, Decimal, File, Integer, List, Nested, String
from apiflask.validators import OneOf, Range

from cloud.bank.formats import FORMATS
from cloud.bank.parsed import DIRECTIONS, STATUSES
from cloud.fleet.schemas import DEFAULT_PAGE, MAX_ID, MAX_PAGE

MAX_ROW_ID = 2**63 - 1


class StatementsForm(Schema):
    file = List(
        File(),
        metadata={
            "description": "one or more statement files (camt.053/052 XML, MT940, Open "
            "Banking JSON, CSV); each is imported in a transaction of its own, in order"
        },
    )
    format = String(
        load_default="auto",
        validate=OneOf(FORMATS),
        metadata={"description": "auto (by content; CSV is never guessed), camt, mt940, obie, csv"},
    )
    mapping = File(metadata={"description": "the column mapping of a CSV file (TOML or JSON)"})
    customer = Integer(
        validate=Range(1, MAX_ID),
        metadata={"description": "the customer who owns the accounts in the files"},
    )


class FileSummaryOut(Schema):
    file = String(required=True)
    format = String(required=True, validate=OneOf(FORMATS))
    statements = Integer(required=True)
    new = Integer(required=True, metadata={"description": "entries added"})
    present = Integer(
        required=True, metadata={"description": "entries already imported (from any file)"}
    )
    booked = Integer(
        required=True, metadata={"description": "pending entries this file reports booked"}
    )
    accounts = List(Integer(), required=True, metadata={"description": "the accounts' ids"})


class ImportOut(Schema):
    files = List(Nested(FileSummaryOut), required=True)


class PageQuery(Schema):
    after = Integer(
        validate=Range(0, MAX_ROW_ID), metadata={"description": "the `next` of the previous page"}
    )
    limit = Integer(load_default=DEFAULT_PAGE, validate=Range(1, MAX_PAGE))


class AccountOut(Schema):
    id = Integer(required=True)
    scheme = String(required=True, metadata={"description": "IBAN, OTHER, MT940, UK.OBIE..."})
    identifier = String(required=True)
    currency = String(required=True)
    servicer = String(required=True)
    name = String(required=True)
    customer_id = Integer(allow_none=True, required=True)


class AccountsOut(Schema):
    accounts = List(Nested(AccountOut), required=True)
    next = Integer(allow_none=True, required=True)


class BankCodeOut(Schema):
    domain = String(required=True, metadata={"description": "ISO 20022 domain (PMNT)"})
    family = String(required=True)
    subfamily = String(required=True)
    proprietary = String(required=True)
    issuer = String(required=True)
    gvc = String(required=True, metadata={"description": "SWIFT/DK business transaction code"})


class TransactionOut(Schema):
    id = Integer(required=True)
    statement_id = Integer(required=True, metadata={"description": "the statement it came in"})
    amount = Decimal(as_string=True, required=True, metadata={"description": "magnitude"})
    currency = String(required=True)
    direction = String(required=True, validate=OneOf(DIRECTIONS))
    status = String(required=True, validate=OneOf(STATUSES))
    reversal = Boolean(required=True)
    booking_date = Date(allow_none=True, required=True)
    value_date = Date(allow_none=True, required=True)
    counterparty_name = String(required=True)
    counterparty_account = String(required=True)
    remittance = String(required=True)
    bank_code = Nested(BankCodeOut, required=True)
    mcc = String(required=True, metadata={"description": "ISO 18245 merchant category code"})
    end_to_end_id = String(required=True)
    servicer_ref = String(required=True)
    reference = String(required=True)
    imported_at = DateTime(required=True)


class TransactionsOut(Schema):
    account = Nested(AccountOut, required=True)
    transactions = List(Nested(TransactionOut), required=True)
    next = Integer(
        allow_none=True, required=True, metadata={"description": "`after` for the next page"}
    )
