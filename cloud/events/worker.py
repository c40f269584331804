"""The live event worker and the dry run: device events from the database through the
engine (``engine.replay``), decisions into ``rule_decisions``, actions carried out.

**Reading.** Ingest commits events and goes on; the worker reads them afterwards, by id,
from a cursor (``rule_cursors``), so it never holds ingest up. On PostgreSQL ids are
taken before commit, so a transaction committing late can make an id appear below the
cursor: ids skipped over are kept as gaps and looked for again on every pass for
``GAP_LIFETIME`` (a rolled-back transaction leaves a gap that never fills).

**One pass** (``EventWorker.run_once``), in one transaction: lock the cursor row (two
workers take turns), read up to ``PAGE`` events, run them and the timers due by ``now``
through the engine, store every decision and the staff requests of those that acted, move
the cursor, commit; then notifications and offers (``actions``). If the pass fails, nothing
of it is stored and the engine is rebuilt, so the next pass decides the same events again
from the same state.

**Counters.** ``EventWorker.stats`` (``stats.WorkerStats``) counts what each committed
pass decided, and the events rules with a consent purpose left alone because their subject
is no customer's wearable (``engine``: nothing of those is stored).

**State across restarts.** The engine's windows live in memory. The first pass rebuilds
them by replaying, without storing anything, the events below the cursor from the longest
window of the rules back (``warm_up``).

**Dry run** (``dry_run``): the same replay over recorded events from ``since`` on, with
any rules, storing and doing nothing; what the live worker decided on those events is what
the dry run prints, when the rules and the consents are the same (consent is read as it is
now, not as it was).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from cloud.db import Database
from cloud.events.actions import Executor, Later
from cloud.events.directory import ConsentDirectory
from cloud.events.engine import Decision, Engine, Event, replay
from cloud.events.library import RuleLibrary
from cloud.events.models import RuleCursor, RuleDecision
from cloud.events.rules import RuleSet
from cloud.events.stats import WorkerStats
from cloud.fleet.models import Device
from cloud.ingest.models import DeviceEvent, utc

log = logging.getLogger(__name__)

CURSOR = "live"
PAGE = 500
GAP_LIFETIME = dt.timedelta(minutes=5)
MAX_GAPS = 10_000
POLL_SECONDS = 1.0


def utcnow() -> dt.datetime:
    """The current time, aware, UTC."""
    return dt.datetime.now(dt.UTC)


def _query() -> Any:
    return select(
        DeviceEvent.id,
        DeviceEvent.kind,
        DeviceEvent.device,
        DeviceEvent.gateway,
        DeviceEvent.occurred_at,
        DeviceEvent.data,
        DeviceEvent.receipt_id,
        Device.branch_id,
    ).outerjoin(Device, Device.uid == DeviceEvent.gateway)


def _event(row: Any) -> Event:
    return Event(
        id=row.id,
        kind=row.kind,
        device=row.device,
        gateway=row.gateway,
        occurred_at=utc(row.occurred_at),
        data=row.data if isinstance(row.data, dict) else {},
        branch_id=row.branch_id,
        receipt_id=row.receipt_id,
    )


def events_after(session: Session, after: int, limit: int = PAGE) -> list[Event]:
    """Up to ``limit`` events with ids above ``after``, in id order."""
    rows = session.execute(
        _query().where(DeviceEvent.id > after).order_by(DeviceEvent.id).limit(limit)
    )
    return [_event(row) for row in rows]


def events_by_id(session: Session, ids: Sequence[int]) -> list[Event]:
    """The events among ``ids`` that exist, in id order."""
    out: list[Event] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        out.extend(
            _event(row) for row in session.execute(_query().where(DeviceEvent.id.in_(chunk)))
        )
    return sorted(out, key=lambda event: event.id)


def recorded_events(
    session: Session,
    since: dt.datetime | None = None,
    through: int | None = None,
) -> Iterator[Event]:
    """Recorded events in id order, those that happened from ``since`` on, with ids up to
    ``through``; read a page at a time."""
    after = 0
    while True:
        query = _query().where(DeviceEvent.id > after)
        if since is not None:
            query = query.where(DeviceEvent.occurred_at >= since)
        if through is not None:
            query = query.where(DeviceEvent.id <= through)
        page = [_event(row) for row in session.execute(query.order_by(DeviceEvent.id).limit(PAGE))]
        if not page:
            return
        yield from page
        after = page[-1].id


def decision_row(decision: Decision, decided_at: dt.datetime) -> dict[str, Any]:
    """The ``rule_decisions`` columns of ``decision``."""
    return {
        "at": decision.at,
        "decided_at": decided_at,
        "rule_id": decision.rule,
        "rule_version": decision.version,
        "event_id": decision.event_id,
        "subject": decision.subject,
        "gateway": decision.gateway,
        "branch_id": decision.branch_id,
        "acted": decision.acted,
        "reason": decision.reason,
        "reasons": list(decision.reasons),
        "inputs": dict(decision.inputs),
        "actions": [_action_json(action) for action in decision.actions],
    }


def _action_json(action: Any) -> dict[str, Any]:
    out = {"do": action.kind, "message": action.message}
    if action.kind == "alert":
        out["severity"] = action.severity
    if action.kind == "notify":
        out["channel"] = action.channel
    if action.kind == "offer":
        out["offer"] = action.offer
    return out


def decision_json(decision: Decision) -> dict[str, Any]:
    """``decision`` as JSON (the dry run's output, the API's)."""
    row = decision_row(decision, decision.at)
    row.pop("decided_at")
    row["at"] = decision.at.isoformat()
    return row


def dry_run(
    session: Session,
    rules: RuleSet,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    through: int | None = None,
) -> list[Decision]:
    """What ``rules`` decide on the recorded events (module docstring); timers run to
    ``until`` (None: to the last event). Stores nothing, does nothing."""
    engine = Engine(rules)
    directory = ConsentDirectory(session)
    return replay(engine, recorded_events(session, since, through), directory, until)


@dataclass(frozen=True)
class PassSummary:
    """What one pass did: events read, decisions stored, of which acted; decisions per
    reason, and events skipped as no customer's per rule (``engine.not_customer``)."""

    events: int
    decisions: int
    acted: int
    last_id: int
    reasons: Mapping[str, int] = field(default_factory=dict)
    not_customer: Mapping[str, int] = field(default_factory=dict)


