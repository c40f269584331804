"""Importing statement files into the database: one transaction per file.

``import_file`` parses the whole file first (nothing is written for a file that does not
parse), then finds or adds its accounts and statements and adds the entries not already
there (``keys``), and commits once. Any error rolls the file back whole. Two imports of
overlapping files at the same moment can collide on a UNIQUE key; the loser rolls back and
tries its file once more, and then finds the other's rows. Once a file is committed, the
stored profiles of its accounts' owners are recomputed (``cloud.analytics.store.after_import``:
a failure there is logged and leaves the import as it is).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud import audit
from cloud.analytics.store import after_import
from cloud.bank import formats, keys
from cloud.bank.csvmap import CsvMapping
from cloud.bank.models import BankAccount, BankStatement, BankTransaction
from cloud.bank.parsed import BOOKED, BankImportError, Entry, Statement
from cloud.customers.models import Customer

_IN_CHUNK = 500  # keys per IN (...) query: well under every database's parameter limit


@dataclass
class FileSummary:
    """What one file brought: entries new, already present, and pending ones now booked."""

    file: str
    format: str
    statements: int = 0
    new: int = 0
    present: int = 0
    booked: int = 0
    accounts: list[int] = field(default_factory=list)

    def line(self) -> str:
        """One line for people: ``a.xml (camt): 1 statement, 3 new, 0 already present``."""
        text = "%s (%s): %d statement%s, %d new, %d already present" % (
            self.file,
            self.format,
            self.statements,
            "" if self.statements == 1 else "s",
            self.new,
            self.present,
        )
        return text + (", %d now booked" % self.booked if self.booked else "")


def _fit(text: str, length: int) -> str:
    return text[:length]


def import_file(
    db: Session,
    name: str,
    data: bytes,
    *,
    fmt: str = "auto",
    mapping: CsvMapping | None = None,
    customer_id: int | None = None,
    actor: str = "system",
    now: dt.datetime,
) -> FileSummary:
    """Import one file in one transaction; ``BankImportError`` leaves nothing behind."""
    found, statements = formats.parse(name, data, fmt, mapping)
    digest = hashlib.sha256(data).hexdigest()
    if customer_id is not None and db.get(Customer, customer_id) is None:
        raise BankImportError(name, "", 0, "no customer %d" % customer_id)
    for attempt in (1, 2):
        try:
            summary = _store(db, name, found, digest, statements, customer_id, actor, now)
            audit.record(
                db,
                actor,
                "bank.import",
                name[:128],
                format=found,
                digest=digest,
                new=summary.new,
                present=summary.present,
            )
            db.commit()
        except IntegrityError:
            db.rollback()
            if attempt == 2:
                raise
        except BaseException:
            db.rollback()
            raise
        else:
            if summary.new or summary.booked:
                # profiles of the accounts' owners; never fails the import (it is committed)
                after_import(db, summary.accounts, now)
            return summary
    raise AssertionError("unreachable")


def _store(
    db: Session,
    name: str,
    fmt: str,
    digest: str,
    statements: Sequence[Statement],
    customer_id: int | None,
    actor: str,
    now: dt.datetime,
) -> FileSummary:
    summary = FileSummary(file=name, format=fmt, statements=len(statements))
    for index, statement in enumerate(statements):
        account = _account(db, name, statement, customer_id)
        if account.id not in summary.accounts:
            summary.accounts.append(account.id)
        row = _statement(db, name, digest, index, statement, account, actor, now)
        _entries(db, statement.entries, account, row, now, summary)
    return summary


def _account(db: Session, name: str, statement: Statement, customer_id: int | None) -> BankAccount:
    ref = statement.account
    if not ref.identifier:  # named only by the servicer's id (Open Banking transactions)
        account = db.scalars(
            select(BankAccount)
            .where(BankAccount.provider_ref == ref.provider_ref)
            .where(BankAccount.currency == ref.currency)
        ).first()
        if account is None:
            raise BankImportError(
                name,
                "AccountId",
                0,
                "unknown account %r: import its accounts (OBReadAccount6) first or in the "
                "same file" % ref.provider_ref,
            )
    else:
        account = db.scalars(
            select(BankAccount).where(
                BankAccount.scheme == ref.scheme,
                BankAccount.identifier == ref.identifier,
                BankAccount.currency == ref.currency,
            )
        ).first()
        if account is None:
            account = BankAccount(
                scheme=_fit(ref.scheme, 40),
                identifier=_fit(ref.identifier, 64),
                currency=ref.currency,
                servicer=_fit(ref.servicer, 140),
                name=_fit(ref.name, 140),
                provider_ref=ref.provider_ref[:64] or None,
            )
            db.add(account)
            db.flush()
        elif ref.provider_ref and not account.provider_ref:
            account.provider_ref = ref.provider_ref[:64]
    if customer_id is not None:
        if account.customer_id not in (None, customer_id):
            raise BankImportError(
                name,
                "",
                0,
                "account %s belongs to another customer; not reassigned"
                % (account.identifier or account.provider_ref),
            )
        account.customer_id = customer_id
    return account


def _statement(
    db: Session,
    name: str,
    digest: str,
    index: int,
    statement: Statement,
    account: BankAccount,
    actor: str,
    now: dt.datetime,
) -> BankStatement:
    if statement.message_id or statement.statement_id:
        ref = "%s/%s" % (statement.message_id, statement.statement_id)
    else:
        ref = "%s#%d" % (digest, index)
    ref = ref[:200]
    row = db.scalars(
        select(BankStatement).where(
            BankStatement.account_id == account.id,
            BankStatement.kind == statement.kind,
            BankStatement.ref == ref,
        )
    ).first()
    if row is not None:
        return row
    balance = statement.opening or statement.closing
    row = BankStatement(
        account_id=account.id,
        kind=statement.kind,
        ref=ref,
        file_digest=digest,
        file_name=_fit(name, 255),
        message_id=_fit(statement.message_id, 64),
        statement_id=_fit(statement.statement_id, 64),
        sequence=_fit(statement.sequence, 32),
        created=statement.created,
        period_start=statement.period_start,
        period_end=statement.period_end,
        opening_balance=statement.opening.amount if statement.opening else None,
        opening_date=statement.opening.on if statement.opening else None,
        closing_balance=statement.closing.amount if statement.closing else None,
        closing_date=statement.closing.on if statement.closing else None,
        balance_currency=balance.currency if balance else "",
        entries=len(statement.entries),
        imported_at=now,
        imported_by=_fit(actor, 128),
    )
    db.add(row)
    db.flush()
    return row


def _existing(db: Session, account_id: int, wanted: list[str]) -> dict[str, BankTransaction]:
    found: dict[str, BankTransaction] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        for row in db.scalars(
            select(BankTransaction).where(
                BankTransaction.account_id == account_id, BankTransaction.entry_key.in_(chunk)
            )
        ):
            found[row.entry_key] = row
    return found


def _entries(
    db: Session,
    entries: Sequence[Entry],
    account: BankAccount,
    statement: BankStatement,
    now: dt.datetime,
    summary: FileSummary,
) -> None:
    entry_keys = keys.entry_keys(entries)
    existing = _existing(db, account.id, entry_keys)
    for key, entry in zip(entry_keys, entries, strict=True):
        row = existing.get(key)
        if row is not None:
            summary.present += 1
            if row.status != BOOKED and entry.status == BOOKED:
                # a pending entry of an intraday report, booked by the day's statement
                row.status, row.booking_date = BOOKED, entry.booking_date
                summary.booked += 1
            continue
        code = entry.bank_code
        row = BankTransaction(
            account_id=account.id,
            statement_id=statement.id,
            entry_key=key,
            amount=entry.amount,
            currency=entry.currency,
            direction=entry.direction,
            status=entry.status,
            reversal=entry.reversal,
            booking_date=entry.booking_date,
            value_date=entry.value_date,
            counterparty_name=_fit(entry.counterparty_name, 140),
            counterparty_account=_fit(entry.counterparty_account, 64),
            remittance=entry.remittance,
            domain_code=_fit(code.domain, 4),
            family_code=_fit(code.family, 40),
            subfamily_code=_fit(code.subfamily, 40),
            proprietary_code=_fit(code.proprietary, 64),
            proprietary_issuer=_fit(code.issuer, 64),
            gvc=_fit(code.gvc, 3),
            mcc=_fit(entry.mcc, 4),
            end_to_end_id=_fit(entry.end_to_end_id, 64),
            servicer_ref=_fit(entry.servicer_ref, 64),
            reference=_fit(entry.reference, 64),
            imported_at=now,
        )
        db.add(row)
        existing[key] = row
        summary.new += 1
    db.flush()
