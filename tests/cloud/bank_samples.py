"""Small statement files for the bank tests, built from each format's message structure.

``camt(version, message, entries)`` writes a camt.053 or camt.052 of any version .02-.08
the way that version names its elements (``BIC``/``BICFI``, ``Dbtr/Nm``/``Dbtr/Pty/Nm``,
``Sts``/``Sts/Cd``, ``AmtDtls/TxAmt/Amt``/``TxDtls/Amt``), so the tests can check that the
values put in come out exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from xml.sax.saxutils import escape

IBAN = "DE89370400440532013000"
BIC = "COBADEFFXXX"


@dataclass(frozen=True)
class Tx:
    """One transaction (TxDtls) of an entry."""

    amount: str | None = None  # own amount (batch bookings)
    name: str = ""
    account: str = ""
    remittance: str = ""
    end_to_end: str = ""


@dataclass(frozen=True)
class Ntry:
    amount: str
    direction: str  # CRDT / DBIT
    booked: str = "2026-11-28"
    value: str = "2026-11-28"
    status: str = "BOOK"
    servicer_ref: str = ""
    domain: tuple[str, str, str] = ("PMNT", "RCDT", "ESCT")
    proprietary: str = ""
    issuer: str = ""
    txs: tuple[Tx, ...] = field(default_factory=tuple)
    currency: str = "EUR"
    info: str = ""


SALARY = Ntry(
    "1500.00",
    "CRDT",
    servicer_ref="REF-0001",
    proprietary="NTRF+166+0000",
    issuer="DK",
    txs=(
        Tx(
            name="ACME GMBH",
            account="DE02120300000000202051",
            remittance="SALARY NOVEMBER",
            end_to_end="E2E-SAL-11",
        ),
    ),
)
COFFEE = Ntry(
    "42.10",
    "DBIT",
    domain=("PMNT", "CCRD", "POSD"),
    txs=(Tx(name="BEAN AND CO", account="DE44500105175407324931", remittance="COFFEE 28.11"),),
)
BATCH = Ntry(
    "300.00",
    "DBIT",
    servicer_ref="REF-0003",
    domain=("PMNT", "ICDT", "ESCT"),
    txs=(
        Tx("100.00", "LANDLORD LTD", "GB29NWBK60161331926819", "RENT DECEMBER", "E2E-R"),
        Tx("200.00", "CITY POWER", "FR1420041010050500013M02606", "INVOICE 778", "E2E-P"),
    ),
)


def _amount(tag: str, amount: str, currency: str) -> str:
    return '<%s Ccy="%s">%s</%s>' % (tag, currency, amount, tag)


def _party(version: int, role: str, name: str, account: str) -> str:
    inner = "<Nm>%s</Nm>" % escape(name)
    party = (
        "<%s><Pty>%s</Pty></%s>" % (role, inner, role)
        if version >= 8
        else ("<%s>%s</%s>" % (role, inner, role))
    )
    return party + "<%sAcct><Id><IBAN>%s</IBAN></Id></%sAcct>" % (role, account, role)


def _tx(version: int, entry: Ntry, tx: Tx) -> str:
    parts = [
        "<TxDtls>",
        "<Refs><EndToEndId>%s</EndToEndId></Refs>" % (tx.end_to_end or "NOTPROVIDED"),
    ]
    if tx.amount is not None:
        if version >= 3:
            parts.append(_amount("Amt", tx.amount, entry.currency))
            parts.append("<CdtDbtInd>%s</CdtDbtInd>" % entry.direction)
        else:
            parts.append(
                "<AmtDtls><TxAmt>%s</TxAmt></AmtDtls>" % _amount("Amt", tx.amount, entry.currency)
            )
    role = "Dbtr" if entry.direction == "CRDT" else "Cdtr"
    parts.append("<RltdPties>%s</RltdPties>" % _party(version, role, tx.name, tx.account))
    if tx.remittance:
        parts.append("<RmtInf><Ustrd>%s</Ustrd></RmtInf>" % escape(tx.remittance))
    parts.append("</TxDtls>")
    return "".join(parts)


def _entry(version: int, entry: Ntry) -> str:
    status = (
        "<Sts><Cd>%s</Cd></Sts>" % entry.status
        if version >= 8
        else ("<Sts>%s</Sts>" % entry.status)
    )
    domain, family, subfamily = entry.domain
    code = "<BkTxCd><Domn><Cd>%s</Cd><Fmly><Cd>%s</Cd><SubFmlyCd>%s</SubFmlyCd></Fmly></Domn>" % (
        domain,
        family,
        subfamily,
    )
    if entry.proprietary:
        code += "<Prtry><Cd>%s</Cd><Issr>%s</Issr></Prtry>" % (entry.proprietary, entry.issuer)
    code += "</BkTxCd>"
    lines = [
        "  <Ntry>",
        "   " + _amount("Amt", entry.amount, entry.currency),
        "   <CdtDbtInd>%s</CdtDbtInd>" % entry.direction,
        "   " + status,
        "   <BookgDt><Dt>%s</Dt></BookgDt>" % entry.booked if entry.booked else "",
        "   <ValDt><Dt>%s</Dt></ValDt>" % entry.value,
        "   <AcctSvcrRef>%s</AcctSvcrRef>" % entry.servicer_ref if entry.servicer_ref else "",
        "   " + code,
        "   <NtryDtls>%s</NtryDtls>" % "".join(_tx(version, entry, tx) for tx in entry.txs),
        "   <AddtlNtryInf>%s</AddtlNtryInf>" % entry.info if entry.info else "",
        "  </Ntry>",
    ]
    return "\n".join(line for line in lines if line)


def camt(
    version: int,
    message: str = "053",
    entries: tuple[Ntry, ...] = (SALARY, COFFEE, BATCH),
    msg_id: str = "MSG-2026-11-28",
    stmt_id: str = "STMT-0331",
    opening: str = "1000.00",
    closing: str = "2157.90",
) -> bytes:
    """A camt.053 (or ``message="052"``) of ``version`` (2..8) with ``entries``."""
    namespace = "urn:iso:std:iso:20022:tech:xsd:camt.%s.001.%02d" % (message, version)
    body, item = ("BkToCstmrStmt", "Stmt") if message == "053" else ("BkToCstmrAcctRpt", "Rpt")
    bic = "BICFI" if version >= 5 else "BIC"
    closing_code = "CLBD" if message == "053" else "ITBD"
    text = "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<Document xmlns="%s">' % namespace,
            "<%s>" % body,
            " <GrpHdr><MsgId>%s</MsgId><CreDtTm>2026-11-28T18:00:00+01:00</CreDtTm></GrpHdr>"
            % msg_id,
            " <%s>" % item,
            "  <Id>%s</Id>" % stmt_id,
            "  <ElctrncSeqNb>331</ElctrncSeqNb>",
            "  <CreDtTm>2026-11-28T18:00:00+01:00</CreDtTm>",
            "  <FrToDt><FrDtTm>2026-11-28T00:00:00+01:00</FrDtTm>"
            "<ToDtTm>2026-11-28T18:00:00+01:00</ToDtTm></FrToDt>",
            "  <Acct><Id><IBAN>%s</IBAN></Id><Ccy>EUR</Ccy><Ownr><Nm>Erika Mustermann</Nm>"
            "</Ownr><Svcr><FinInstnId><%s>%s</%s></FinInstnId></Svcr></Acct>"
            % (IBAN, bic, BIC, bic),
            "  <Bal><Tp><CdOrPrtry><Cd>PRCD</Cd></CdOrPrtry></Tp>%s<CdtDbtInd>CRDT</CdtDbtInd>"
            "<Dt><Dt>2026-11-27</Dt></Dt></Bal>" % _amount("Amt", opening, "EUR"),
            "  <Bal><Tp><CdOrPrtry><Cd>%s</Cd></CdOrPrtry></Tp>%s<CdtDbtInd>CRDT</CdtDbtInd>"
            "<Dt><Dt>2026-11-28</Dt></Dt></Bal>" % (closing_code, _amount("Amt", closing, "EUR")),
            *(_entry(version, entry) for entry in entries),
            " </%s>" % item,
            "</%s>" % body,
            "</Document>",
            "",
        ]
    )
    return text.encode("utf-8")


def line_of(data: bytes, needle: str, occurrence: int = 1) -> int:
    """The line (from 1) of the ``occurrence``-th line containing ``needle``."""
    count = 0
    for number, text in enumerate(data.decode("utf-8").split("\n"), 1):
        if needle in text:
            count += 1
            if count == occurrence:
                return number
    raise AssertionError("%r not in the sample" % needle)


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE Document [
<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&lol2;</Document>
"""

