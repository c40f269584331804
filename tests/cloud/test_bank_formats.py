"""The statement importers: known values in, the same values out (Decimal, exactly), and
every malformed file refused with one line naming file, element and line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import mt940
import pytest

from cloud.bank import camt, csvmap, formats, keys, obie, swift
from cloud.bank.parsed import CREDIT, DEBIT, BankImportError
from tests.cloud import bank_samples as samples

VERSIONS = range(2, 9)
DAY = dt.date(2026, 11, 28)


@pytest.mark.parametrize("message", ["053", "052"])
@pytest.mark.parametrize("version", VERSIONS)
def test_camt_every_version_gives_the_values_put_in(version: int, message: str) -> None:
    data = samples.camt(version, message)
    (statement,) = camt.parse("s.xml", data)
    assert statement.kind == "camt." + message
    assert (statement.message_id, statement.statement_id, statement.sequence) == (
        "MSG-2026-11-28",
        "STMT-0331",
        "331",
    )
    account = statement.account
    assert (account.scheme, account.identifier, account.currency) == ("IBAN", samples.IBAN, "EUR")
    assert (account.servicer, account.name) == (samples.BIC, "Erika Mustermann")
    assert statement.opening is not None and statement.closing is not None
    assert statement.opening.amount == Decimal("1000.00")
    assert statement.opening.on == dt.date(2026, 11, 27)
    assert statement.closing.amount == Decimal("2157.90")
    assert statement.period_start == dt.datetime(
        2026, 11, 28, tzinfo=dt.timezone(dt.timedelta(hours=1))
    )
    salary, coffee, rent, power = statement.entries
    assert salary.amount == Decimal("1500.00") and salary.direction == CREDIT
    assert (salary.counterparty_name, salary.counterparty_account) == (
        "ACME GMBH",
        "DE02120300000000202051",
    )
    assert (salary.remittance, salary.end_to_end_id, salary.servicer_ref) == (
        "SALARY NOVEMBER",
        "E2E-SAL-11",
        "REF-0001",
    )
    code = salary.bank_code
    assert (code.domain, code.family, code.subfamily) == ("PMNT", "RCDT", "ESCT")
    assert (code.proprietary, code.issuer, code.gvc) == ("NTRF+166+0000", "DK", "166")
    assert (salary.booking_date, salary.value_date, salary.status) == (DAY, DAY, "BOOK")
    assert salary.line == samples.line_of(data, "<Ntry>", 1)
    assert coffee.amount == Decimal("42.10") and coffee.direction == DEBIT
    assert (coffee.counterparty_name, coffee.servicer_ref) == ("BEAN AND CO", "")
    assert coffee.end_to_end_id == ""  # NOTPROVIDED
    # the batch booking of 300.00 becomes its two transactions
    assert [(e.amount, e.counterparty_name, e.servicer_ref) for e in (rent, power)] == [
        (Decimal("100.00"), "LANDLORD LTD", "REF-0003/1"),
        (Decimal("200.00"), "CITY POWER", "REF-0003/2"),
    ]
    assert rent.amount + power.amount == Decimal("300.00")
    assert all(entry.currency == "EUR" for entry in statement.entries)


def test_camt_pending_status_and_reversal() -> None:
    pending = samples.Ntry("7.5", "DBIT", booked="", status="PDNG", txs=(samples.Tx(),))
    for version in (2, 8):
        (statement,) = camt.parse("p.xml", samples.camt(version, "052", (pending,)))
        (entry,) = statement.entries
        assert (entry.status, entry.booking_date, entry.amount) == ("PDNG", None, Decimal("7.5"))


def _refusal(parse, data: bytes, name: str = "bad.xml") -> BankImportError:
    with pytest.raises(BankImportError) as caught:
        parse(name, data)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(name + ": ")
    return caught.value


def test_camt_broken_xml_names_the_line() -> None:
    data = samples.camt(4).replace(b"</Ntry>", b"</Ntri>", 1)
    error = _refusal(camt.parse, data)
    assert error.line == samples.line_of(data, "</Ntri>")
    assert "mismatched tag" in error.message


def test_camt_missing_amount_names_the_entry() -> None:
    data = samples.camt(6)
    start = data.index(b'<Amt Ccy="EUR">42.10</Amt>')
    data = data[:start] + data[start + len(b'<Amt Ccy="EUR">42.10</Amt>') :]
    error = _refusal(camt.parse, data)
    assert error.element == "/Document/BkToCstmrStmt/Stmt[1]/Ntry[2]/Amt"
    assert error.line == samples.line_of(data, "<Ntry>", 2)
    assert (
        str(error) == "bad.xml: /Document/BkToCstmrStmt/Stmt[1]/Ntry[2]/Amt (line %d): "
        "missing amount" % error.line
    )


def test_camt_bad_currency_and_bad_amount() -> None:
    data = samples.camt(8).replace(b'Ccy="EUR">42.10', b'Ccy="EURO">42.10')
    error = _refusal(camt.parse, data)
    assert error.element.endswith("Ntry[2]/Amt") and "'EURO'" in error.message
    assert error.line == samples.line_of(data, "EURO")
    data = samples.camt(8).replace(b">42.10<", b">42,10<")
    assert "not an amount" in _refusal(camt.parse, data).message


def test_camt_entity_expansion_is_refused_before_expanding() -> None:
    error = _refusal(camt.parse, samples.BOMB, "bomb.xml")
    assert error.line == 3  # the first entity declaration
    assert "entity" in error.message


def test_camt_refuses_other_messages_and_versions() -> None:
    data = samples.camt(8).replace(b"camt.053.001.08", b"camt.053.001.09")
    assert "namespace" in _refusal(camt.parse, data).message
    assert formats.detect("x", samples.camt(2, "052")) == "camt"


def test_mt940_agrees_with_the_library() -> None:
    statements = swift.parse("day.sta", samples.MT940 + samples.MT940_SECOND_DAY)
    assert len(statements) == 2
    first = statements[0]
    oracle = mt940.parse(samples.MT940, options=swift.library_options())
    assert first.account.identifier == oracle.data["account_identification"]
    assert first.account.scheme == "IBAN" and first.account.currency == "EUR"
    assert first.message_id == oracle.data["transaction_reference"] == "STARTUMS"
    assert (first.statement_id, first.sequence) == ("00012", "001")
    assert first.opening is not None and first.closing is not None
    assert first.opening.amount == oracle.data["final_opening_balance"].amount.amount
    assert first.closing.amount == oracle.data["final_closing_balance"].amount.amount
    assert first.closing.amount == Decimal("2462.90")
    assert len(first.entries) == len(oracle) == 3
    for ours, theirs in zip(first.entries, oracle, strict=True):
        data = theirs.data
        assert ours.amount == abs(data["amount"].amount)
        assert ours.currency == data["amount"].currency
        assert ours.direction == (CREDIT if data["status"] in ("C", "RD") else DEBIT)
        assert ours.reversal == data["status"].startswith("R")
        assert ours.value_date == dt.date(data["date"].year, data["date"].month, data["date"].day)
        assert ours.servicer_ref == data["bank_reference"]
        assert ours.bank_code.proprietary == data["id"]
        assert ours.bank_code.gvc == data["transaction_code"]
        assert ours.counterparty_name == (data["applicant_name"] or "")
        assert ours.counterparty_account == (data.get("applicant_iban") or "")
    salary, coffee, refund = first.entries
    assert (salary.amount, salary.direction, salary.bank_code.gvc) == (
        Decimal("1500.00"),
        CREDIT,
        "166",
    )
    assert (salary.counterparty_name, salary.counterparty_account) == (
        "ACME GMBH",
        "DE02120300000000202051",
    )
    assert salary.end_to_end_id == oracle[0].data["end_to_end_reference"] == "E2E-SAL-11"
    assert (coffee.reference, coffee.remittance) == ("001-REF", "COFFEE 28.11")
    assert (refund.direction, refund.reversal) == (CREDIT, True)  # RD: a debit reversed
    assert salary.line == samples.line_of(samples.MT940, ":61:2611281128C1500")
    second = statements[1]
    assert second.statement_id == "00013" and second.entries[0].amount == Decimal("62.90")
    assert second.entries[0].line == samples.line_of(
        samples.MT940 + samples.MT940_SECOND_DAY, "D62,90"
    )


def test_mt940_bad_61_line() -> None:
    data = samples.MT940.replace(b":61:2611281128D42,10", b":61:26112X1128D42,10")
    error = _refusal(swift.parse, data, "bad.sta")
    assert error.element == ":61:"
    assert error.line == samples.line_of(data, "26112X")
    assert formats.detect("x", samples.MT940) == "mt940"


def test_open_banking_accounts_balances_transactions() -> None:
    (accounts,) = obie.parse("a.json", samples.OB_ACCOUNTS)
    assert accounts.account.scheme == "UK.OBIE.SortCodeAccountNumber"
    assert (accounts.account.identifier, accounts.account.provider_ref) == (
        "80200110203345",
        "22289",
    )
    assert accounts.account.currency == "GBP" and accounts.entries == ()
    (balances,) = obie.parse("b.json", samples.OB_BALANCES)
    assert balances.closing is not None and balances.closing.amount == Decimal("1230.00")
    assert balances.account.provider_ref == "22289" and balances.account.identifier == ""
    (found,) = obie.parse("t.json", samples.OB_TRANSACTIONS)
    cash, grocer = found.entries
    assert (cash.amount, cash.currency, cash.direction) == (Decimal("10.00"), "GBP", CREDIT)
    assert (cash.servicer_ref, cash.reference, cash.remittance) == (
        "123",
        "Ref 1",
        "Cash from Aubrey",
    )
    assert (cash.counterparty_name, cash.counterparty_account) == ("Aubrey", "10203345678912")
    assert (cash.bank_code.family, cash.bank_code.subfamily) == (
        "ReceivedCreditTransfer",
        "DomesticCreditTransfer",
    )
    assert (cash.bank_code.proprietary, cash.bank_code.issuer) == ("Transfer", "AlphaBank")
    assert (cash.booking_date, cash.value_date) == (dt.date(2017, 4, 5), dt.date(2017, 4, 5))
    assert (grocer.mcc, grocer.counterparty_name, grocer.direction) == (
        "5411",
        "Corner Grocer",
        DEBIT,
    )
    assert grocer.line == samples.line_of(samples.OB_TRANSACTIONS, '"TransactionId": "124"') - 2
    assert formats.detect("t.json", samples.OB_TRANSACTIONS) == "obie"


def test_open_banking_missing_amount_and_broken_json() -> None:
    data = samples.OB_TRANSACTIONS.replace(b'"Amount": {"Amount": "4.35", "Currency": "GBP"},', b"")
    error = _refusal(obie.parse, data, "t.json")
    assert error.element == "$.Data.Transaction[1].Amount"
    assert error.line == samples.line_of(data, '"TransactionId": "124"') - 2
    error = _refusal(obie.parse, samples.OB_TRANSACTIONS[:-40], "t.json")
    assert "not valid JSON" in error.message and error.line > 1
    data = samples.OB_TRANSACTIONS.replace(b'"Amount": "10.00"', b'"Amount": 10.0')
    assert "string" in _refusal(obie.parse, data, "t.json").message


def test_csv_with_a_mapping() -> None:
    mapping = csvmap.load_mapping("bank.toml", samples.CSV_MAPPING)
    (statement,) = csvmap.parse("export.csv", samples.CSV, mapping)
    assert (statement.account.scheme, statement.account.identifier) == ("IBAN", samples.IBAN)
    salary, coffee, again = statement.entries
    assert (salary.amount, salary.direction, salary.booking_date) == (
        Decimal("1500.00"),
        CREDIT,
        DAY,
    )
    assert (coffee.amount, coffee.direction, coffee.mcc) == (Decimal("42.10"), DEBIT, "5814")
    assert coffee.value_date == dt.date(2026, 11, 29) and coffee.line == 3
    # two identical coffees: two entries, told apart by their occurrence in the file
    first, second = keys.entry_keys([coffee, again])
    assert first != second and keys.entry_keys([coffee, again]) == [first, second]
    json_mapping = csvmap.load_mapping(
        "m.json",
        b'{"account": {"identifier": "X-1", "currency": "CHF"}, "columns": {"booking_date": '
        b'"d", "debit": "out", "credit": "in"}, "format": {"sign": "split"}}',
    )
    (split,) = csvmap.parse("s.csv", b"d,out,in\n2026-11-28,,5.05\n2026-11-29,1.5,\n", json_mapping)
    assert [(e.amount, e.direction, e.currency) for e in split.entries] == [
        (Decimal("5.05"), CREDIT, "CHF"),
        (Decimal("1.5"), DEBIT, "CHF"),
    ]
    assert split.account.scheme == "OTHER"


def test_csv_refusals_name_the_column_and_line() -> None:
    mapping = csvmap.load_mapping("bank.toml", samples.CSV_MAPPING)
    data = samples.CSV.replace(b"29.11.2026;42,10", b"29.11.2026;4x,10", 1)
    error = _refusal(lambda n, d: csvmap.parse(n, d, mapping), data, "export.csv")
    assert (error.element, error.line) == ("column 'Betrag'", 3)
    with pytest.raises(BankImportError, match=r"columns\.booking_date"):
        csvmap.load_mapping(
            "m.toml", b'[account]\nidentifier="X"\ncurrency="EUR"\n[columns]\namount="a"\n'
        )
    with pytest.raises(BankImportError, match="CSV needs a column mapping"):
        formats.parse("x.csv", samples.CSV, "csv")
