"""The rule engine: a state machine over device events. No I/O, no clock.

``Engine.on_event(event, directory)`` and ``Engine.advance(now, directory)`` return
``Decision``s; the same rules fed the same events (and the same ``advance`` times) give the
same decisions, which is what makes a dry run (``replay``) say what the live worker does.
Time is the events' ``occurred_at`` and the ``now`` given to ``advance``; the engine's
clock never goes back. Timers run out by that clock; windows are kept and forgotten by the
events' time alone, so events that arrive late (a batch queued in a gateway) still meet
the windows they belong to.

State is kept per (rule, subject): the subject of an event is the customer's wearable a
kiosk action names, else the device (a wearable, a sensor, a gateway). Per rule:

- no window: every triggering event is a candidate;
- ``within``: a ``first`` event, then a triggering one at most ``minutes`` later (the
  ``first`` is used up); a trigger without one is decided ``outside_window``;
- ``count``: the ``at_least``-th triggering event within ``minutes`` (the count starts again);
- ``absence``: a triggering event starts a timer; an ``of`` event before it runs out
  cancels it (decided ``cancelled``); else the timer's end is a candidate (``advance``).

A candidate is checked for the cooldown (``rate_limited``), then the profile (``profile``);
what passes is decided ``acted`` with the rule's actions.

A rule's ``where`` and ``at`` filter its triggering events first (``at``: the place of the
event, ``Directory.at_partner``, asked only for rules that have it).

Consent comes next, on every event a rule looks at (``Directory.purposes``: the purposes
the subject's customer consents to now, None when no customer paired the subject): a
customer's wearable is processed only by a rule whose purposes they all consent to. Else the
decision is ``no_consent``, the rule's state of that subject is dropped, and nothing of the
customer is read; device-only rules (purpose ``none``) never process a customer's wearable.
A rule with purposes processes, among devices heard over the radio, customers' wearables
only: an event whose subject is a device address no customer paired (a stranger's phone, a
beacon, a sensor) leads to no decision, no state and no record (the bank keeps nothing about
people it has no relationship with); it is only counted, per rule, in
``Engine.not_customer``. A kiosk's or gateway's own event (a walk-in's check-in: its
subject is the kiosk, it names no person's device) is processed as before.
``Directory.profile`` (the customer's attributes) is read only after that, and only for a
rule with purposes. Every decision carries its inputs and reasons (``rule_decisions``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloud.events.rules import PARTNER, Action, Rule, RuleSet

ACTED = "acted"
NO_CONSENT = "no_consent"
OUTSIDE_WINDOW = "outside_window"
RATE_LIMITED = "rate_limited"
PROFILE = "profile"
CANCELLED = "cancelled"
REASONS = (ACTED, NO_CONSENT, OUTSIDE_WINDOW, RATE_LIMITED, PROFILE, CANCELLED)
KIOSK_PREFIX = "kiosk_"


@dataclass(frozen=True)
class Event:
    """One device event (``device_events``), with the branch of the gateway that sent it."""

    id: int
    kind: str
    device: str
    gateway: str
    occurred_at: dt.datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    branch_id: int | None = None
    receipt_id: int | None = None  # the batch it came in (where it was: ``at_partner``)

    @property
    def subject(self) -> str:
        """Whom the event is about: the wearable a kiosk action names, else the device."""
        if self.kind.startswith(KIOSK_PREFIX):
            wearable = self.data.get("wearable")
            if isinstance(wearable, str) and wearable:
                return wearable.upper()
        return self.device

    def describe(self) -> dict[str, Any]:
        """The event as JSON-safe inputs of a decision."""
        return {
            "id": self.id,
            "kind": self.kind,
            "device": self.device,
            "gateway": self.gateway,
            "branch_id": self.branch_id,
            "occurred_at": self.occurred_at.isoformat(),
            "data": dict(self.data),
        }


class Directory(Protocol):
    """What the engine may know of a subject (the shell answers from the database)."""

    def purposes(self, subject: str) -> frozenset[str] | None:
        """The purposes the subject's customer consents to now; None: no customer's."""
        ...

    def profile(self, subject: str) -> Mapping[str, Any]:
        """The customer's attributes (asked only after their consent was checked)."""
        ...

    def at_partner(self, event: Event) -> bool:
        """Whether ``event`` was heard at a partner merchant (its batch reports one of their
        beacons); asked only for rules with an ``at`` condition."""
        ...


