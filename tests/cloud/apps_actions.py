"""What the applications' tests set up: customers with bank histories, in plain rows; a
partner café with its beacon."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from apiflask import APIFlask
from flask.testing import FlaskClient

from cloud.analytics.records import Transaction
from cloud.bank.models import BankAccount, BankStatement, BankTransaction
from cloud.db import database
from tests.cloud.identity_actions import body

SHOP_BEACON = "C3:00:00:0A:1B:2C"  # the partner café's iBeacon (``partner_cafe``)


def partner_cafe(client: FlaskClient) -> int:
    """Café Nord, a partner merchant (MCC 5814), and its iBeacon at ``SHOP_BEACON``,
    registered through the fleet API by ``client``'s caller (cloud operations); the
    merchant's id."""
    shop = client.post("/api/fleet/merchants", json={"name": "Café Nord", "category": "5814"})
    assert shop.status_code == 201, shop.json
    beacon = {
        "kind": "ibeacon",
        "merchant": body(shop)["id"],
        "uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e",
        "major": 7,
        "minor": 1,
        "address": SHOP_BEACON,
    }
    made = client.post("/api/fleet/beacons", json=beacon)
    assert made.status_code == 201, made.json
    return body(shop)["id"]


def months_back(today: dt.date, k: int, day: int) -> dt.date:
    """Day ``day`` of the month ``k`` months before ``today``'s."""
    year, month = today.year, today.month - k
    while month <= 0:
        month, year = month + 12, year - 1
    return dt.date(year, month, day)


def history(
    today: dt.date, salary: int, rent: int, rent_day: int, spend: int, currency: str = "GBP"
) -> list[Transaction]:
    """Five monthly salaries (on the 25th, coded SALA), five rents, ten card payments in
    the last twenty days, in date order."""
    out = []
    for k in range(5, 0, -1):
        out.append(
            Transaction(
                months_back(today, k, 25),
                Decimal(salary),
                currency,
                "ACME LTD",
                bank_code="PMNT-RCDT-SALA",
            )
        )
        out.append(Transaction(months_back(today, k, rent_day), -Decimal(rent), currency, "LETS"))
    start = today - dt.timedelta(days=20)
    for i in range(10):
        booked = start + dt.timedelta(days=i)
        out.append(Transaction(booked, -Decimal(spend), currency, "SHOP %d" % i, mcc=5411))
    return sorted(out, key=lambda t: t.booked)


def add_history(app: APIFlask, customer_id: int, transactions: list[Transaction]) -> None:
    """``transactions`` as booked rows of one account of the customer."""
    now = dt.datetime.now(dt.UTC)
    with app.app_context(), database().sessions() as db:
        account = BankAccount(
            scheme="IBAN",
            identifier="GB00TEST%08d" % customer_id,
            currency=transactions[0].currency,
            customer_id=customer_id,
        )
        db.add(account)
        db.flush()
        statement = BankStatement(
            account_id=account.id,
            kind="camt.053",
            ref="test-%d" % customer_id,
            file_digest="0" * 64,
            imported_at=now,
        )
        db.add(statement)
        db.flush()
        for n, tx in enumerate(transactions):
            code = (tx.bank_code or "--").split("-")
            db.add(
                BankTransaction(
                    account_id=account.id,
                    statement_id=statement.id,
                    entry_key="%d-%d" % (customer_id, n),
                    amount=abs(tx.amount),
                    currency=tx.currency,
                    direction="CRDT" if tx.amount > 0 else "DBIT",
                    status="BOOK",
                    booking_date=tx.booked,
                    counterparty_name=tx.counterparty,
                    domain_code=code[0],
                    family_code=code[1],
                    subfamily_code=code[2],
                    mcc="" if tx.mcc is None else "%04d" % tx.mcc,
                    imported_at=now,
                )
            )
        db.commit()
