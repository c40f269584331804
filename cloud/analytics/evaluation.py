"""Precision and recall of the event detectors against a simulated population's ground truth.

How a bank would run the detectors: once a month, at each month end from the seventh month
on, a snapshot of each customer's profile goes through ``events.detect_events``.

- Life events: a score at or above the threshold raises an alert, unless the same kind was
  alerted for that customer in the last ``QUIET_DAYS`` days (nobody is told twice about one
  move). An alert is true when an event of its kind was planted within ``MATCH_DAYS`` days
  before it or ``EARLY_DAYS`` days after it (the simulation's parents shop for the baby
  from three months before the birth, movers book removals before the move); a planted
  event is found when a true alert matches it.
- Distress: every month end at which the balance is not below zero and a salary follows
  in the data is one case; the truth is whether the balance actually fell below zero before
  that salary arrived (``simulation.overdrawn_before_payday``), the prediction whether the
  score reached the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from cloud.analytics.events import KINDS, LIFE_EVENTS, THRESHOLDS, Prediction, detect_events
from cloud.analytics.profile import ProfileState
from cloud.analytics.simulation import (
    EVENT_FIRST_DAY,
    START,
    PlantedEvent,
    SimulatedCustomer,
    overdrawn_before_payday,
)

MATCH_DAYS = 150
EARLY_DAYS = 90
# Longer than any evidence lasts (a series stays "ended" for ENDED_DAYS = 150 days, spending
# is compared over three months), so the fading evidence of one event does not alert twice.
QUIET_DAYS = 180


@dataclass
class Tally:
    """Counts for one event kind."""

    alerts: int = 0
    true_alerts: int = 0
    events: int = 0
    found: int = 0

    @property
    def precision(self) -> float:
        """True alerts over alerts (1.0 with no alert: nothing claimed, nothing wrong)."""
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        """Events found over events planted (or cases caught over cases)."""
        return self.found / self.events if self.events else 1.0


@dataclass
class CustomerRun:
    """What the monthly runs produced for one customer: its planted events, the scored
    predictions per month end and the distress truth at the month ends that count."""

    ident: str
    events: tuple[PlantedEvent, ...]
    predictions: list[tuple[date, tuple[Prediction, ...]]] = field(default_factory=list)
    distress_truth: dict[date, bool] = field(default_factory=dict)


def month_ends(first: date, last: date) -> list[date]:
    """Every month's last day from ``first``'s month to ``last`` (inclusive)."""
    out = []
    year, month = first.year, first.month
    while True:
        following = date(year + month // 12, month % 12 + 1, 1)
        end = following - timedelta(days=1)
        if end > last:
            return out
        if end >= first:
            out.append(end)
        year, month = following.year, following.month


def run_customer(customer: SimulatedCustomer) -> CustomerRun:
    """Feed one customer's transactions through a profile state, detecting at month ends."""
    state = ProfileState(customer.currency, customer.opening_balance)
    transactions = customer.transactions
    checkpoints = month_ends(START + timedelta(days=EVENT_FIRST_DAY), transactions[-1].booked)
    run = CustomerRun(customer.ident, customer.events)
    position = 0
    for checkpoint in checkpoints:
        while position < len(transactions) and transactions[position].booked <= checkpoint:
            state.add(transactions[position])
            position += 1
        profile = state.snapshot(checkpoint)
        run.predictions.append((checkpoint, detect_events(profile)))
        truth = overdrawn_before_payday(customer, checkpoint)
        if truth is not None and profile.balance >= 0:
            run.distress_truth[checkpoint] = truth
    return run


def score_runs(
    runs: Iterable[CustomerRun], thresholds: dict[str, float] | None = None
) -> dict[str, Tally]:
    """Tally alerts and planted events per kind under ``thresholds``."""
    limits = thresholds or THRESHOLDS
    tallies = {kind: Tally() for kind in KINDS}
    for run in runs:
        planted = list(run.events)
        found: set[int] = set()
        last_alert: dict[str, date] = {}
        for checkpoint, predictions in run.predictions:
            for prediction in predictions:
                kind = prediction.kind
                if kind == "distress":
                    if checkpoint in run.distress_truth:
                        truth = run.distress_truth[checkpoint]
                        alert = prediction.alert(limits)
                        tally = tallies[kind]
                        tally.alerts += alert
                        tally.true_alerts += alert and truth
                        tally.events += truth
                        tally.found += alert and truth
                    continue
                if not prediction.alert(limits):
                    continue
                previous = last_alert.get(kind)
                if previous is not None and (checkpoint - previous).days < QUIET_DAYS:
                    continue
                last_alert[kind] = checkpoint
                tallies[kind].alerts += 1
                matches = [
                    i
                    for i, e in enumerate(planted)
                    if e.kind == kind and -EARLY_DAYS <= (checkpoint - e.day).days <= MATCH_DAYS
                ]
                if matches:
                    tallies[kind].true_alerts += 1
                    found.update(matches)
        for i, event in enumerate(planted):
            if event.kind in LIFE_EVENTS:
                tallies[event.kind].events += 1
                tallies[event.kind].found += i in found
    return tallies


def sweep(
    runs: list[CustomerRun], kind: str, candidates: Iterable[float]
) -> list[tuple[float, Tally]]:
    """Precision and recall of one kind at each candidate threshold (others unchanged)."""
    out = []
    for threshold in candidates:
        limits = dict(THRESHOLDS)
        limits[kind] = threshold
        out.append((threshold, score_runs(runs, limits)[kind]))
    return out


def choose_threshold(swept: list[tuple[float, Tally]], precision: float) -> float | None:
    """The threshold with the best F1 among those whose precision reaches ``precision``
    (ties: the higher threshold, the more robust), or None when none does."""
    best: tuple[float, float] | None = None
    for threshold, tally in swept:
        if not tally.alerts or tally.precision < precision:
            continue
        total = tally.precision + tally.recall
        f1 = round(2 * tally.precision * tally.recall / total, 3) if total else 0.0
        if best is None or (f1, threshold) > best:
            best = (f1, threshold)
    return None if best is None else best[1]