@dataclass(frozen=True)
class Decision:
    """What a rule decided about an event (or a timer): ``acted`` with ``actions``, or
    not, with ``reason`` (``REASONS``), human-readable ``reasons`` and its ``inputs``."""

    rule: str
    version: int
    subject: str
    at: dt.datetime
    acted: bool
    reason: str
    reasons: tuple[str, ...]
    inputs: Mapping[str, Any]
    actions: tuple[Action, ...] = ()
    event_id: int | None = None
    gateway: str = ""
    branch_id: int | None = None
    customer_id: int | None = None

    def summary(self) -> tuple[Any, ...]:
        """The decision without its inputs: what dry run and live runs must agree on."""
        return (self.rule, self.version, self.event_id, self.subject, self.at, self.reason)


def radio_address(subject: str) -> bool:
    """Whether ``subject`` is a device's radio address (``AA:BB:CC:DD:EE:FF``), as opposed
    to a gateway's or kiosk's id."""
    return len(subject) == 17 and subject.count(":") == 5


def _matches(where: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    return all(key in data and data[key] == value for key, value in where.items())


def _minutes(count: int) -> dt.timedelta:
    return dt.timedelta(minutes=count)


@dataclass
class _Timer:
    deadline: dt.datetime
    event: Event


Key = tuple[str, str]  # (rule id, subject)


class Engine:
    """The rule engine (module docstring). Not thread-safe: one caller at a time."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.clock: dt.datetime | None = None  # events' times and ``advance``'s
        self.event_clock: dt.datetime | None = None  # events' times only
        self._first: dict[Key, tuple[dt.datetime, int]] = {}
        self._counts: dict[Key, list[tuple[dt.datetime, int]]] = {}
        self._timers: dict[Key, _Timer] = {}
        self._acted: dict[Key, dt.datetime] = {}
        # Events not processed because their subject is no customer's, per rule.
        self.not_customer: Counter[str] = Counter()

    def set_rules(self, rules: RuleSet) -> None:
        """Run ``rules`` from now on; a rule kept with the same version keeps its state."""
        kept = {
            rule.id
            for rule in rules.rules
            if (old := self.rules.get(rule.id)) is not None and old == rule
        }
        for table in (self._first, self._counts, self._timers, self._acted):
            for key in [key for key in table if key[0] not in kept]:
                del table[key]
        self.rules = rules

    def pending(self) -> int:
        """How many windows and timers are open (for metrics and tests)."""
        return len(self._first) + len(self._counts) + len(self._timers)

    def _tick(self, moment: dt.datetime) -> None:
        if self.clock is None or moment > self.clock:
            self.clock = moment

    def _forget(self, key: Key) -> None:
        for table in (self._first, self._counts, self._timers, self._acted):
            table.pop(key, None)

    def on_event(self, event: Event, directory: Directory) -> list[Decision]:
        """The decisions ``event`` leads to, rule by rule in id order."""
        self._tick(event.occurred_at)
        if self.event_clock is None or event.occurred_at > self.event_clock:
            self.event_clock = event.occurred_at
        out: list[Decision] = []
        for rule in self.rules.rules:
            if event.kind not in rule.kinds:
                continue
            triggering = event.kind in rule.on
            if triggering and not _matches(rule.where, event.data):
                continue
            if triggering and rule.at and (directory.at_partner(event) != (rule.at == PARTNER)):
                continue
            subject = event.subject
            if self._stranger(rule, subject, directory):
                continue
            refusal = self._consent(rule, subject, event, directory)
            if refusal is not None:
                self._forget((rule.id, subject))
                out.append(refusal)
                continue
            decision = self._step(rule, subject, event, triggering, directory)
            if decision is not None:
                out.append(decision)
        return out

    def _stranger(self, rule: Rule, subject: str, directory: Directory) -> bool:
        """Whether a rule with purposes meets a subject that is no customer's wearable
        (then counted, and its state, if any, forgotten)."""
        if not rule.purposes or not radio_address(subject):
            return False
        if directory.purposes(subject) is not None:
            return False
        self.not_customer[rule.id] += 1
        self._forget((rule.id, subject))
        return True

    def _consent(
        self, rule: Rule, subject: str, event: Event, directory: Directory
    ) -> Decision | None:
        """A ``no_consent`` decision if the subject is a customer's wearable and the rule
        may not process it; None otherwise."""
        granted = directory.purposes(subject)
        if granted is None:
            return None  # no customer's: a device, a walk-in
        if not rule.purposes:
            reasons = ("the rule is for devices only and the subject is a customer's wearable",)
        else:
            missing = [p for p in rule.purposes if p not in granted]
            if not missing:
                return None
            reasons = tuple("no consent to %s" % purpose for purpose in missing)
        return self._decision(
            rule,
            subject,
            event,
            event.occurred_at,
            NO_CONSENT,
            reasons,
            {"granted": sorted(granted)},
        )

    def _step(
        self, rule: Rule, subject: str, event: Event, triggering: bool, directory: Directory
    ) -> Decision | None:
        key, at, window = (rule.id, subject), event.occurred_at, rule.window
        if window is None:
            return self._candidate(rule, subject, event, at, directory, {})
        span = _minutes(window.minutes)
        if window.type == "within":
            if not triggering:
                self._first[key] = (at, event.id)
                return None
            first = self._first.get(key)
            if first is None or not dt.timedelta(0) <= at - first[0] <= span:
                seen = {} if first is None else {"first_at": first[0].isoformat()}
                reason = "no %s of this subject in the %d minutes before" % (
                    " or ".join(sorted(window.kinds)),
                    window.minutes,
                )
                return self._decision(rule, subject, event, at, OUTSIDE_WINDOW, (reason,), seen)
            del self._first[key]
            facts = {"first_event": first[1], "first_at": first[0].isoformat()}
            return self._candidate(rule, subject, event, at, directory, facts)
        if window.type == "count":
            times = [item for item in self._counts.get(key, []) if at - item[0] <= span]
            times.append((at, event.id))
            if len(times) < window.at_least:
                self._counts[key] = times
                return None
            self._counts.pop(key, None)
            facts = {"count": len(times), "events": [item[1] for item in times]}
            return self._candidate(rule, subject, event, at, directory, facts)
        # absence
        if triggering:
            if key not in self._timers:
                self._timers[key] = _Timer(at + span, event)
            return None
        timer = self._timers.get(key)
        if timer is None or at > timer.deadline:
            return None
        del self._timers[key]
        reason = "%s arrived %d s after the start, within %d minutes" % (
            event.kind,
            int((at - timer.event.occurred_at).total_seconds()),
            window.minutes,
        )
        return self._decision(
            rule,
            subject,
            timer.event,
            at,
            CANCELLED,
            (reason,),
            {"cancelled_by": event.id, "started_at": timer.event.occurred_at.isoformat()},
        )

    def advance(self, now: dt.datetime, directory: Directory) -> list[Decision]:
        """Move the clock to ``now`` (never back): the absence timers that ran out by then,
        in order of their end, and forget windows too old to matter."""
        self._tick(now)
        assert self.clock is not None
        clock = self.clock
        due = sorted(
            (
                (timer.deadline, key)
                for key, timer in self._timers.items()
                if timer.deadline <= clock
            )
        )
        out: list[Decision] = []
        for deadline, key in due:
            timer = self._timers.pop(key)
            rule = self.rules.get(key[0])
            if rule is None or rule.window is None:
                continue
            event = timer.event
            if self._stranger(rule, key[1], directory):  # unpaired while the timer ran
                continue
            refusal = self._consent(rule, key[1], event, directory)
            if refusal is not None:
                self._forget(key)
                out.append(_at(refusal, deadline))
                continue
            facts = {
                "started_at": event.occurred_at.isoformat(),
                "absent": sorted(rule.window.kinds),
                "minutes": rule.window.minutes,
            }
            out.append(self._candidate(rule, key[1], event, deadline, directory, facts))
        if self.event_clock is not None:
            # By the events' own time: a batch that waited in a gateway's queue still
            # finds the windows its events belong to.
            self._prune(self.event_clock)
        return out

    def _prune(self, clock: dt.datetime) -> None:
        horizon = {rule.id: _minutes(rule.horizon_minutes) for rule in self.rules.rules}
        for table in (self._first, self._acted):
            for key in [k for k, v in table.items() if _stale(v, clock, horizon.get(k[0]))]:
                del table[key]
        for key in [k for k, v in self._counts.items() if _stale(v[-1], clock, horizon.get(k[0]))]:
            del self._counts[key]

    def _candidate(
        self,
        rule: Rule,
        subject: str,
        event: Event,
        at: dt.datetime,
        directory: Directory,
        facts: dict[str, Any],
    ) -> Decision:
        """A pattern matched: the cooldown, then the profile, then act."""
        key = (rule.id, subject)
        last = self._acted.get(key)
        if (
            last is not None
            and rule.cooldown_minutes
            and at - last < _minutes(rule.cooldown_minutes)
        ):
            facts = {**facts, "last_acted_at": last.isoformat()}
            reason = "acted for this subject %d s before (cooldown %d minutes)" % (
                int((at - last).total_seconds()),
                rule.cooldown_minutes,
            )
            return self._decision(rule, subject, event, at, RATE_LIMITED, (reason,), facts)
        customer_id = None
        if rule.purposes and directory.purposes(subject) is not None:
            profile = directory.profile(subject)  # consent checked by the caller
            customer_id = profile.get("customer_id")
            used = {name: profile.get(name) for name in sorted(rule.profile)}
            facts = {**facts, "profile": used}
            failed = [
                "%s is %r, the rule wants %s" % (name, used[name], _wanted(bound))
                for name, bound in sorted(rule.profile.items())
                if not bound.holds(used[name])
            ]
            if failed:
                return self._decision(rule, subject, event, at, PROFILE, tuple(failed[:4]), facts)
        elif rule.profile:
            reason = "the subject is no customer's wearable, so it has no profile"
            return self._decision(rule, subject, event, at, PROFILE, (reason,), facts)
        self._acted[key] = at
        reasons = [_why(rule, event)]
        return self._decision(
            rule, subject, event, at, ACTED, tuple(reasons), facts, customer_id=customer_id
        )

    def _decision(
        self,
        rule: Rule,
        subject: str,
        event: Event,
        at: dt.datetime,
        reason: str,
        reasons: Sequence[str],
        facts: Mapping[str, Any],
        customer_id: Any = None,
    ) -> Decision:
        acted = reason == ACTED
        return Decision(
            rule=rule.id,
            version=rule.version,
            subject=subject,
            at=at,
            acted=acted,
            reason=reason,
            reasons=tuple(reasons),
            inputs={
                "event": event.describe(),
                "purposes": list(rule.purposes),
                **facts,
            },
            actions=rule.actions if acted else (),
            event_id=event.id,
            gateway=event.gateway,
            branch_id=event.branch_id,
            customer_id=customer_id if isinstance(customer_id, int) else None,
        )


def _at(decision: Decision, at: dt.datetime) -> Decision:
    return Decision(**{**decision.__dict__, "at": at})


def _stale(value: tuple[dt.datetime, int] | dt.datetime, clock: dt.datetime, span: Any) -> bool:
    moment = value[0] if isinstance(value, tuple) else value
    return span is None or clock - moment > span


def _wanted(bound: Any) -> str:
    if bound.equals is not None:
        return "%r" % (bound.equals,)
    parts = []
    if bound.minimum is not None:
        parts.append(">= %g" % bound.minimum)
    if bound.maximum is not None:
        parts.append("<= %g" % bound.maximum)
    return " and ".join(parts)


def _why(rule: Rule, event: Event) -> str:
    window = rule.window
    if window is None:
        return "%s from %s" % (event.kind, event.device)
    if window.type == "within":
        return "%s within %d minutes of %s" % (
            event.kind,
            window.minutes,
            " or ".join(sorted(window.kinds)),
        )
    if window.type == "count":
        return "%d %s events within %d minutes" % (window.at_least, event.kind, window.minutes)
    return "no %s within %d minutes of %s" % (
        " or ".join(sorted(window.kinds)),
        window.minutes,
        event.kind,
    )


def replay(
    engine: Engine, events: Iterable[Event], directory: Directory, until: dt.datetime | None
) -> list[Decision]:
    """Feed ``events`` in order (timers that ran out before each event fire first), then
    ``advance`` to ``until`` (None: no further). The live worker and the dry run both
    run events through this, so they decide alike."""
    out: list[Decision] = []
    for event in events:
        out.extend(engine.advance(event.occurred_at, directory))
        out.extend(engine.on_event(event, directory))
    if until is not None:
        out.extend(engine.advance(until, directory))
    return out
