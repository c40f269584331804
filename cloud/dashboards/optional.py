"""Tables read by reflection (rule decisions, offer results and campaigns): shown with
their own columns, "not available yet" when they do not exist in the database.

They were written when those areas were built beside this one and the pages could not
import them; the areas are part of the product now (``analytics_data`` and
``customer_data`` import ``cloud.offers``, ``cloud.apps`` and ``cloud.notifications``), but
these sections still read the tables by name, which keeps them showing every column the
area adds. A table that exists but lacks what a page needs reads as not available, never
as an error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, Select, Table, desc, inspect, select
from sqlalchemy.orm import Session

from cloud.ingest.models import utc

# Columns never shown: keys, secrets, and what the page shows elsewhere.
HIDDEN = ("id", "password_hash", "token_hash", "irk_sealed", "key_sealed", "code_hash")
MAX_ROWS = 50


def find_table(db: Session, *names: str) -> Table | None:
    """The first of ``names`` that exists in the database, reflected; None if none does."""
    bind = db.get_bind()
    inspector = inspect(bind)
    for name in names:
        if inspector.has_table(name):
            return Table(name, MetaData(), autoload_with=bind)
    return None


def first_column(table: Table, *names: str) -> Any | None:
    """The first column of ``table`` among ``names``, or None."""
    for name in names:
        if name in table.c:
            return table.c[name]
    return None


@dataclass(frozen=True)
class Rows:
    """Rows of a table as the page shows them: column names, then text cells."""

    table: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return utc(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bytes):
        return "(%d bytes)" % len(value)
    text = str(value)
    return text if len(text) <= 300 else text[:297] + "..."


def rows_about(
    db: Session,
    names: Sequence[str],
    customer_id: int,
    addresses: Collection[str],
    hidden: Collection[str] = (),
) -> Rows | None:
    """The newest rows of the first existing table of ``names`` about one customer: by its
    ``customer_id`` column, else by a wearable address column (``wearable``, ``address``,
    ``subject``) among ``addresses``. None when no such table or column exists."""
    table = find_table(db, *names)
    if table is None:
        return None
    query = select(table)
    if "customer_id" in table.c:
        query = query.where(table.c.customer_id == customer_id)
    else:
        column = first_column(table, "wearable", "address", "subject")
        if column is None or not addresses:
            return None
        query = query.where(column.in_(sorted(addresses)))
    return _newest(db, table, query, ("id", "decided_at", "at", "created_at"), MAX_ROWS, hidden)


def newest_rows(db: Session, names: Sequence[str], limit: int = 20) -> Rows | None:
    """The newest ``limit`` rows of the first existing table of ``names``."""
    table = find_table(db, *names)
    if table is None:
        return None
    return _newest(db, table, select(table), ("id", "created_at"), limit)


def _newest(
    db: Session,
    table: Table,
    query: Select[Any],
    order_by: Sequence[str],
    limit: int,
    hidden: Collection[str] = (),
) -> Rows:
    """The first ``limit`` rows of ``query`` on ``table``, newest first by the first of
    ``order_by`` it has, as text cells (``HIDDEN`` and ``hidden`` columns left out)."""
    order = first_column(table, *order_by)
    if order is not None:
        query = query.order_by(desc(order))
    shown = [c.name for c in table.c if c.name not in HIDDEN and c.name not in hidden]
    result = db.execute(query.limit(limit)).mappings().all()
    return Rows(table.name, shown, [[_cell(row[name]) for name in shown] for row in result])
