"""The event worker's counters, for ``/metrics`` (Prometheus) and tests.

- ``bankiot_events_decisions{reason}``: decisions stored (``engine.REASONS``);
- ``bankiot_events_not_customer{rule}``: events a rule with a consent purpose did not
  process because their subject is no customer's wearable (nothing of them is stored:
  ``engine``);
- ``bankiot_events_action_failures``: post-commit actions that failed (``actions``).

Counted once a pass is committed, so a pass that is rolled back and run again counts once.
Totals since the process started; thread-safe.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class WorkerStats(Collector):
    """Counts per decision reason and per rule (module docstring); a Prometheus collector.
    ``failures``: where the action failures are read (the executor's count)."""

    def __init__(self, failures: Callable[[], int] | None = None) -> None:
        self._lock = threading.Lock()
        self._decisions: Counter[str] = Counter()
        self._not_customer: Counter[str] = Counter()
        self.failures = failures or (lambda: 0)

    def count(self, reasons: Mapping[str, int], not_customer: Mapping[str, int]) -> None:
        """Add one committed pass: decisions per reason, events skipped per rule."""
        with self._lock:
            self._decisions.update(reasons)
            self._not_customer.update(not_customer)

    def not_customer(self, rule: str | None = None) -> int:
        """Events skipped as no customer's (for ``rule``, or all)."""
        with self._lock:
            if rule is None:
                return sum(self._not_customer.values())
            return self._not_customer[rule]

    def snapshot(self) -> dict[str, int]:
        """``{"decisions:<reason>": n, "not_customer:<rule>": n, ...}`` for logs and JSON."""
        with self._lock:
            out = {"decisions:%s" % k: n for k, n in sorted(self._decisions.items())}
            out.update({"not_customer:%s" % k: n for k, n in sorted(self._not_customer.items())})
        out["action_failures"] = self.failures()
        return out

    def collect(self) -> Iterator[CounterMetricFamily]:
        decisions = CounterMetricFamily(
            "bankiot_events_decisions", "Rule decisions stored, by reason", labels=["reason"]
        )
        skipped = CounterMetricFamily(
            "bankiot_events_not_customer",
            "Events a rule with a consent purpose left alone: no customer's wearable",
            labels=["rule"],
        )
        failures = CounterMetricFamily(
            "bankiot_events_action_failures", "Post-commit actions of rules that failed"
        )
        with self._lock:
            for reason, n in sorted(self._decisions.items()):
                decisions.add_metric([reason], n)
            for rule, n in sorted(self._not_customer.items()):
                skipped.add_metric([rule], n)
        failures.add_metric([], self.failures())
        yield decisions
        yield skipped
        yield failures

    def register(self, registry: CollectorRegistry) -> None:
        """Expose these counters in ``registry``."""
        registry.register(self)
