"""The bank data API, for cloud operations (an operator or an API token of that role):

- ``POST /api/bank/statements``: import statement files (multipart ``file`` parts, or one
  file as the whole body: its content type names the format), each in a transaction of its
  own; 422 with one line naming the file, element and line of the first that cannot be
  read, and what the files before it brought;
- ``GET /api/bank/accounts``: the accounts statements were imported for, by id;
- ``GET /api/bank/accounts/<id>/transactions``: its transactions in import order, paged.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, abort
from flask import current_app, request
from sqlalchemy import select

from cloud.access import current_principal, require
from cloud.bank import csvmap, service
from cloud.bank.models import BankAccount, BankTransaction
from cloud.bank.parsed import BankImportError
from cloud.bank.schemas import AccountsOut, ImportOut, PageQuery, StatementsForm, TransactionsOut
from cloud.db import session
from cloud.identity.models import utcnow
from cloud.people.openapi import SECURITY, signed_in

bp = APIBlueprint("bank", __name__, tag="Bank data")
MAX_BYTES = "BANK_MAX_UPLOAD_BYTES"
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
# Content type of a whole-body upload -> format.
BODY_FORMATS = {
    "application/xml": "camt",
    "text/xml": "camt",
    "application/json": "obie",
    "application/x-mt940": "mt940",
    "text/plain": "auto",
}


def _summary_out(summary: service.FileSummary) -> dict[str, Any]:
    return {
        "file": summary.file,
        "format": summary.format,
        "statements": summary.statements,
        "new": summary.new,
        "present": summary.present,
        "booked": summary.booked,
        "accounts": summary.accounts,
    }


def _uploads(form: dict[str, Any]) -> list[tuple[str, bytes, str]]:
    """(name, content, format) of each file in the request."""
    if request.mimetype == "multipart/form-data":
        files = form.get("file") or []
        if not files:
            abort(422, "no file: send one or more multipart parts named file")
        return [
            (upload.filename or "file-%d" % index, upload.read(), form["format"])
            for index, upload in enumerate(files, 1)
        ]
    fmt = BODY_FORMATS.get(request.mimetype)
    if fmt is None:
        abort(415, "send multipart/form-data, or one file as %s" % ", ".join(BODY_FORMATS))
    return [(request.args.get("name") or "request body", request.get_data(), fmt)]


@bp.post("/api/bank/statements")
@require("operations")
@bp.input(StatementsForm, location="form_and_files", arg_name="form")
@bp.output(ImportOut)
@bp.doc(
    summary="Import bank statement files (camt.053/052 .02-.08, MT940, Open Banking, CSV)",
    description="Each file is imported whole or not at all; importing a file again, or "
    "a statement that overlaps one imported before, adds only the entries not yet there. "
    "A CSV file needs format=csv and its column mapping.",
    security=SECURITY,
    responses=signed_in(413, 415, 422),
)
def import_statements(form: dict[str, Any]) -> dict[str, Any]:
    limit = current_app.config.get(MAX_BYTES, DEFAULT_MAX_BYTES)
    if request.content_length is not None and request.content_length > limit:
        abort(413, "at most %d bytes per request" % limit)
    mapping = None
    if form.get("mapping") is not None:
        upload = form["mapping"]
        try:
            mapping = csvmap.load_mapping(upload.filename or "mapping", upload.read())
        except BankImportError as exc:
            abort(422, str(exc))
    db, actor, done = session(), current_principal().actor, []
    for name, data, fmt in _uploads(form):
        try:
            summary = service.import_file(
                db,
                name,
                data,
                fmt=fmt,
                mapping=mapping,
                customer_id=form.get("customer"),
                actor=actor,
                now=utcnow(),
            )
        except BankImportError as exc:
            abort(422, str(exc), detail={"imported": [_summary_out(s) for s in done]})
        done.append(summary)
    return {"files": [_summary_out(summary) for summary in done]}


def _account_out(account: BankAccount) -> dict[str, Any]:
    return {
        "id": account.id,
        "scheme": account.scheme,
        "identifier": account.identifier,
        "currency": account.currency,
        "servicer": account.servicer,
        "name": account.name,
        "customer_id": account.customer_id,
    }


def _transaction_out(row: BankTransaction) -> dict[str, Any]:
    return {
        "id": row.id,
        "statement_id": row.statement_id,
        "amount": row.amount,
        "currency": row.currency,
        "direction": row.direction,
        "status": row.status,
        "reversal": row.reversal,
        "booking_date": row.booking_date,
        "value_date": row.value_date,
        "counterparty_name": row.counterparty_name,
        "counterparty_account": row.counterparty_account,
        "remittance": row.remittance,
        "bank_code": {
            "domain": row.domain_code,
            "family": row.family_code,
            "subfamily": row.subfamily_code,
            "proprietary": row.proprietary_code,
            "issuer": row.proprietary_issuer,
            "gvc": row.gvc,
        },
        "mcc": row.mcc,
        "end_to_end_id": row.end_to_end_id,
        "servicer_ref": row.servicer_ref,
        "reference": row.reference,
        "imported_at": row.imported_at,
    }


@bp.get("/api/bank/accounts")
@require("operations")
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(AccountsOut)
@bp.doc(
    summary="Accounts with imported statements, by id", security=SECURITY, responses=signed_in()
)
def list_accounts(query: dict[str, Any]) -> dict[str, Any]:
    limit = query["limit"]
    rows = list(
        session().scalars(
            select(BankAccount)
            .where(BankAccount.id > query.get("after", 0))
            .order_by(BankAccount.id)
            .limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "accounts": [_account_out(row) for row in rows],
        "next": rows[-1].id if more else None,
    }


@bp.get("/api/bank/accounts/<int:account_id>/transactions")
@require("operations")
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(TransactionsOut)
@bp.doc(
    summary="An account's transactions in the order they were imported, a page at a time",
    security=SECURITY,
    responses=signed_in(404),
)
def list_transactions(account_id: int, query: dict[str, Any]) -> dict[str, Any]:
    db = session()
    account = db.get(BankAccount, account_id)
    if account is None:
        abort(404, "no account %d" % account_id)
    limit = query["limit"]
    rows = list(
        db.scalars(
            select(BankTransaction)
            .where(
                BankTransaction.account_id == account_id,
                BankTransaction.id > query.get("after", 0),
            )
            .order_by(BankTransaction.id)
            .limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "account": _account_out(account),
        "transactions": [_transaction_out(row) for row in rows],
        "next": rows[-1].id if more else None,
    }