class EventWorker:
    """The live worker (module docstring)."""

    def __init__(
        self,
        database: Database,
        library: RuleLibrary,
        executor: Executor | None = None,
        name: str = CURSOR,
        stats: WorkerStats | None = None,
    ) -> None:
        self.database = database
        self.library = library
        self.executor = executor or Executor()
        self.name = name
        self.stats = stats if stats is not None else WorkerStats()
        if stats is None:
            self.stats.failures = lambda: self.executor.failures
        self.engine = Engine(library.current())
        self._warm = False

    def _cursor(self, session: Session, now: dt.datetime) -> RuleCursor:
        cursor = session.get(RuleCursor, self.name, with_for_update=True)
        if cursor is None:
            # Start from the newest event: rules act on what happens from now on.
            newest = session.scalar(select(DeviceEvent.id).order_by(DeviceEvent.id.desc()).limit(1))
            session.add(RuleCursor(name=self.name, last_id=newest or 0, gaps={}, updated_at=now))
            session.flush()
            cursor = session.get(RuleCursor, self.name, with_for_update=True)
            assert cursor is not None
        return cursor

    def warm_up(self, session: Session, through: int, now: dt.datetime) -> None:
        """Rebuild the engine's windows from the events up to ``through`` that lie within
        the rules' longest horizon before ``now``; decisions are discarded."""
        rules = self.engine.rules
        horizon = max((rule.horizon_minutes for rule in rules.rules), default=0)
        self.engine = Engine(rules)
        if horizon:
            since = now - dt.timedelta(minutes=horizon)
            directory = ConsentDirectory(session)
            replay(self.engine, recorded_events(session, since, through), directory, None)
        self._warm = True

    def run_once(self, now: dt.datetime | None = None) -> PassSummary:
        """One pass (module docstring)."""
        now = now or utcnow()
        rules = self.library.current()
        if rules is not self.engine.rules:
            self.engine.set_rules(rules)
        later: list[Later] = []
        try:
            with self.database.sessions() as session:
                summary, later = self._pass(session, now)
                session.commit()
        except BaseException:
            self._warm = False  # the engine saw events that were not stored: rebuild it
            raise
        self.stats.count(summary.reasons, summary.not_customer)
        self.executor.run_later(later)
        return summary

    def _pass(self, session: Session, now: dt.datetime) -> tuple[PassSummary, list[Later]]:
        cursor = self._cursor(session, now)
        if not self._warm:
            self.warm_up(session, cursor.last_id, now)
        gaps = {int(k): dt.datetime.fromisoformat(v) for k, v in (cursor.gaps or {}).items()}
        late = events_by_id(session, sorted(gaps)) if gaps else []
        fresh = events_after(session, cursor.last_id)
        expected = cursor.last_id + 1
        for event in fresh:
            for missing in range(expected, event.id):
                gaps[missing] = now
            expected = event.id + 1
        for event in late:
            gaps.pop(event.id, None)
        gaps = {k: v for k, v in gaps.items() if now - v <= GAP_LIFETIME}
        if len(gaps) > MAX_GAPS:
            gaps = dict(sorted(gaps.items())[-MAX_GAPS:])
        events = late + fresh
        directory = ConsentDirectory(session, [event.subject for event in events])
        skipped_before = Counter(self.engine.not_customer)
        decisions = replay(self.engine, events, directory, now)
        skipped = self.engine.not_customer - skipped_before
        later: list[Later] = []
        if decisions:
            ids = session.execute(
                insert(RuleDecision).returning(RuleDecision.id, sort_by_parameter_order=True),
                [decision_row(decision, now) for decision in decisions],
            ).scalars()
            for decision, decision_id in zip(decisions, list(ids), strict=True):
                if decision.acted:
                    later.extend(self.executor.stage(session, decision, decision_id, now))
        if fresh:
            cursor.last_id = fresh[-1].id
        cursor.gaps = {str(k): v.isoformat() for k, v in sorted(gaps.items())}
        cursor.updated_at = now
        acted = sum(1 for decision in decisions if decision.acted)
        reasons = Counter(decision.reason for decision in decisions)
        summary = PassSummary(
            len(events), len(decisions), acted, cursor.last_id, dict(reasons), dict(skipped)
        )
        return summary, later

    async def run(self, stop: asyncio.Event, interval: float = POLL_SECONDS) -> None:
        """Pass after pass until ``stop`` is set; a full page goes on at once, a failing
        pass is logged and tried again after ``interval``."""
        while not stop.is_set():
            full = False
            try:
                summary = await asyncio.to_thread(self.run_once)
                full = summary.events >= PAGE
            except Exception:
                log.exception("event processing pass failed; trying again")
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
