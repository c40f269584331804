"""The engine's ``Directory`` from the database: consent now, and the customer's profile.

``purposes`` answers from ``cloud.customers.consent.granted_purposes`` (asked once for the
subjects of a whole pass, then per subject for timers' subjects), never from a cache that
outlives the pass: a withdrawal counts from the next pass. ``profile`` is read only when the
engine asks, which it does only after the customer's consent was checked: the attributes
are the customer's id and the branch where the wearable was paired (``home_branch``), plus
what each of ``PROFILE_SOURCES`` adds (analytics may register one: a function of the
session and the customer id returning attributes).

``at_partner`` answers a rule's ``at`` condition as ingest decides *presence at partner
shops* (``cloud.ingest.consents``): the event's batch reports a registered partner
merchant's beacon, by the identifier readings it holds or by the address of a device it
heard (``beacon_clues``, ``partner_places``), or such a beacon is present at the batch's
gateway (``partners_present``, up to that batch); once per batch per pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bankiot_core.presence import ENTER, LEAVE
from cloud.customers.consent import granted_purposes
from cloud.customers.models import CustomerWearable
from cloud.events.engine import Event, radio_address
from cloud.ingest import consents
from cloud.ingest.models import BatchReceipt, DeviceEvent, Reading
from cloud.ingest.records import Rows

ProfileSource = Callable[[Session, int], Mapping[str, Any]]
PROFILE_SOURCES: list[ProfileSource] = []


class ConsentDirectory:
    """A ``Directory`` for one pass of the worker or one dry run (module docstring)."""

    def __init__(self, session: Session, subjects: Iterable[str] = ()) -> None:
        self.session = session
        self._purposes: dict[str, frozenset[str] | None] = {}
        self._profiles: dict[str, Mapping[str, Any]] = {}
        self._partner: dict[int, bool] = {}
        self.prefetch(subjects)

    def prefetch(self, subjects: Iterable[str]) -> None:
        """Ask the consents of ``subjects`` in one query per thousand."""
        wanted = {s.upper() for s in subjects if radio_address(s)} - set(self._purposes)
        if not wanted:
            return
        found = granted_purposes(self.session, wanted)
        for subject in wanted:
            self._purposes[subject] = found.get(subject)

    def purposes(self, subject: str) -> frozenset[str] | None:
        """The purposes the subject's customer consents to; None: no customer's."""
        if not radio_address(subject):
            return None
        key = subject.upper()
        if key not in self._purposes:
            self.prefetch([key])
        return self._purposes[key]

    def profile(self, subject: str) -> Mapping[str, Any]:
        """The customer's attributes (empty for no customer's subject)."""
        key = subject.upper()
        if key in self._profiles:
            return self._profiles[key]
        row = self.session.execute(
            select(CustomerWearable.customer_id, CustomerWearable.branch_id).where(
                CustomerWearable.address == key
            )
        ).first()
        profile: dict[str, Any] = {}
        if row is not None:
            profile = {"customer_id": row.customer_id, "home_branch": row.branch_id}
            for source in PROFILE_SOURCES:
                profile.update(source(self.session, row.customer_id))
        self._profiles[key] = profile
        return profile

    def at_partner(self, event: Event) -> bool:
        """Whether the event's batch reports a partner merchant's beacon (module
        docstring); False for an event without a batch."""
        receipt = event.receipt_id
        if receipt is None:
            return False
        if receipt not in self._partner:
            self._partner[receipt] = _batch_at_partner(self.session, receipt, event.device)
        return self._partner[receipt]


def _batch_at_partner(session: Session, receipt: int, subject: str) -> bool:
    """Whether batch ``receipt`` reports a registered partner merchant's beacon, leaving
    ``subject`` (the event's own device) out of the clues."""
    rows = Rows()
    heard = session.execute(
        select(
            Reading.device,
            Reading.metric,
            Reading.value_kind,
            Reading.value_num,
            Reading.value_text,
            Reading.value_bytes,
        ).where(Reading.receipt_id == receipt)
    )
    rows.readings = [dict(row._mapping) for row in heard]
    presence = session.execute(
        select(DeviceEvent.device, DeviceEvent.kind).where(
            DeviceEvent.receipt_id == receipt, DeviceEvent.kind.in_((ENTER, LEAVE))
        )
    )
    rows.events = [dict(row._mapping) for row in presence]
    identifiers, addresses = consents.beacon_clues(rows, {subject})
    if consents.partner_places(session, identifiers, addresses):
        return True
    # The event's batch seldom holds the beacon itself: is one present at its gateway?
    gateway = session.scalar(select(BatchReceipt.gateway).where(BatchReceipt.id == receipt))
    return gateway is not None and bool(consents.partners_present(session, gateway, receipt))


class StaticDirectory:
    """A ``Directory`` from plain mappings (tests, and replays of a known snapshot)."""

    def __init__(
        self,
        purposes: Mapping[str, frozenset[str]] | None = None,
        profiles: Mapping[str, Mapping[str, Any]] | None = None,
        partner_batches: frozenset[int] = frozenset(),
    ) -> None:
        self._purposes = dict(purposes or {})
        self._profiles = dict(profiles or {})
        self._partner_batches = partner_batches
        self.profile_reads: list[str] = []

    def purposes(self, subject: str) -> frozenset[str] | None:
        """As given; None for a subject not listed."""
        return self._purposes.get(subject)

    def profile(self, subject: str) -> Mapping[str, Any]:
        """As given (each read is remembered in ``profile_reads``)."""
        self.profile_reads.append(subject)
        return self._profiles.get(subject, {})

    def at_partner(self, event: Event) -> bool:
        """Whether the event's batch is among ``partner_batches``."""
        return event.receipt_id in self._partner_batches
