"""The natural key of a transaction, which makes importing idempotent.

Rows are UNIQUE on (account, key), so the database refuses a second copy whatever the
file it came in. The key is the SHA-256 (hex) of:

- ``ref``, the account servicer's reference, when the file has one (camt ``AcctSvcrRef``,
  MT940 ``:61:`` bank reference after ``//``, Open Banking ``TransactionId``, a mapped CSV
  column). The bank gives it once per entry and keeps it across the intraday camt.052,
  the end-of-day camt.053 and any re-send, so it is the best key there is.
- otherwise ``dig``, the entry's own content: booking date (value date if it has none),
  amount, direction, currency, reference and remittance text, plus an occurrence counter
  within the statement (0 for the first entry with that content, 1 for the second...). Two
  identical coffees on one day are two entries (counters 0 and 1); the same statement
  imported again, or a later statement that repeats them, gives the same keys again. An
  intraday report with one of them and the day's statement with both adds only the second.

What the content key cannot tell apart: an entry whose text the bank changes between the
intraday report and the statement, which then counts as a new entry. Banks that send camt
give ``AcctSvcrRef``, which avoids that.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

from cloud.bank.parsed import Entry


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def content(entry: Entry) -> str:
    """The content part of an entry's key (without the occurrence counter)."""
    day = entry.booking_date or entry.value_date
    return "\x1f".join(
        (
            day.isoformat() if day else "",
            format(entry.amount.normalize(), "f"),
            entry.direction,
            entry.currency,
            entry.reference,
            entry.remittance,
        )
    )


def entry_keys(entries: Iterable[Entry]) -> list[str]:
    """The key of each entry of one statement, in order."""
    seen: Counter[str] = Counter()
    keys = []
    for entry in entries:
        if entry.servicer_ref:
            # a reference repeated within one statement (a bank's mistake) still keeps the
            # entries apart, the same way on every import
            body = "ref\x1f" + entry.servicer_ref
            repeat = seen[body]
            seen[body] += 1
            keys.append(_digest("ref", entry.servicer_ref, *(("%d" % repeat,) if repeat else ())))
            continue
        body = content(entry)
        keys.append(_digest("dig", body, str(seen[body])))
        seen[body] += 1
    return keys
