"""Importing statement files into the database (SQLite and PostgreSQL): one transaction per
file, idempotent re-import, overlapping statements, nothing written for a bad file."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.audit import AuditEvent
from cloud.bank import csvmap
from cloud.bank.models import BankAccount, BankStatement, BankTransaction
from cloud.bank.parsed import BankImportError
from cloud.bank.service import import_file
from cloud.customers.models import Customer
from tests.cloud import bank_samples as samples
from tests.cloud.bank_samples import BATCH, COFFEE, SALARY, Ntry

NOW = dt.datetime(2026, 11, 29, 7, 0, tzinfo=dt.UTC)


def counts(db: Session) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        db.scalar(select(func.count()).select_from(model)) or 0
        for model in (BankAccount, BankStatement, BankTransaction)
    )


def run(db: Session, name: str, data: bytes, **kwargs) -> tuple[int, int, int]:
    summary = import_file(db, name, data, now=NOW, actor="test", **kwargs)
    return summary.new, summary.present, summary.booked


def test_the_same_statement_twice_adds_nothing(db: Session) -> None:
    data = samples.camt(8)
    assert run(db, "s.xml", data) == (4, 0, 0)
    assert run(db, "s.xml", data) == (0, 4, 0)
    assert counts(db) == (1, 1, 4)
    rows = db.scalars(select(BankTransaction).order_by(BankTransaction.id)).all()
    assert [row.signed_amount for row in rows] == [
        Decimal("1500.00"),
        Decimal("-42.10"),
        Decimal("-100.00"),
        Decimal("-200.00"),
    ]
    salary = rows[0]
    assert (salary.currency, salary.counterparty_name, salary.gvc) == ("EUR", "ACME GMBH", "166")
    assert (salary.domain_code, salary.family_code, salary.subfamily_code) == (
        "PMNT",
        "RCDT",
        "ESCT",
    )
    statement = db.scalars(select(BankStatement)).one()
    assert (statement.opening_balance, statement.closing_balance) == (
        Decimal("1000.00"),
        Decimal("2157.90"),
    )
    assert statement.message_id == "MSG-2026-11-28" and statement.kind == "camt.053"
    assert db.scalar(select(func.count()).where(AuditEvent.action == "bank.import")) == 2


def test_intraday_report_then_the_days_statement(db: Session) -> None:
    pending_salary = Ntry(
        SALARY.amount, "CRDT", booked="", status="PDNG", servicer_ref="REF-0001", txs=SALARY.txs
    )
    report = samples.camt(5, "052", (pending_salary, COFFEE), msg_id="INTRADAY-1")
    assert run(db, "report.xml", report) == (2, 0, 0)
    # the statement books the salary, repeats the coffee, and adds a second coffee and rent
    statement = samples.camt(5, "053", (SALARY, COFFEE, COFFEE, BATCH), msg_id="EOD-1")
    assert run(db, "statement.xml", statement) == (3, 2, 1)
    assert counts(db) == (1, 2, 5)
    salary = db.scalars(
        select(BankTransaction).where(BankTransaction.servicer_ref == "REF-0001")
    ).one()
    assert (salary.status, salary.booking_date) == ("BOOK", dt.date(2026, 11, 28))
    assert run(db, "statement.xml", statement) == (0, 5, 0)


def test_a_bad_file_writes_nothing(db: Session) -> None:
    run(db, "good.xml", samples.camt(3))
    before = counts(db)
    newer = (SALARY, Ntry("9.99", "DBIT", servicer_ref="REF-9"), Ntry("1.00", "DBIT"))
    bad = samples.camt(3, entries=newer, msg_id="M2").replace(b'Ccy="EUR">1.00', b'Ccy="eur">1.00')
    with pytest.raises(BankImportError, match="'eur' is not an ISO 4217"):
        run(db, "bad.xml", bad)
    assert counts(db) == before


def test_a_refusal_while_storing_rolls_the_file_back(db: Session) -> None:
    first, second = (
        Customer(email="a@example.org", password_hash="x"),
        Customer(email="b@example.org", password_hash="x"),
    )
    db.add_all([first, second])
    db.commit()
    run(db, "gbp.xml", samples.MT940_SECOND_DAY, customer_id=first.id)
    before = counts(db)
    # the first statement's account is new, the second one's belongs to someone else
    other = samples.MT940.replace(samples.IBAN.encode(), b"GB29NWBK60161331926819")
    with pytest.raises(BankImportError, match="belongs to another customer"):
        run(db, "both.sta", other + samples.MT940_SECOND_DAY, customer_id=second.id)
    assert counts(db) == before
    with pytest.raises(BankImportError, match="no customer 999"):
        run(db, "x.sta", samples.MT940, customer_id=999)


def test_mt940_statements_of_two_days(db: Session) -> None:
    data = samples.MT940 + samples.MT940_SECOND_DAY
    assert run(db, "two.sta", data) == (4, 0, 0)
    assert run(db, "two.sta", data) == (0, 4, 0)
    assert run(db, "day2.sta", samples.MT940_SECOND_DAY) == (0, 1, 0)
    assert counts(db) == (1, 2, 4)


def test_open_banking_accounts_first(db: Session) -> None:
    with pytest.raises(BankImportError, match="unknown account '22289'"):
        run(db, "t.json", samples.OB_TRANSACTIONS)
    assert counts(db) == (0, 0, 0)
    assert run(db, "a.json", samples.OB_ACCOUNTS) == (0, 0, 0)
    assert run(db, "b.json", samples.OB_BALANCES) == (0, 0, 0)
    assert run(db, "t.json", samples.OB_TRANSACTIONS) == (2, 0, 0)
    assert run(db, "t.json", samples.OB_TRANSACTIONS) == (0, 2, 0)
    account = db.scalars(select(BankAccount)).one()
    assert (account.identifier, account.provider_ref, account.currency) == (
        "80200110203345",
        "22289",
        "GBP",
    )
    grocer = db.scalars(select(BankTransaction).where(BankTransaction.mcc == "5411")).one()
    assert grocer.signed_amount == Decimal("-4.35")


def test_csv_identical_entries_are_both_kept_once(db: Session) -> None:
    mapping = csvmap.load_mapping("m.toml", samples.CSV_MAPPING)
    assert run(db, "e.csv", samples.CSV, fmt="csv", mapping=mapping) == (3, 0, 0)
    assert run(db, "e.csv", samples.CSV, fmt="csv", mapping=mapping) == (0, 3, 0)
    assert counts(db) == (1, 1, 3)
