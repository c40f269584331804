"""Stored profiles: the imperative shell around the pure analytics (``models`` are the tables).

``recompute(session, customers, now)`` rebuilds the stored profile and life events of each
of ``customers`` from their booked bank transactions, then the segments of everyone
(``resegment``); the caller commits. A customer's profile is that of the currency in which
they have the most transactions: their accounts in that currency taken together (opening
balance: the sum of each account's first statement's opening balance; transactions merged
in booking order), ``as_of`` the newest booking or statement closing date, so the same
transactions always give the same profile whenever it is computed. Life events are the
predictions at ``as_of`` that reach their threshold (``Prediction.alert``), replaced with
the profile.

History (``life_event_history``, ``models.LifeEventEpisode``): each recompute also carries
the episodes on. An event found (kind and detail) with no open episode opens one (first
detected: the profile's ``as_of`` and ``now``); found again, its open episode is updated
(last seen, latest score and reasons, peak score); an open episode whose event is not found
any more ends (``ended_as_of``: the profile's date, or today's when the customer has no
profile any more). Derived from the bank's own statement data like the events themselves,
on the same footing (no consent purpose of the wearables' kind): shown to staff as the
profile is, exported and erased with the customer, ended episodes purged by the
``life_events`` retention class.

Incremental: ``after_import`` (called by ``cloud.bank.service.import_file`` once a file is
committed) recomputes only the customers whose accounts the file brought new or newly
booked entries to, in a transaction of its own; a failure there is logged and rolled back,
never the import's. ``recompute_all`` (``bankiot analytics recompute``) does every
customer with accounts and drops profiles of customers who have none any more.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, distinct, func, literal_column, select
from sqlalchemy.orm import Session

from cloud.analytics.adapter import transaction_of
from cloud.analytics.events import Prediction, detect_events
from cloud.analytics.models import CustomerProfile, LifeEvent, LifeEventEpisode
from cloud.analytics.profile import Profile, ProfileState
from cloud.analytics.recurring import RecurringSeries
from cloud.analytics.segments import Figures, segment_all
from cloud.bank.models import BankAccount, BankStatement, BankTransaction

log = logging.getLogger(__name__)

MODEL_VERSION = "profile-1"
BOOKED = "BOOK"
CENT = Decimal("0.01")


def _money(value: Decimal | float) -> str:
    return str(Decimal(repr(value) if isinstance(value, float) else value).quantize(CENT))


def _series_json(s: RecurringSeries) -> dict[str, Any]:
    return {
        "payee": s.payee,
        "direction": s.direction,
        "cadence": s.cadence.name,
        "count": s.count,
        "first": s.first.isoformat(),
        "last": s.last.isoformat(),
        "typical": _money(s.typical),
        "monthly": _money(s.monthly),
        "category": s.category,
        "next_due": s.next_due.isoformat(),
    }


def snapshot_json(profile: Profile, accounts: int, transactions: int) -> dict[str, Any]:
    """The stored summary of ``profile`` (JSON-ready; amounts as decimal strings)."""
    stats = profile.balance_stats
    return {
        "as_of": profile.as_of.isoformat(),
        "currency": profile.currency,
        "accounts": accounts,
        "transactions": transactions,
        "balance": _money(profile.balance),
        "balance_stats": {
            "days": stats.days,
            "mean": _money(stats.mean),
            "minimum": _money(stats.minimum),
            "volatility": _money(stats.volatility),
        },
        "income": {
            "monthly": _money(profile.income.monthly),
            "salaries": [_series_json(s) for s in profile.income.salaries],
            "other": [_series_json(s) for s in profile.income.other],
        },
        "next_salary": profile.next_salary.isoformat() if profile.next_salary else None,
        "spend_rate": _money(profile.spend_rate),
        "spending": {category: _money(amount) for category, amount in profile.spending},
        "recurring": [_series_json(s) for s in profile.active()],
        "upcoming_bills": [
            {
                "payee": b.payee,
                "due": b.due.isoformat(),
                "amount": _money(b.amount),
                "category": b.category,
            }
            for b in profile.upcoming_bills
        ],
    }


def _profile_of(session: Session, customer_id: int) -> tuple[Profile, int, int] | None:
    """The customer's profile, accounts and transactions counted; None without any."""
    accounts = list(
        session.scalars(
            select(BankAccount)
            .where(BankAccount.customer_id == customer_id)
            .order_by(BankAccount.id)
        )
    )
    if not accounts:
        return None
    rows = list(
        session.scalars(
            select(BankTransaction)
            .where(
                BankTransaction.account_id.in_([a.id for a in accounts]),
                BankTransaction.status == BOOKED,
                BankTransaction.booking_date.is_not(None),
            )
            .order_by(BankTransaction.booking_date, BankTransaction.id)
        )
    )
    if not rows:
        return None
    per_currency: dict[str, int] = {}
    for row in rows:
        per_currency[row.currency] = per_currency.get(row.currency, 0) + 1
    currency = min(per_currency, key=lambda c: (-per_currency[c], c))
    chosen = [a for a in accounts if a.currency == currency]
    ids = [a.id for a in chosen]
    opening = Decimal(0)
    as_of = max(r.booking_date for r in rows if r.currency == currency and r.booking_date)
    for account in chosen:
        first = session.scalars(
            select(BankStatement)
            .where(BankStatement.account_id == account.id)
            .order_by(
                BankStatement.opening_date.is_(None),
                BankStatement.opening_date,
                BankStatement.id,
            )
        ).first()
        if first is not None and first.opening_balance is not None:
            opening += first.opening_balance
        closing = session.scalar(
            select(func.max(BankStatement.closing_date)).where(
                BankStatement.account_id == account.id
            )
        )
        if closing is not None and closing > as_of:
            as_of = closing
    taken = [transaction_of(r) for r in rows if r.currency == currency and r.account_id in ids]
    state = ProfileState(currency, opening)
    state.add_all(taken)
    return state.snapshot(as_of), len(chosen), len(taken)


