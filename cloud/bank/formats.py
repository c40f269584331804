"""Which importer reads a file: named (``camt``, ``mt940``, ``obie``, ``csv``) or guessed
from the first bytes (``auto``); CSV is never guessed, it needs its column mapping."""

from __future__ import annotations

from cloud.bank import camt, csvmap, obie, swift
from cloud.bank.parsed import BankImportError, Statement

FORMATS = ("auto", "camt", "mt940", "obie", "csv")


def detect(name: str, data: bytes) -> str:
    """The format of ``data`` by its content; ``BankImportError`` if none fits."""
    if camt.namespace_of(data):
        return "camt"
    if obie.looks_like(data):
        return "obie"
    if swift.looks_like(data):
        return "mt940"
    head = data[:200].lstrip(b"\xef\xbb\xbf \r\n\t")
    if head.startswith(b"<"):
        return "camt"  # XML of some other kind: camt's parser says what is wrong with it
    raise BankImportError(
        name,
        "",
        1,
        "cannot tell the format (camt, MT940, Open Banking JSON); CSV needs "
        "--format csv and a mapping",
    )


def parse(
    name: str, data: bytes, fmt: str = "auto", mapping: csvmap.CsvMapping | None = None
) -> tuple[str, tuple[Statement, ...]]:
    """The format and the statements of one file; ``BankImportError`` if malformed."""
    if fmt not in FORMATS:
        raise BankImportError(name, "", 0, "unknown format %r (one of %s)" % (fmt, FORMATS))
    if fmt == "auto":
        try:
            fmt = detect(name, data)
        except BankImportError:
            if mapping is None:
                raise
            fmt = "csv"  # a mapping was given, and the file is none of the others
    if fmt == "camt":
        return fmt, camt.parse(name, data)
    if fmt == "mt940":
        return fmt, swift.parse(name, data)
    if fmt == "obie":
        return fmt, obie.parse(name, data)
    if mapping is None:
        raise BankImportError(name, "", 0, "CSV needs a column mapping (--mapping)")
    return fmt, csvmap.parse(name, data, mapping)
