"""Stored profiles (SQLite and PostgreSQL): a bank import stores the owner's profile and
life events, a later import updates them as a full recompute would, the offers' audience
reads the segment, erasure removes them, and a failing recompute never fails the import."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from cloud.analytics import store
from cloud.analytics.adapter import transaction_of
from cloud.analytics.models import CustomerProfile, LifeEvent
from cloud.analytics.records import AnalyticsError
from cloud.bank.models import BankAccount, BankTransaction
from cloud.bank.service import import_file
from cloud.customers import accounts, data, erasure
from cloud.customers.models import Customer
from cloud.offers import audience, kiosk
from provisioning.cli import main
from tests.cloud.analytics_samples import customer, month_statement

NOW = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)


def import_months(db: Session, months: range, customer_id: int | None) -> None:
    for month in months:
        name, content = month_statement(month)
        import_file(db, name, content, customer_id=customer_id, actor="test", now=NOW)


def stored(db: Session, customer_id: int) -> tuple[Any, ...]:
    """Everything a recompute decides, without when it ran."""
    db.expire_all()
    row = store.profile_row(db, customer_id)
    assert row is not None
    events = [
        (e.kind, e.as_of, e.score, tuple(e.reasons), e.detail)
        for e in store.life_events(db, customer_id)
    ]
    return (row.as_of, row.snapshot, row.segment, row.income_band, row.income_monthly, events)


def test_an_import_stores_the_owners_profile_with_the_salary(db: Session) -> None:
    erika = customer(db)
    import_months(db, range(1, 9), erika)
    row = store.profile_row(db, erika)
    assert row is not None and row.model_version == store.MODEL_VERSION
    assert row.as_of == dt.date(2026, 8, 31) and row.currency == "EUR" and row.accounts == 1
    summary = row.snapshot
    assert summary["transactions"] == 24
    (salary,) = summary["income"]["salaries"]
    assert (salary["payee"], salary["cadence"], salary["typical"]) == (
        "ACME GMBH",
        "monthly",
        "2500.00",
    )
    assert row.income_monthly == Decimal("2500.00")
    assert summary["next_salary"] == "2026-09-25"
    # 1000 opening + 8 x (2500 - 900 - 42.10)
    assert summary["balance"] == str(Decimal("1000.00") + 8 * Decimal("1557.90"))
    # one customer: fixed cut points; income 2500 is middle (1800-3500), a mean balance of
    # several thousand is high (over 5000)
    assert (row.income_band, row.segment) == ("middle", "saver")
    assert store.life_events(db, erika) == []


def test_a_later_import_updates_the_profile_as_a_full_recompute_would(db: Session) -> None:
    erika = customer(db)
    import_months(db, range(1, 9), erika)
    import_months(db, range(9, 12), erika)
    incremental = stored(db, erika)
    as_of, summary, _, _, income, events = incremental
    assert as_of == dt.date(2026, 11, 30) and income == Decimal("3100.00")
    assert [s["payee"] for s in summary["income"]["salaries"]] == ["NEWCO AG"]
    ((kind, _, score, reasons, _),) = events
    assert kind == "job_change" and score >= 0.5
    assert "NEWCO AG" in reasons[0] and "ACME GMBH" in reasons[0]

    db.execute(delete(LifeEvent))
    db.execute(delete(CustomerProfile))
    db.commit()
    assert store.recompute_all(db, NOW) == 1
    db.commit()
    assert stored(db, erika) == incremental


def test_the_same_file_again_changes_nothing_and_an_unowned_account_has_no_profile(
    db: Session,
) -> None:
    import_months(db, range(1, 4), None)
    assert db.scalar(select(func.count()).select_from(CustomerProfile)) == 0
    erika = customer(db)
    import_months(db, range(1, 4), erika)  # nothing new: the owner is set, no recompute yet
    assert store.profile_row(db, erika) is None
    assert store.recompute_all(db, NOW) == 1
    db.commit()
    assert store.profile_row(db, erika) is not None


def test_offers_audience_sees_the_segment_and_income_band(db: Session) -> None:
    erika = customer(db)
    person = accounts.sign_up(db, "nobody@example.com", "correct horse battery staple")
    db.commit()
    import_months(db, range(1, 9), erika)
    row = db.get(Customer, erika)
    assert row is not None
    attributes = kiosk.attributes(db, row, None, NOW)
    assert (attributes["segment"], attributes["income_band"]) == ("saver", "middle")
    rule = audience.parse({"attr": "segment", "op": "eq", "value": "saver"})
    assert audience.evaluate(rule, attributes) == (True, 'segment = "saver"')
    other = kiosk.attributes(db, person, None, NOW)
    assert (other["segment"], other["income_band"]) == (None, None)
    assert audience.evaluate(rule, other)[0] is False


def test_erasure_removes_the_profile_and_life_events_and_export_holds_them(
    db: Session,
) -> None:
    erika = customer(db)
    import_months(db, range(1, 12), erika)
    row = db.get(Customer, erika)
    assert row is not None
    document = data.export(db, row, NOW)
    exported = document["analytics"]
    assert exported["profile"]["segment"] == "saver"
    assert [e["kind"] for e in exported["life_events"]] == ["job_change"]
    assert exported["life_events"][0]["reasons"]

    receipt = erasure.erase(db, row, NOW)
    db.commit()
    assert (receipt.deleted["customer_profiles"], receipt.deleted["life_events"]) == (1, 1)
    for model in (CustomerProfile, LifeEvent):
        assert db.scalar(select(func.count()).select_from(model)) == 0


def test_a_failing_recompute_is_logged_and_the_import_stands(
    db: Session, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    erika = customer(db)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("analytics broke")

    monkeypatch.setattr(store, "recompute", broken)
    name, content = month_statement(1)
    with caplog.at_level(logging.ERROR, logger="cloud.analytics.store"):
        summary = import_file(db, name, content, customer_id=erika, actor="test", now=NOW)
    assert summary.new == 3
    assert db.scalar(select(func.count()).select_from(BankTransaction)) == 3
    assert store.profile_row(db, erika) is None
    assert "profiles not recomputed" in caplog.text and "analytics broke" in caplog.text


def test_a_bank_row_as_an_analytics_transaction() -> None:
    card = BankTransaction(
        id=7,
        amount=Decimal("42.10"),
        currency="EUR",
        direction="DBIT",
        booking_date=dt.date(2026, 3, 10),
        counterparty_name="Bean  and co",
        remittance="COFFEE",
        domain_code="PMNT",
        family_code="CCRD",
        subfamily_code="POSD",
        mcc="5814",
    )
    tx = transaction_of(card, balance_after=Decimal("957.90"))
    assert (tx.booked, tx.amount, tx.currency, tx.payee, tx.remittance) == (
        dt.date(2026, 3, 10),
        Decimal("-42.10"),
        "EUR",
        "BEAN AND CO",
        "COFFEE",
    )
    assert (tx.mcc, tx.bank_code, tx.balance_after) == (5814, "PMNT-CCRD-POSD", Decimal("957.90"))
    credit = BankTransaction(
        id=8,
        amount=Decimal("2500"),
        currency="EUR",
        direction="CRDT",
        booking_date=dt.date(2026, 3, 25),
        counterparty_name="ACME",
        remittance="",
        domain_code="",
        family_code="",
        subfamily_code="",
        mcc="",
    )
    tx = transaction_of(credit)
    assert (tx.amount, tx.mcc, tx.bank_code, tx.balance_after) == (Decimal(2500), None, None, None)
    credit.booking_date = None
    with pytest.raises(AnalyticsError, match="bank transaction 8 has no booking date"):
        transaction_of(credit)


def test_the_command_recomputes_everyone_or_one_customer(
    database_url: URL, db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    erika = customer(db)
    import_months(db, range(1, 4), None)  # no owner yet: no profile
    db.execute(update(BankAccount).values(customer_id=erika))
    db.commit()
    monkeypatch.setenv("BANKIOT_DATABASE_URL", database_url.render_as_string(hide_password=False))
    args = ["analytics", "recompute", "--data-dir", str(tmp_path / "data")]
    assert main([*args, "--customer", str(erika + 1000)]) == 1
    assert "no customer %d" % (erika + 1000) in capsys.readouterr().err
    assert main([*args, "--customer", str(erika)]) == 0
    assert "1 profile stored" in capsys.readouterr().out
    db.expire_all()
    row = store.profile_row(db, erika)
    assert row is not None and row.as_of == dt.date(2026, 3, 31)
    assert main(args) == 0
    assert "1 profile stored" in capsys.readouterr().out
