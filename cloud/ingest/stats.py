"""Ingest counters: what came in and what became of it, for ``/metrics`` and tests.

Outcomes: ``accepted`` (committed now), ``duplicate`` (committed before: acknowledged again,
nothing stored), ``rejected`` (with a reason, nothing stored) and ``unavailable`` (the
database did not answer: nothing stored, the sender tries again). Reasons of rejections:

| reason | meaning |
|---|---|
| ``too_large`` | the envelope is over the size limit |
| ``malformed`` | not an envelope (``cose`` could not parse it), or a gateway id that is not one |
| ``wrong_gateway`` | the kid names another gateway than the channel it came on (MQTT topic) |
| ``revoked`` | the gateway is revoked |
| ``unknown_key`` | no valid key for the kid's gateway and version |
| ``forged`` | the tag does not check out: wrong key, altered, or sealed for another topic |
| ``undecodable`` | authentic, but the plaintext is not a batch this cloud understands |
| ``unstorable`` | authentic and decoded, but holds what the schema cannot store |
| ``internal_error`` | the MQTT worker's: judging the message raised (a bug, logged) |

Records of customers' wearables withheld for want of consent (``consents``) are counted
per purpose not consented (``withheld``); their batches are accepted.

The counts are totals since the process started (Prometheus counters). Thread-safe.
Rejections are also counted in the database, across workers and restarts (``rejections``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
UNAVAILABLE = "unavailable"
REASONS = (
    "too_large",
    "malformed",
    "wrong_gateway",
    "revoked",
    "unknown_key",
    "forged",
    "undecodable",
    "unstorable",
    "internal_error",
)


class IngestStats(Collector):
    """Counts per (outcome, reason, transport), and readings stored; a Prometheus collector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: Counter[tuple[str, str, str]] = Counter()
        self._readings: Counter[str] = Counter()
        self._withheld: Counter[str] = Counter()

    def count(self, outcome: str, reason: str, transport: str, readings: int = 0) -> None:
        """Count one envelope (and the readings it stored)."""
        with self._lock:
            self._batches[(outcome, reason, transport)] += 1
            if readings:
                self._readings[transport] += readings

    def withhold(self, counts: dict[str, int]) -> None:
        """Count records withheld, per purpose not consented."""
        with self._lock:
            self._withheld.update(counts)

    def withheld(self, purpose: str | None = None) -> int:
        """Records withheld (for ``purpose``, or all)."""
        with self._lock:
            if purpose is None:
                return sum(self._withheld.values())
            return self._withheld[purpose]

    def batches(self, outcome: str | None = None, reason: str | None = None) -> int:
        """Envelopes counted with ``outcome`` (and ``reason``), any transport."""
        with self._lock:
            return sum(
                n
                for (o, r, _), n in self._batches.items()
                if (outcome is None or o == outcome) and (reason is None or r == reason)
            )

    def readings(self) -> int:
        """Readings stored."""
        with self._lock:
            return sum(self._readings.values())

    def snapshot(self) -> dict[str, int]:
        """``{"outcome" or "rejected:reason": count}``, for logs and JSON."""
        with self._lock:
            out: Counter[str] = Counter()
            for (outcome, reason, _), n in self._batches.items():
                out[outcome if not reason else "%s:%s" % (outcome, reason)] += n
            out["readings"] = sum(self._readings.values())
            out["withheld"] = sum(self._withheld.values())
            return dict(out)

    def collect(self) -> Iterator[CounterMetricFamily]:
        batches = CounterMetricFamily(
            "bankiot_ingest_batches",
            "Sealed batches received, by outcome and rejection reason",
            labels=["outcome", "reason", "transport"],
        )
        readings = CounterMetricFamily(
            "bankiot_ingest_readings", "Readings stored", labels=["transport"]
        )
        withheld = CounterMetricFamily(
            "bankiot_ingest_withheld",
            "Records of customers' wearables not stored for want of consent",
            labels=["purpose"],
        )
        with self._lock:
            for purpose, n in sorted(self._withheld.items()):
                withheld.add_metric([purpose], n)
            for (outcome, reason, transport), n in sorted(self._batches.items()):
                batches.add_metric([outcome, reason, transport], n)
            for transport, n in sorted(self._readings.items()):
                readings.add_metric([transport], n)
        yield batches
        yield readings
        yield withheld

    def register(self, registry: CollectorRegistry) -> None:
        """Expose these counters in ``registry``."""
        registry.register(self)
