"""The demo customers' bank statements, as the bank's core system would send them.

Each demo customer is one customer of the project's synthetic population
(``cloud.analytics.simulation``, seed ``SEED``): a current account with a salary, rent or a
mortgage, bills and card spending by merchant category, over about 18 months. ``camt053``
writes those transactions as one ISO 20022 camt.053.001.08 message (``BkToCstmrStmt``) with
one statement (``Stmt``) per calendar month: opening and closing booked balances, and per
entry the amount, direction, status, booking and value dates, the servicer's reference
(stable, so pushing the file again adds nothing), the bank transaction code
(``Domn/Fmly/SubFmlyCd``), the counterparty (``RltdPties``), and for card payments the
merchant category code (ISO 18245) in ``CardTx/Tx/Indv/TxCtgy``; elements in schema order.
A direct debit carries no card element, so its simulated MCC is not sent (camt has no
place for one).

The population starts on 2025-01-01; ``shift`` moves every date by whole weeks (weekdays
kept: salaries stay off weekends) so the newest statement ends within the last week.
Pure: no I/O; ``hw.demo.bank.push_statements`` sends the file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

from cloud.analytics.records import Transaction
from cloud.analytics.simulation import START, SimulatedCustomer, generate_customer

SEED = 2026  # the demo's population seed
DAYS = 548  # what the generator makes by default: 18 months
NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
BANK_CODE = "DEMO"  # the IBANs' bank code
SORT_CODE = "400001"
BIC = "DEMOGB2LXXX"
CARD = "PMNT-CCRD-POSD"


def iban(bank: str, sort_code: str, account: str) -> str:
    """A UK IBAN (``GBkk`` + bank code + sort code + account number) with its ISO 13616
    check digits: 98 minus the remainder mod 97 of the BBAN followed by ``GB00``, letters
    as numbers (A = 10)."""
    bban = bank + sort_code + account
    digits = "".join(str(int(ch, 36)) for ch in bban + "GB00")
    return "GB%02d%s" % (98 - int(digits) % 97, bban)


def account_of(index: int) -> str:
    """The IBAN of simulated customer ``index``'s current account."""
    return iban(BANK_CODE, SORT_CODE, "%08d" % (20_260_000 + index))


def shift_to(today: dt.date, days: int = DAYS) -> dt.timedelta:
    """Whole weeks that move the population's last day into the week before ``today``."""
    last = START + dt.timedelta(days=days - 1)
    weeks = ((today - dt.timedelta(days=1)) - last).days // 7
    return dt.timedelta(weeks=max(weeks, 0))


@dataclass(frozen=True)
class Statements:
    """One customer's file: the camt.053 bytes, its name, the account, the period, the
    number of entries."""

    name: str
    data: bytes
    account: str
    first: dt.date
    last: dt.date
    entries: int


def _month(day: dt.date) -> tuple[int, int]:
    return day.year, day.month


def _amount(value: Decimal) -> str:
    return "%.2f" % abs(value)


def _balance(code: str, value: Decimal, day: dt.date, currency: str) -> str:
    return (
        "<Bal><Tp><CdOrPrtry><Cd>%s</Cd></CdOrPrtry></Tp>"
        '<Amt Ccy="%s">%s</Amt><CdtDbtInd>%s</CdtDbtInd><Dt><Dt>%s</Dt></Dt></Bal>'
        % (code, currency, _amount(value), "DBIT" if value < 0 else "CRDT", day.isoformat())
    )