# MT940 (SWIFT), German structured :86: (GVC 166 credit transfer, 005 direct debit).
MT940 = b"""{1:F01COBADEFFAXXX0000000000}{2:O9401200261128COBADEFFXXXX00000000002611281200N}{4:
:20:STARTUMS
:25:DE89370400440532013000
:28C:00012/001
:60F:C261127EUR1000,00
:61:2611281128C1500,00NTRFNONREF//BANKREF-0001
/OCMT/EUR1500,00/
:86:166?00GUTSCHRIFT?20EREF+E2E-SAL-11?21SVWZ+SALARY NOVEMBER
?30COBADEFF?31DE02120300000000202051?32ACME GMBH
:61:2611281128D42,10NMSC001-REF//BANKREF-0002
:86:005?00LASTSCHRIFT?20COFFEE 28.11?32BEAN AND CO
:61:2611281128RD5,00NCHGNONREF//BANKREF-0003
:86:805?00STORNO GEBUEHR?20FEE REFUND
:62F:C261128EUR2462,90
:64:C261128EUR2462,90
-}
"""

MT940_SECOND_DAY = b""":20:STARTUMS
:25:DE89370400440532013000
:28C:00013/001
:60F:C261128EUR2462,90
:61:2611291129D62,90NDDTNONREF//BANKREF-0004
:86:005?00LASTSCHRIFT?20MOBILE PHONE?32TELCO AG
:62F:C261129EUR2400,00
-
"""