def recompute_customer(session: Session, customer_id: int, now: dt.datetime) -> bool:
    """Rebuild one customer's stored profile and life events (no segments); False when the
    customer has no booked transactions (any stored profile is then removed)."""
    found = _profile_of(session, customer_id)
    session.execute(delete(LifeEvent).where(LifeEvent.customer_id == customer_id))
    row = session.scalar(select(CustomerProfile).where(CustomerProfile.customer_id == customer_id))
    if found is None:
        if row is not None:
            session.delete(row)
        _carry_history(session, customer_id, [], now.date(), now)
        session.flush()
        return False
    profile, accounts, taken = found
    if row is None:
        row = CustomerProfile(customer_id=customer_id)
        session.add(row)
    row.as_of = profile.as_of
    row.currency = profile.currency
    row.accounts = accounts
    row.income_monthly = profile.income.monthly.quantize(CENT)
    row.balance_mean = Decimal(_money(profile.balance_stats.mean))
    row.balance_min = profile.balance_stats.minimum.quantize(CENT)
    row.snapshot = snapshot_json(profile, accounts, taken)
    row.model_version = MODEL_VERSION
    row.computed_at = now
    found_now = [p for p in detect_events(profile) if p.alert()]
    _carry_history(session, customer_id, found_now, profile.as_of, now)
    for prediction in found_now:
        session.add(
            LifeEvent(
                customer_id=customer_id,
                kind=prediction.kind,
                as_of=prediction.as_of,
                score=prediction.score,
                reasons=list(prediction.reasons),
                detail=prediction.detail,
                model_version=MODEL_VERSION,
            )
        )
    session.flush()
    return True


def _carry_history(
    session: Session,
    customer_id: int,
    found: list[Prediction],
    as_of: dt.date,
    now: dt.datetime,
) -> None:
    """Open, update and end the customer's life-event episodes (module docstring)."""
    open_rows = {
        (e.kind, e.detail): e
        for e in session.scalars(
            select(LifeEventEpisode).where(
                LifeEventEpisode.customer_id == customer_id, LifeEventEpisode.ended_at.is_(None)
            )
        )
    }
    for prediction in found:
        episode = open_rows.pop((prediction.kind, prediction.detail), None)
        if episode is None:
            session.add(
                LifeEventEpisode(
                    customer_id=customer_id,
                    kind=prediction.kind,
                    detail=prediction.detail,
                    first_as_of=prediction.as_of,
                    first_detected_at=now,
                    last_as_of=prediction.as_of,
                    last_seen_at=now,
                    score=prediction.score,
                    peak_score=prediction.score,
                    reasons=list(prediction.reasons),
                    model_version=MODEL_VERSION,
                )
            )
            continue
        episode.last_as_of, episode.last_seen_at = prediction.as_of, now
        episode.score, episode.reasons = prediction.score, list(prediction.reasons)
        episode.peak_score = max(episode.peak_score, prediction.score)
        episode.model_version = MODEL_VERSION
    for episode in open_rows.values():  # not found any more
        episode.ended_as_of, episode.ended_at = as_of, now