def _entry(tx: Transaction, day: dt.date, reference: str) -> str:
    credit = tx.amount > 0
    parts = [
        '<Ntry><Amt Ccy="%s">%s</Amt>' % (tx.currency, _amount(tx.amount)),
        "<CdtDbtInd>%s</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>" % ("CRDT" if credit else "DBIT"),
        "<BookgDt><Dt>%s</Dt></BookgDt><ValDt><Dt>%s</Dt></ValDt>" % (day, day),
        "<AcctSvcrRef>%s</AcctSvcrRef>" % reference,
    ]
    if tx.bank_code:
        domain, family, subfamily = tx.bank_code.split("-")
        parts.append(
            "<BkTxCd><Domn><Cd>%s</Cd><Fmly><Cd>%s</Cd><SubFmlyCd>%s</SubFmlyCd></Fmly>"
            "</Domn></BkTxCd>" % (domain, family, subfamily)
        )
    role = "Dbtr" if credit else "Cdtr"
    parts.append(
        "<NtryDtls><TxDtls><Refs><AcctSvcrRef>%s</AcctSvcrRef></Refs>"
        "<RltdPties><%s><Pty><Nm>%s</Nm></Pty></%s></RltdPties>"
        % (reference, role, escape(tx.counterparty), role)
    )
    if tx.remittance:
        parts.append("<RmtInf><Ustrd>%s</Ustrd></RmtInf>" % escape(tx.remittance))
    if tx.bank_code == CARD and tx.mcc is not None:
        parts.append("<CardTx><Tx><Indv><TxCtgy>%04d</TxCtgy></Indv></Tx></CardTx>" % tx.mcc)
    parts.append("</TxDtls></NtryDtls></Ntry>")
    return "".join(parts)


def camt053(
    customer: SimulatedCustomer,
    account: str,
    shift: dt.timedelta,
    created: dt.datetime,
    days: int = DAYS,
) -> bytes:
    """``customer``'s ``days`` of transactions, dates moved by ``shift``, as a
    camt.053.001.08 message with one statement per calendar month (module docstring); the
    first and last statements cover only the simulated days, so no statement reaches past
    the data (a profile is as of the newest statement)."""
    begins, ends = START + shift, START + shift + dt.timedelta(days=days - 1)
    months: dict[tuple[int, int], list[tuple[int, Transaction]]] = {}
    day = begins
    while day <= ends:  # every month of the period has a statement, even an empty one
        months.setdefault(_month(day), [])
        day = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    for number, tx in enumerate(customer.transactions, 1):
        months[_month(tx.booked + shift)].append((number, tx))
    stamp = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="%s"><BkToCstmrStmt>' % NAMESPACE,
        "<GrpHdr><MsgId>%s-%s</MsgId><CreDtTm>%s</CreDtTm></GrpHdr>"
        % (customer.ident, created.strftime("%Y%m%d"), stamp),
    ]
    balance = customer.opening_balance
    for sequence, ((year, month), entries) in enumerate(sorted(months.items()), 1):
        first = max(dt.date(year, month, 1), begins)
        last = min(
            (first.replace(day=1) + dt.timedelta(days=32)).replace(day=1),
            ends + dt.timedelta(days=1),
        ) - dt.timedelta(days=1)
        out.append(
            "<Stmt><Id>%s-%04d%02d</Id><ElctrncSeqNb>%d</ElctrncSeqNb><CreDtTm>%s</CreDtTm>"
            "<FrToDt><FrDtTm>%sT00:00:00Z</FrDtTm><ToDtTm>%sT23:59:59Z</ToDtTm></FrToDt>"
            "<Acct><Id><IBAN>%s</IBAN></Id><Ccy>%s</Ccy><Nm>Current account</Nm>"
            "<Svcr><FinInstnId><BICFI>%s</BICFI></FinInstnId></Svcr></Acct>"
            % (
                customer.ident,
                year,
                month,
                sequence,
                stamp,
                first,
                last,
                account,
                customer.currency,
                BIC,
            )
        )
        out.append(_balance("OPBD", balance, first, customer.currency))
        closing = balance + sum((tx.amount for _, tx in entries), Decimal(0))
        out.append(_balance("CLBD", closing, last, customer.currency))
        for number, tx in entries:
            reference = "%s-%05d" % (customer.ident, number)
            out.append(_entry(tx, tx.booked + shift, reference))
        out.append("</Stmt>")
        balance = closing
    out.append("</BkToCstmrStmt></Document>\n")
    return "\n".join(out).encode()  # an entry a line: a refusal's line number points at it


def statements_of(index: int, now: dt.datetime) -> Statements:
    """Simulated customer ``index``'s statements up to last week, as of ``now``."""
    customer = generate_customer(SEED, index, DAYS)
    shift = shift_to(now.date())
    account = account_of(index)
    data = camt053(customer, account, shift, now)
    return Statements(
        name="camt053-%s.xml" % customer.ident,
        data=data,
        account=account,
        first=START + shift,
        last=START + shift + dt.timedelta(days=DAYS - 1),
        entries=len(customer.transactions),
    )