# UK Open Banking v3.1 account information, shaped like the specification's examples.
OB_ACCOUNTS = b"""{
  "Data": {
    "Account": [
      {
        "AccountId": "22289",
        "Status": "Enabled",
        "StatusUpdateDateTime": "2019-01-01T06:06:06+00:00",
        "Currency": "GBP",
        "AccountType": "Personal",
        "AccountSubType": "CurrentAccount",
        "Nickname": "Bills",
        "OpeningDate": "2017-01-01T00:00:00+00:00",
        "Account": [
          {
            "SchemeName": "UK.OBIE.SortCodeAccountNumber",
            "Identification": "80200110203345",
            "Name": "Mr Kevin",
            "SecondaryIdentification": "00021"
          }
        ]
      }
    ]
  },
  "Links": {"Self": "https://api.alphabank.com/open-banking/v3.1/aisp/accounts/22289"},
  "Meta": {"TotalPages": 1}
}
"""

OB_BALANCES = b"""{
  "Data": {
    "Balance": [
      {
        "AccountId": "22289",
        "Amount": {"Amount": "1230.00", "Currency": "GBP"},
        "CreditDebitIndicator": "Credit",
        "Type": "InterimBooked",
        "DateTime": "2017-04-05T10:43:07+00:00",
        "CreditLine": [
          {"Included": true, "Amount": {"Amount": "1000.00", "Currency": "GBP"},
           "Type": "Pre-Agreed"}
        ]
      }
    ]
  },
  "Links": {"Self": "https://api.alphabank.com/open-banking/v3.1/aisp/accounts/22289/balances/"},
  "Meta": {"TotalPages": 1}
}
"""

OB_TRANSACTIONS = b"""{
  "Data": {
    "Transaction": [
      {
        "AccountId": "22289",
        "TransactionId": "123",
        "TransactionReference": "Ref 1",
        "Amount": {"Amount": "10.00", "Currency": "GBP"},
        "CreditDebitIndicator": "Credit",
        "Status": "Booked",
        "BookingDateTime": "2017-04-05T10:43:07+00:00",
        "ValueDateTime": "2017-04-05T10:45:22+00:00",
        "TransactionInformation": "Cash from Aubrey",
        "BankTransactionCode": {"Code": "ReceivedCreditTransfer",
                                "SubCode": "DomesticCreditTransfer"},
        "ProprietaryBankTransactionCode": {"Code": "Transfer", "Issuer": "AlphaBank"},
        "DebtorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber",
                          "Identification": "10203345678912", "Name": "Aubrey"},
        "Balance": {"Amount": {"Amount": "230.00", "Currency": "GBP"},
                    "CreditDebitIndicator": "Credit", "Type": "InterimBooked"}
      },
      {
        "AccountId": "22289",
        "TransactionId": "124",
        "Amount": {"Amount": "4.35", "Currency": "GBP"},
        "CreditDebitIndicator": "Debit",
        "Status": "Booked",
        "BookingDateTime": "2017-04-06T08:12:00+00:00",
        "TransactionInformation": "Card purchase",
        "MerchantDetails": {"MerchantName": "Corner Grocer", "MerchantCategoryCode": "5411"}
      }
    ]
  },
  "Links": {"Self": "https://api.alphabank.com/open-banking/v3.1/aisp/accounts/22289/transactions/"},
  "Meta": {"TotalPages": 1}
}
"""

CSV = """Datum;Valuta;Betrag;Soll/Haben;Name;IBAN;Verwendungszweck;Referenz;MCC
28.11.2026;28.11.2026;1.500,00;H;ACME GMBH;DE02120300000000202051;SALARY NOVEMBER;;
28.11.2026;29.11.2026;42,10;S;BEAN AND CO;;COFFEE 28.11;;5814
28.11.2026;29.11.2026;42,10;S;BEAN AND CO;;COFFEE 28.11;;5814
""".encode("cp1252")

CSV_MAPPING = b"""
[account]
identifier = "DE89 3704 0044 0532 0130 00"
currency = "EUR"

[columns]
booking_date = "Datum"
value_date = "Valuta"
amount = "Betrag"
direction = "Soll/Haben"
counterparty_name = "Name"
counterparty_account = "IBAN"
remittance = "Verwendungszweck"
reference = "Referenz"
mcc = "MCC"

[format]
delimiter = ";"
encoding = "cp1252"
date = "%d.%m.%Y"
decimal = ","
thousands = "."
sign = "indicator"
credit_values = ["H"]
debit_values = ["S"]
"""


def total(*amounts: str) -> Decimal:
    return sum((Decimal(a) for a in amounts), Decimal(0))
