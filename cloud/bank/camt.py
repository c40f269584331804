"""ISO 20022 camt.053 (end-of-day statement) and camt.052 (intraday report), versions
.001.02 to .001.08, into the common parsed form.

The differences between versions this reads both ways: the servicer's BIC is ``BIC``
(.02-.04) or ``BICFI`` (.05 on); a party is ``Dbtr/Nm`` (to .07) or ``Dbtr/Pty/Nm`` (.08);
an entry status is ``Sts`` text (to .07) or ``Sts/Cd`` (.08); a transaction's own amount is
``TxDtls/AmtDtls/TxAmt/Amt`` (every version) or ``TxDtls/Amt`` (.03 on).

An entry with several ``TxDtls`` that each carry an amount (a batch booking) becomes one
entry per transaction; otherwise the entry is one entry with its first ``TxDtls``' details.
Merchant category codes (ISO 18245): from .001.03 on a card payment carries one in
``TxCtgy`` ("transaction category", ExternalCardTransactionCategory1Code, defined as the
ISO 18245 code): per transaction in ``TxDtls/CardTx/Tx/Indv/TxCtgy`` (or ``Tx/Aggtd``),
for the whole entry in ``Ntry/CardTx/AggtdNtry/TxCtgy`` (CardTransaction1/2/17, CardEntry1/
2/4 of .03-.08); the transaction's wins over the entry's. Only four digits are taken: the
schema allows 1-4 characters, and anything else is not an ISO 18245 code (left empty, the
entry imported as usual). Version .001.02 has no card elements: banks that send it put a
code, if at all, in proprietary text, which is not read. The MCC is not part of an entry's
key (``keys``), so importing a file again stores nothing new.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from cloud.bank.parsed import (
    BOOKED,
    CREDIT,
    DIRECTIONS,
    STATUSES,
    AccountRef,
    Balance,
    BankCode,
    BankImportError,
    Entry,
    Statement,
    as_utc,
    check_currency,
    parse_amount,
)
from cloud.bank.xmlpath import Node
from cloud.bank.xmlsafe import XmlRefused, local, parse_xml

NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.(05[23])\.001\.0([2-8])")
# message -> (its body element, the element of each statement in it)
BODIES = {"053": ("BkToCstmrStmt", "Stmt"), "052": ("BkToCstmrAcctRpt", "Rpt")}
OPENING = ("OPBD", "PRCD")  # opening booked; previously closed booked
CLOSING = ("CLBD", "ITBD")  # closing booked; interim booked (the latest in a camt.052)
_GVC = re.compile(r"^[A-Z]{4}\+(\d{3})")  # DK "NTRF+166+..." proprietary codes
_MCC = re.compile(r"\d{4}")
# Where a card payment's ISO 18245 code is (module docstring), below TxDtls and below Ntry.
_TX_MCC = (("CardTx", "Tx", "Indv", "TxCtgy"), ("CardTx", "Tx", "Aggtd", "TxCtgy"))
_ENTRY_MCC = (("CardTx", "AggtdNtry", "TxCtgy"),)


def namespace_of(data: bytes) -> str | None:
    """The camt namespace in the first bytes of ``data``, if any (format detection)."""
    match = NAMESPACE.search(data[:2048].decode("ascii", "replace"))
    return match.group(0) if match else None


def parse(name: str, data: bytes) -> tuple[Statement, ...]:
    """Every statement of a camt.053 or camt.052 file; ``BankImportError`` if malformed."""
    try:
        root = parse_xml(data)
    except XmlRefused as exc:
        raise BankImportError(name, "", exc.line, exc.message) from None
    namespace = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
    match = NAMESPACE.fullmatch(namespace)
    if local(root.tag) != "Document" or match is None:
        raise BankImportError(
            name,
            "/" + local(root.tag),
            root.sourceline,
            "not a camt.052 or camt.053 message of versions .001.02 to .001.08 (namespace %r)"
            % namespace,
        )
    message, version = match.group(1), int(match.group(2))
    document = Node(root, "/Document", namespace, name)
    body_name, statement_name = BODIES[message]
    body = document.required(body_name)
    header = body.required("GrpHdr")
    message_id = header.required_text("MsgId")
    kind = "camt." + message
    statements = tuple(
        _statement(node, kind, message_id, version) for node in body.children(statement_name)
    )
    if not statements:
        raise body.error("no %s in the message" % statement_name)
    return statements


def _statement(node: Node, kind: str, message_id: str, version: int) -> Statement:
    account = _account(node.required("Acct"))
    opening = closing = None
    for balance in node.children("Bal"):
        code = balance.first_text(("Tp", "CdOrPrtry", "Cd"), ("Tp", "CdOrPrtry", "Prtry"))
        value = _balance(balance)
        if code in OPENING and opening is None:
            opening = value
        elif code in CLOSING:
            closing = value if code == "CLBD" or closing is None else closing
    if not account.currency:
        known = opening or closing
        currency = known.currency if known is not None else ""
        account = AccountRef(
            account.scheme, account.identifier, currency, account.servicer, account.name
        )
    entries: list[Entry] = []
    for entry in node.children("Ntry"):
        entries.extend(_entries(entry))
    if not account.currency and entries:
        account = AccountRef(
            account.scheme, account.identifier, entries[0].currency, account.servicer, account.name
        )
    period = node.child("FrToDt")
    return Statement(
        kind=kind,
        account=account,
        message_id=message_id,
        statement_id=node.required_text("Id"),
        sequence=node.text("ElctrncSeqNb") or node.text("LglSeqNb"),
        created=_datetime(node, "CreDtTm"),
        period_start=_datetime(period, "FrDtTm") if period else None,
        period_end=_datetime(period, "ToDtTm") if period else None,
        opening=opening,
        closing=closing,
        entries=tuple(entries),
    )


def _account(node: Node) -> AccountRef:
    iban = node.text("Id", "IBAN")
    other = node.text("Id", "Othr", "Id")
    if not iban and not other:
        raise node.error("no account identification (IBAN or Othr/Id)", "Id")
    currency = node.text("Ccy")
    if currency and not check_currency(currency):
        raise node.error("%r is not an ISO 4217 currency code" % currency, "Ccy")
    servicer = node.first_text(
        ("Svcr", "FinInstnId", "BICFI"), ("Svcr", "FinInstnId", "BIC"), ("Svcr", "FinInstnId", "Nm")
    )
    return AccountRef(
        scheme="IBAN" if iban else "OTHER",
        identifier=iban or other,
        currency=currency,
        servicer=servicer,
        name=node.text("Nm") or node.text("Ownr", "Nm"),
    )


def _money(node: Node, name: str = "Amt") -> tuple[Decimal, str]:
    amount = node.child(name)
    if amount is None:
        raise node.error("missing amount", name)
    currency = amount.element.get("Ccy", "")
    if not check_currency(currency):
        raise amount.error("%r is not an ISO 4217 currency code (Ccy)" % currency)
    try:
        return parse_amount(amount.element.text or ""), currency
    except ValueError as exc:
        raise amount.error(str(exc)) from None


def _direction(node: Node) -> str:
    direction = node.required_text("CdtDbtInd")
    if direction not in DIRECTIONS:
        raise node.error("%r is neither CRDT nor DBIT" % direction, "CdtDbtInd")
    return direction


def _balance(node: Node) -> Balance:
    amount, currency = _money(node)
    signed = amount if _direction(node) == CREDIT else -amount
    return Balance(signed, currency, _date(node, "Dt"))


def _date(node: Node, name: str) -> dt.date | None:
    """A DateAndDateTimeChoice (``Dt`` or ``DtTm``) below ``name``."""
    holder = node.child(name)
    if holder is None:
        return None
    text = holder.text("Dt") or holder.text("DtTm")
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        raise holder.error("%r is not a date" % text) from None


def _datetime(node: Node, name: str) -> dt.datetime | None:
    text = node.text(name)
    if not text:
        return None
    try:
        return as_utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise node.error("%r is not a date and time" % text, name) from None


def _status(node: Node) -> str:
    status = node.text("Sts", "Cd") or node.text("Sts") or BOOKED
    if status not in STATUSES:
        raise node.error("%r is not BOOK, PDNG or INFO" % status, "Sts")
    return status


def _bank_code(node: Node | None) -> BankCode:
    if node is None:
        return BankCode()
    proprietary = node.text("Prtry", "Cd")
    gvc = _GVC.match(proprietary)
    return BankCode(
        domain=node.text("Domn", "Cd"),
        family=node.text("Domn", "Fmly", "Cd"),
        subfamily=node.text("Domn", "Fmly", "SubFmlyCd"),
        proprietary=proprietary,
        issuer=node.text("Prtry", "Issr"),
        gvc=gvc.group(1) if gvc else "",
    )


def _party_name(parties: Node, role: str) -> str:
    return parties.first_text((role, "Nm"), (role, "Pty", "Nm"))


def _party_account(parties: Node, role: str) -> str:
    return parties.first_text((role, "Id", "IBAN"), (role, "Id", "Othr", "Id"))


def _details(entry: Node, tx: Node | None, direction: str) -> dict[str, Any]:
    """Counterparty, remittance and references of one transaction (or of the entry)."""
    found: dict[str, Any] = {}
    if tx is not None:
        parties = tx.child("RltdPties")
        if parties is not None:
            # The counterparty pays us on a credit and is paid by us on a debit.
            role = "Dbtr" if direction == CREDIT else "Cdtr"
            found["counterparty_name"] = _party_name(parties, role)
            found["counterparty_account"] = _party_account(parties, role + "Acct")
        remittance_info = tx.child("RmtInf")
        lines = [] if remittance_info is None else remittance_info.children("Ustrd")
        remittance = " ".join(
            (line.element.text or "").strip() for line in lines if (line.element.text or "").strip()
        )
        reference = tx.text("RmtInf", "Strd", "CdtrRefInf", "Ref")
        found["remittance"] = remittance or tx.text("AddtlTxInf") or reference
        found["end_to_end_id"] = _not_provided(tx.text("Refs", "EndToEndId"))
        found["reference"] = reference or _not_provided(tx.text("Refs", "InstrId"))
        tx_code = tx.child("BkTxCd")
        if tx_code is not None:
            found["bank_code"] = _bank_code(tx_code)
    if not found.get("remittance"):
        found["remittance"] = entry.text("AddtlNtryInf")
    found["mcc"] = _mcc(tx, *_TX_MCC) or _mcc(entry, *_ENTRY_MCC)
    return found


def _mcc(node: Node | None, *paths: tuple[str, ...]) -> str:
    """The first four-digit code along ``paths`` below ``node`` (module docstring)."""
    if node is None:
        return ""
    for path in paths:
        code = node.text(*path)
        if _MCC.fullmatch(code):
            return code
    return ""


def _not_provided(reference: str) -> str:
    return "" if reference == "NOTPROVIDED" else reference


def _entries(node: Node) -> list[Entry]:
    amount, currency = _money(node)
    direction = _direction(node)
    status = _status(node)
    common: dict[str, Any] = {
        "currency": currency,
        "status": status,
        "booking_date": _date(node, "BookgDt"),
        "value_date": _date(node, "ValDt"),
        "reversal": node.text("RvslInd") == "true",
        "bank_code": _bank_code(node.child("BkTxCd")),
        "line": node.line,
    }
    entry_ref = node.text("AcctSvcrRef")
    txs = [tx for details in node.children("NtryDtls") for tx in details.children("TxDtls")]
    amounts = [_tx_amount(tx) for tx in txs]
    if len(txs) > 1 and all(found is not None for found in amounts):
        split = []
        for index, (tx, found) in enumerate(zip(txs, amounts, strict=True), 1):
            assert found is not None
            tx_amount, tx_currency = found
            tx_direction = _direction(tx) if tx.child("CdtDbtInd") is not None else direction
            details = {**common, **_details(node, tx, tx_direction)}
            details["currency"] = tx_currency
            tx_ref = tx.text("Refs", "AcctSvcrRef")
            servicer_ref = tx_ref or ("%s/%d" % (entry_ref, index) if entry_ref else "")
            split.append(
                Entry(
                    amount=tx_amount,
                    direction=tx_direction,
                    servicer_ref=servicer_ref,
                    **details,
                )
            )
        return split
    details = {**common, **_details(node, txs[0] if txs else None, direction)}
    return [
        Entry(
            amount=amount,
            direction=direction,
            servicer_ref=entry_ref,
            **details,
        )
    ]


def _tx_amount(tx: Node) -> tuple[Decimal, str] | None:
    if tx.child("Amt") is not None:
        return _money(tx)
    holder = tx.child("AmtDtls", "TxAmt")
    return _money(holder) if holder is not None else None
