"""Sections that show a table's newest rows with all its columns as text (rule decisions,
offer decisions and results, campaigns), from the areas' own models.

They used to read the tables by reflection (``Table(name, autoload_with=...)``), because
they were written while those areas were built beside this one and the pages could not
import them, and so that a missing table read as "not available". The areas are part of
the product now: their migrations always run, ``analytics_data`` and ``customer_data``
already import ``cloud.offers``, ``cloud.apps`` and ``cloud.notifications``, and the models
import nothing of the dashboards. So the sections read the models' tables, which have the
same columns in the same order as the database (the migrations make them), without
reflecting a table (several catalogue queries on PostgreSQL) on every page view; a column
an area adds shows once its model has it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import FromClause, Select, desc, select
from sqlalchemy.orm import Session

from cloud.db import Base
from cloud.ingest.models import utc

# Columns never shown: keys, secrets, and what the page shows elsewhere.
HIDDEN = ("id", "password_hash", "token_hash", "irk_sealed", "key_sealed", "code_hash")
MAX_ROWS = 50


def first_column(table: FromClause, *names: str) -> Any | None:
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
    model: type[Base],
    customer_id: int,
    addresses: Collection[str],
    hidden: Collection[str] = (),
) -> Rows | None:
    """The newest rows of ``model``'s table about one customer: by its ``customer_id``
    column, else by a wearable address column (``wearable``, ``address``, ``subject``) among
    ``addresses``. None when it has neither column or the customer has no address."""
    table = model.__table__
    query = select(table)
    if "customer_id" in table.c:
        query = query.where(table.c.customer_id == customer_id)
    else:
        column = first_column(table, "wearable", "address", "subject")
        if column is None or not addresses:
            return None
        query = query.where(column.in_(sorted(addresses)))
    order_by = ("id", "decided_at", "at", "created_at")
    return _newest(db, model, query, order_by, MAX_ROWS, hidden)


def newest_rows(db: Session, model: type[Base], limit: int = 20) -> Rows:
    """The newest ``limit`` rows of ``model``'s table."""
    return _newest(db, model, select(model.__table__), ("id", "created_at"), limit)


def _newest(
    db: Session,
    model: type[Base],
    query: Select[Any],
    order_by: Sequence[str],
    limit: int,
    hidden: Collection[str] = (),
) -> Rows:
    """The first ``limit`` rows of ``query`` on ``model``'s table, newest first by the first
    of ``order_by`` it has, as text cells (``HIDDEN`` and ``hidden`` columns left out)."""
    table = model.__table__
    order = first_column(table, *order_by)
    if order is not None:
        query = query.order_by(desc(order))
    shown = [c.name for c in table.c if c.name not in HIDDEN and c.name not in hidden]
    result = db.execute(query.limit(limit)).mappings().all()
    return Rows(
        str(model.__tablename__), shown, [[_cell(row[name]) for name in shown] for row in result]
    )