def resegment(session: Session) -> int:
    """Segments and income bands of every stored profile, from all of them
    (``segments.segment_all``); how many changed."""
    rows = list(session.scalars(select(CustomerProfile)))
    figures = {
        r.customer_id: Figures(
            r.currency, r.income_monthly, r.balance_mean, r.balance_min, r.accounts
        )
        for r in rows
    }
    assigned = segment_all(figures)
    changed = 0
    for r in rows:
        a = assigned[r.customer_id]
        if (r.segment, r.income_band) != (a.segment, a.income_band):
            r.segment, r.income_band = a.segment, a.income_band
            changed += 1
    session.flush()
    return changed


def recompute(session: Session, customers: Iterable[int], now: dt.datetime) -> int:
    """Rebuild the profiles of ``customers``, then everyone's segments; profiles stored."""
    stored = sum(recompute_customer(session, c, now) for c in sorted(set(customers)))
    resegment(session)
    return stored


def recompute_all(session: Session, now: dt.datetime) -> int:
    """Rebuild every customer's profile (customers with accounts, and those with a stored
    profile but no accounts any more); profiles stored."""
    owners = set(
        session.scalars(select(BankAccount.customer_id).where(BankAccount.customer_id.is_not(None)))
    )
    owners |= set(session.scalars(select(CustomerProfile.customer_id)))
    return recompute(session, [c for c in owners if c is not None], now)


def customers_of(session: Session, account_ids: Iterable[int]) -> set[int]:
    """The owners of ``account_ids`` (accounts without an owner have no profile)."""
    ids = list(account_ids)
    if not ids:
        return set()
    found = session.scalars(
        select(BankAccount.customer_id).where(
            BankAccount.id.in_(ids), BankAccount.customer_id.is_not(None)
        )
    )
    return {c for c in found if c is not None}


def after_import(session: Session, account_ids: Iterable[int], now: dt.datetime) -> None:
    """After a committed import: recompute the owners of ``account_ids`` and commit. Never
    raises: the import stands whatever happens here; a failure is logged and rolled back."""
    try:
        customers = customers_of(session, account_ids)
        if customers:
            recompute(session, customers, now)
            session.commit()
    except Exception:
        session.rollback()
        log.exception(
            "analytics: profiles not recomputed after an import; run `bankiot analytics recompute`"
        )


def audience_attributes(session: Session, customer_id: int) -> dict[str, str | None]:
    """The offers' audience attributes analytics provides: ``segment`` and ``income_band``
    (null while the customer has no stored profile)."""
    row = session.execute(
        select(CustomerProfile.segment, CustomerProfile.income_band).where(
            CustomerProfile.customer_id == customer_id
        )
    ).first()
    return {"segment": row[0] if row else None, "income_band": row[1] if row else None}


def life_events(session: Session, customer_id: int) -> list[LifeEvent]:
    """The customer's stored life events, highest score first."""
    return list(
        session.scalars(
            select(LifeEvent)
            .where(LifeEvent.customer_id == customer_id)
            .order_by(LifeEvent.score.desc(), LifeEvent.kind)
        )
    )


def life_event_history(session: Session, customer_id: int) -> list[LifeEventEpisode]:
    """The customer's life-event episodes, newest first."""
    return list(
        session.scalars(
            select(LifeEventEpisode)
            .where(LifeEventEpisode.customer_id == customer_id)
            .order_by(LifeEventEpisode.first_detected_at.desc(), LifeEventEpisode.id.desc())
        )
    )


