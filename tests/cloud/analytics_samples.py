"""A customer's monthly camt.053 statements for the analytics tests: rent on the 1st, a
coffee on the 10th, the salary on the 25th (ISO 20022 code ``PMNT-RCDT-SALA``) from ACME
GMBH until August 2026, then from NEWCO AG at a higher amount (a new job)."""

from __future__ import annotations

import calendar
import datetime as dt

from sqlalchemy.orm import Session

from cloud.customers import accounts
from tests.cloud import bank_samples
from tests.cloud.bank_samples import Ntry, Tx


def customer(db: Session, email: str = "erika@example.com") -> int:
    """A customer signed up (and committed) in ``db``, whose statements the tests import;
    their id."""
    row = accounts.sign_up(db, email, "correct horse battery staple")
    db.commit()
    return row.id


def salary_payer(month: int) -> tuple[str, str]:
    """(payer, amount) of the 2026 salary of ``month``."""
    return ("ACME GMBH", "2500.00") if month <= 8 else ("NEWCO AG", "3100.00")


def month_statement(month: int, opening: str = "1000.00") -> tuple[str, bytes]:
    """(file name, camt.053) of 2026-``month``; balances dated the day before the month
    and its last day (only the first statement's opening balance is read)."""
    payer, amount = salary_payer(month)
    day = "2026-%02d-%%02d" % month
    entries = (
        Ntry(
            "900.00",
            "DBIT",
            booked=day % 1,
            value=day % 1,
            domain=("PMNT", "ICDT", "STDO"),
            txs=(Tx(name="OAK LETTINGS", account="GB29NWBK60161331926819", remittance="RENT"),),
        ),
        Ntry(
            "42.10",
            "DBIT",
            booked=day % 10,
            value=day % 10,
            domain=("PMNT", "CCRD", "POSD"),
            txs=(Tx(name="BEAN AND CO", account="DE44500105175407324931"),),
        ),
        Ntry(
            amount,
            "CRDT",
            booked=day % 25,
            value=day % 25,
            domain=("PMNT", "RCDT", "SALA"),
            txs=(Tx(name=payer, account="DE02120300000000202051", remittance="SALARY"),),
        ),
    )
    data = bank_samples.camt(
        8,
        "053",
        entries,
        msg_id="MSG-2026-%02d" % month,
        stmt_id="STMT-%02d" % month,
        opening=opening,
    )
    first = dt.date(2026, month, 1)
    last = first.replace(day=calendar.monthrange(2026, month)[1])
    data = data.replace(
        b"<Dt><Dt>2026-11-27</Dt></Dt>",
        b"<Dt><Dt>%s</Dt></Dt>" % (first - dt.timedelta(days=1)).isoformat().encode(),
    ).replace(b"<Dt><Dt>2026-11-28</Dt></Dt>", b"<Dt><Dt>%s</Dt></Dt>" % last.isoformat().encode())
    return "stmt-2026-%02d.xml" % month, data
