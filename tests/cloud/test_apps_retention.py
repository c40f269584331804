"""The applications' records and the law (SQLite and PostgreSQL): ``app_decisions`` expire
by their ``app_decisions`` class (365 days by default, configurable like every class);
erasure deletes the customer's decisions, loan applications and holding alerts and counts
them in its receipt."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.apps.models import AppDecision, HoldingAlert, LoanApplication
from cloud.customers import accounts, erasure
from cloud.ingest.retention import (
    APP_DECISIONS,
    DEFAULT_RETENTION,
    RetentionPolicy,
    purge_records,
)

NOW = dt.datetime(2026, 11, 29, 7, 0, tzinfo=dt.UTC)


def decision(customer_id: int | None, days_ago: int, subject: str) -> AppDecision:
    return AppDecision(
        app="loan",
        at=NOW - dt.timedelta(days=days_ago),
        customer_id=customer_id,
        subject=subject,
        outcome="approved",
        reasons=["income covers the payments"],
        inputs={},
        version="loan-1",
    )


def test_app_decisions_expire_by_their_class(db: Session) -> None:
    erika = accounts.sign_up(db, "erika@example.com", "correct horse battery staple").id
    db.add_all(
        [
            decision(erika, 366, "loan:1"),
            decision(erika, 364, "loan:2"),
            decision(None, 400, "rule_decision:7"),  # no customer's: goes all the same
            decision(erika, 40, "loan:3"),
        ]
    )
    db.commit()
    assert DEFAULT_RETENTION[APP_DECISIONS] == dt.timedelta(days=365)
    assert purge_records(db, NOW)[APP_DECISIONS] == 2
    db.commit()
    left = db.scalars(select(AppDecision.subject).order_by(AppDecision.subject)).all()
    assert left == ["loan:2", "loan:3"]
    shorter = RetentionPolicy.parse({APP_DECISIONS: "30d"})
    assert purge_records(db, NOW, shorter)[APP_DECISIONS] == 2


def test_erasure_deletes_and_counts_decisions_loans_and_holding_alerts(db: Session) -> None:
    erika = accounts.sign_up(db, "erika@example.com", "correct horse battery staple")
    other = accounts.sign_up(db, "max@example.com", "correct horse battery staple")
    for who in (erika, other):
        db.add(decision(who.id, 1, "loan:%d" % who.id))
        db.add(
            LoanApplication(
                customer_id=who.id,
                amount=Decimal("2000"),
                currency="GBP",
                term_months=24,
                purpose="a car",
                evidence=[],
                outcome="approved",
                reasons=["income covers the payments"],
                created_at=NOW,
                created_by="test",
            )
        )
        db.add(
            HoldingAlert(
                customer_id=who.id,
                instrument="VWRL",
                direction="above",
                threshold=Decimal("100"),
                channel="app",
                armed=True,
                created_at=NOW,
            )
        )
    db.commit()
    receipt = erasure.erase(db, erika, NOW)
    db.commit()
    assert (
        receipt.deleted["app_decisions"],
        receipt.deleted["loan_applications"],
        receipt.deleted["holding_alerts"],
    ) == (1, 1, 1)
    for model in (AppDecision, LoanApplication, HoldingAlert):
        owners = db.scalars(select(model.customer_id)).all()
        assert owners == [other.id]
    assert db.scalar(select(func.count()).select_from(AppDecision)) == 1