def episode_json(e: LifeEventEpisode, reasons: bool = True) -> dict[str, Any]:
    """An episode as JSON (``reasons`` False leaves them out, for who may not see them)."""
    out: dict[str, Any] = {
        "kind": e.kind,
        "detail": e.detail,
        "first_as_of": e.first_as_of.isoformat(),
        "first_detected_at": e.first_detected_at.isoformat(),
        "last_as_of": e.last_as_of.isoformat(),
        "last_seen_at": e.last_seen_at.isoformat(),
        "score": e.score,
        "peak_score": e.peak_score,
        "ended_as_of": e.ended_as_of.isoformat() if e.ended_as_of else None,
        "ended_at": e.ended_at.isoformat() if e.ended_at else None,
        "model_version": e.model_version,
    }
    if reasons:
        out["reasons"] = e.reasons
    return out


def utc_month(session: Session, column: Any) -> Any:
    """``YYYY-MM`` of the timestamp ``column`` in UTC, as SQL for the session's database.

    SQLite stores UTC wall-clock text, so ``strftime`` reads it as it is; PostgreSQL's
    ``timestamptz`` is shown in the connection's time zone unless converted first, which
    would move events near a month's edge into the neighbouring month."""
    # Literals, not bound parameters: PostgreSQL binds each occurrence separately and would
    # not see the GROUP BY expression as the selected one.
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime(literal_column("'%Y-%m'"), column)
    return func.to_char(func.timezone(literal_column("'UTC'"), column), literal_column("'YYYY-MM'"))


def events_over_time(session: Session, since: dt.date) -> list[dict[str, Any]]:
    """Life events found per month (of first detection, UTC) and kind from ``since`` on,
    bank-wide: ``[{month: "2026-11", kind, found, customers, ongoing}]`` (``ongoing``: not
    ended yet), oldest month first, then by kind, for the analytics dashboard. Names nobody.

    Counted by the database (one row per month and kind comes back, however many episodes
    there are): the dashboard asks for this every few seconds."""
    start = dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    episode = LifeEventEpisode
    month = utc_month(session, episode.first_detected_at).label("month")
    rows = session.execute(
        select(
            month,
            episode.kind,
            func.count(),
            func.count(distinct(episode.customer_id)),
            func.count(episode.ended_at),  # counts the ended ones (not null)
        )
        .where(episode.first_detected_at >= start)
        .group_by(month, episode.kind)
    )
    # Sorted here, not by ORDER BY: a database collation may order kinds differently.
    return [
        {"month": m, "kind": kind, "found": n, "customers": people, "ongoing": n - ended}
        for m, kind, n, people, ended in sorted(
            (str(m), str(k), int(n), int(c), int(e)) for m, k, n, c, e in rows
        )
    ]


def profile_row(session: Session, customer_id: int) -> CustomerProfile | None:
    """The customer's stored profile row, or None."""
    return session.scalar(select(CustomerProfile).where(CustomerProfile.customer_id == customer_id))


def export(session: Session, customer_id: int) -> dict[str, Any]:
    """What the customer's data export holds of analytics: ``profile`` (or null),
    ``life_events`` and ``life_event_history`` (``episode_json``, newest first)."""
    row = profile_row(session, customer_id)
    return {
        "profile": None
        if row is None
        else {
            "as_of": row.as_of.isoformat(),
            "segment": row.segment,
            "income_band": row.income_band,
            "model_version": row.model_version,
            "computed_at": row.computed_at.isoformat(),
            "summary": row.snapshot,
        },
        "life_events": [
            {
                "kind": e.kind,
                "as_of": e.as_of.isoformat(),
                "score": e.score,
                "reasons": e.reasons,
                "detail": e.detail,
                "model_version": e.model_version,
            }
            for e in life_events(session, customer_id)
        ],
        "life_event_history": [episode_json(e) for e in life_event_history(session, customer_id)],
    }


def erase(session: Session, customer_id: int) -> dict[str, int]:
    """Delete the customer's stored profile, life events and their history; rows deleted
    per table."""
    counts = {}
    for name, model in (
        ("life_events", LifeEvent),
        ("life_event_history", LifeEventEpisode),
        ("customer_profiles", CustomerProfile),
    ):
        result = session.execute(
            delete(model)
            .where(model.customer_id == customer_id)
            .execution_options(synchronize_session=False)
        )
        counts[name] = int(getattr(result, "rowcount", 0) or 0)
    return counts
