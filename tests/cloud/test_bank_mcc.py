"""Merchant category codes (ISO 18245) from camt statements: hand-written camt.053 files with
the code where the ISO 20022 schemas put it (``TxCtgy`` of a card transaction, .001.03 on),
elements in schema order; imported twice on SQLite and PostgreSQL, the codes stored once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.bank import camt
from cloud.bank.models import BankTransaction
from cloud.bank.service import import_file

NOW = dt.datetime(2026, 11, 29, 7, 0, tzinfo=dt.UTC)

# camt.053.001.08: ReportEntry10 (... BkTxCd, ..., CardTx (CardEntry4), NtryDtls ...),
# EntryTransaction10 (Refs, Amt, CdtDbtInd, ..., RltdPties, ..., CardTx (CardTransaction17:
# Card, POI, Tx (CardTransaction3Choice: Aggtd | Indv (CardIndividualTransaction2:
# ..., AddtlSvc, TxCtgy, ...)))).
V08 = b"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>MCC-08</MsgId><CreDtTm>2026-11-28T18:00:00Z</CreDtTm></GrpHdr>
  <Stmt>
   <Id>MCC-08-1</Id>
   <CreDtTm>2026-11-28T18:00:00Z</CreDtTm>
   <Acct><Id><IBAN>GB33BUKB20201555555555</IBAN></Id><Ccy>GBP</Ccy></Acct>
   <Bal>
    <Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp>
    <Amt Ccy="GBP">500.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-28</Dt></Dt>
   </Bal>
   <Ntry>
    <Amt Ccy="GBP">62.40</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>2026-11-28</Dt></BookgDt><AcctSvcrRef>CARD-1</AcctSvcrRef>
    <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>CCRD</Cd><SubFmlyCd>POSD</SubFmlyCd></Fmly></Domn></BkTxCd>
    <NtryDtls><TxDtls>
     <RltdPties><Cdtr><Pty><Nm>TESCO STORES</Nm></Pty></Cdtr></RltdPties>
     <CardTx>
      <POI><Id><Id>T-0042</Id><Tp>MERC</Tp></Id></POI>
      <Tx><Indv><AddtlSvc>RECP</AddtlSvc><TxCtgy>5411</TxCtgy><SaleRefNb>S1</SaleRefNb></Indv></Tx>
     </CardTx>
    </TxDtls></NtryDtls>
   </Ntry>
   <Ntry>
    <Amt Ccy="GBP">25.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>2026-11-28</Dt></BookgDt><AcctSvcrRef>CARD-2</AcctSvcrRef>
    <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>CCRD</Cd><SubFmlyCd>POSD</SubFmlyCd></Fmly></Domn></BkTxCd>
    <CardTx><AggtdNtry><TxCtgy>5812</TxCtgy></AggtdNtry></CardTx>
    <AddtlNtryInf>PIZZA EXPRESS</AddtlNtryInf>
   </Ntry>
   <Ntry>
    <Amt Ccy="GBP">9.99</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>2026-11-28</Dt></BookgDt><AcctSvcrRef>CARD-3</AcctSvcrRef>
    <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>CCRD</Cd><SubFmlyCd>POSD</SubFmlyCd></Fmly></Domn></BkTxCd>
    <NtryDtls><TxDtls>
     <CardTx><Tx><Indv><TxCtgy>ABC</TxCtgy></Indv></Tx></CardTx>
    </TxDtls></NtryDtls>
   </Ntry>
   <Ntry>
    <Amt Ccy="GBP">900.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
    <BookgDt><Dt>2026-11-28</Dt></BookgDt><AcctSvcrRef>SO-1</AcctSvcrRef>
    <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>STDO</SubFmlyCd></Fmly></Domn></BkTxCd>
    <NtryDtls><TxDtls>
     <RltdPties><Cdtr><Pty><Nm>OAK LETTINGS</Nm></Pty></Cdtr></RltdPties>
    </TxDtls></NtryDtls>
   </Ntry>
  </Stmt>
 </BkToCstmrStmt>
</Document>
"""

# camt.053.001.04: EntryTransaction4 (..., CardTx (CardTransaction1: Card, POI, Tx
# (CardTransaction1Choice: Aggtd (CardAggregated1: AddtlSvc, TxCtgy ...) | Indv)), ...);
# the party without ``Pty``, the status as text, the servicer's BIC as ``BICFI``.
V04 = b"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.04">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>MCC-04</MsgId><CreDtTm>2026-11-28T18:00:00Z</CreDtTm></GrpHdr>
  <Stmt>
   <Id>MCC-04-1</Id>
   <CreDtTm>2026-11-28T18:00:00Z</CreDtTm>
   <Acct><Id><IBAN>GB33BUKB20201555555556</IBAN></Id><Ccy>GBP</Ccy></Acct>
   <Bal>
    <Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp>
    <Amt Ccy="GBP">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-28</Dt></Dt>
   </Bal>
   <Ntry>
    <Amt Ccy="GBP">150.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
    <BookgDt><Dt>2026-11-28</Dt></BookgDt><AcctSvcrRef>CARD-9</AcctSvcrRef>
    <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>CCRD</Cd><SubFmlyCd>POSD</SubFmlyCd></Fmly></Domn></BkTxCd>
    <NtryDtls><TxDtls>
     <RltdPties><Cdtr><Nm>MOTHERCARE</Nm></Cdtr></RltdPties>
     <CardTx><Tx><Aggtd><TxCtgy>5641</TxCtgy></Aggtd></Tx></CardTx>
    </TxDtls></NtryDtls>
   </Ntry>
  </Stmt>
 </BkToCstmrStmt>
</Document>
"""


def test_camt_reads_the_card_transaction_category_as_the_mcc() -> None:
    (statement,) = camt.parse("mcc.xml", V08)
    assert [(e.servicer_ref, e.mcc) for e in statement.entries] == [
        ("CARD-1", "5411"),  # TxDtls/CardTx/Tx/Indv/TxCtgy
        ("CARD-2", "5812"),  # Ntry/CardTx/AggtdNtry/TxCtgy
        ("CARD-3", ""),  # schema-valid but not four digits: no ISO 18245 code
        ("SO-1", ""),  # a standing order is no card payment
    ]
    assert statement.entries[0].counterparty_name == "TESCO STORES"
    (older,) = camt.parse("mcc4.xml", V04)
    assert [(e.counterparty_name, e.mcc) for e in older.entries] == [("MOTHERCARE", "5641")]


def test_codes_are_stored_and_a_second_import_adds_nothing(db: Session) -> None:
    first = import_file(db, "mcc.xml", V08, now=NOW, actor="test")
    again = import_file(db, "mcc.xml", V08, now=NOW, actor="test")
    assert (first.new, again.new, again.present) == (4, 0, 4)
    stored = db.execute(
        select(BankTransaction.servicer_ref, BankTransaction.mcc).order_by(BankTransaction.id)
    ).all()
    assert [tuple(row) for row in stored] == [
        ("CARD-1", "5411"),
        ("CARD-2", "5812"),
        ("CARD-3", ""),
        ("SO-1", ""),
    ]
