"""Rows by an id taken from a URL (where any integer may arrive), scoped to branches."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from apiflask import abort
from sqlalchemy.orm import Session

from cloud.access import check_branch

T = TypeVar("T")

MAX_ID = 2**31 - 1  # Integer primary keys: 32-bit on PostgreSQL


def by_id(db: Session, model: type[T], ident: int) -> T | None:
    """The ``model`` row with primary key ``ident``, or None (also for impossible ids)."""
    if not 0 < ident <= MAX_ID:
        return None
    return db.get(model, ident)


def visible_or_404(db: Session, model: type[T], ident: int, branch_of: Callable[[T], int]) -> T:
    """The row ``ident`` when the caller may act on its branch (``branch_of(row)``).

    Otherwise 404, the same answer as for a row that does not exist (OWASP API1).
    """
    row = by_id(db, model, ident)
    if row is None:
        abort(404)
    check_branch(branch_of(row))
    return row
