"""The database side of ingest: the one transaction per batch, and downlink numbers.

``stage_batch`` writes, in the caller's transaction (the pipeline stages one batch or a
group of batches per transaction, then commits): the receipt first (its UNIQUE
constraint on (gateway, key version, sequence) is what makes a second copy of the batch a
duplicate, even when two workers race with it), then the readings and events, the
gateway's latest health and last-seen time, and its reports on commands and configuration
(``cloud.fleet.reports``). Either all of it is there or none of it. A duplicate writes
nothing.

Kiosk events (``kiosk_models``) go in before the batch's events, with the kiosk's inventory
record and branch, ``INSERT ... ON CONFLICT (gateway, event_id) DO NOTHING RETURNING``: an
event already stored under another batch (which a gateway keeping its promise never sends)
is not stored twice, and neither is its ``device_events`` row; a warning says so. A new
pairing event also becomes a pairing offer (``cloud.customers.models.PairingOffer``: the
code's digest, the kiosk's device and branch, expiring ``codes.OFFER_LIFETIME`` after it
was shown); a kiosk outside the inventory, or without a branch, makes none.

Downlink sequence numbers come from one row per gateway, incremented with
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` (PostgreSQL and SQLite alike): the row
lock orders concurrent users, and a number is used only if its transaction commits, so
numbers never repeat. The acknowledgements' numbers are taken after the batches' commit, in
a short transaction of their own (``take_ack_numbers``): taking them inside the group's
transaction held the counter row locked until its commit, and two workers with batches of
the same gateway queued on it. A batch committed whose ack number could not be taken (the
database went away in between) is simply not acknowledged yet: the gateway sends it again,
and the copy is a duplicate, acknowledged then. A gateway can receive its acknowledgements
out of order (two workers answering two batches); its replay window takes them as long as
they are fresh.

Threshold states (``thresholds``): when a group of batches holds readings of a metric that
has thresholds, ``lock_threshold_states`` first makes and locks the (device, rule) rows they
touch, all of them in one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` in key order,
before anything else of the group is written. A second transaction touching one of those
rows (another worker with a later batch of the same gateway, or another gateway hearing the
same sensor) waits until the first commits and then reads its result, so crossings are
decided once, in order; taking every state lock first, in one order, means two groups never
wait for each other in a circle. ``stage_batch`` runs its batch's readings through the
states (``thresholds.threshold_events``) and adds the events; ``save_threshold_states``
writes back the states that changed. A group without such readings costs nothing more.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud.customers.codes import OFFER_LIFETIME
from cloud.customers.models import PairingOffer
from cloud.fleet import reports as fleet_reports
from cloud.fleet.models import Device
from cloud.ingest import retention
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import (
    BatchReceipt,
    DeviceEvent,
    DownlinkCounter,
    GatewayHealth,
    Reading,
    ThresholdState,
    utc,
)
from cloud.ingest.records import KIOSK_EVENT_KINDS, Rows
from cloud.ingest.thresholds import State, StateKey, Thresholds, threshold_events

# The tables themselves, for Core inserts (the ORM's bulk path costs more than the rows).
READINGS = cast(Table, Reading.__table__)
EVENTS = cast(Table, DeviceEvent.__table__)
STATES = cast(Table, ThresholdState.__table__)
KIOSK = cast(Table, KioskEventRow.__table__)
OFFERS = cast(Table, PairingOffer.__table__)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed:
    """What ``stage_batch`` did: the receipt (None for a duplicate: nothing stored) and the
    rows stored."""

    receipt_id: int | None
    readings: int
    events: int

    @property
    def duplicate(self) -> bool:
        """True if the batch was committed before."""
        return self.receipt_id is None


@functools.cache
def _statements(dialect: str) -> tuple[Any, Any]:
    """The receipt insert and the downlink counter upsert for ``dialect``, built once (they
    run for every batch; building them costs more than running them on SQLite)."""
    module = postgresql if dialect == "postgresql" else sqlite
    receipt = (
        module.insert(BatchReceipt)
        .on_conflict_do_nothing(index_elements=["gateway", "key_version", "seq"])
        .returning(BatchReceipt.id)
    )
    counter = (
        module.insert(DownlinkCounter)
        .values(next_seq=bindparam("count"))
        .on_conflict_do_update(
            index_elements=[DownlinkCounter.gateway],
            set_={"next_seq": DownlinkCounter.next_seq + bindparam("count")},
        )
        .returning(DownlinkCounter.next_seq)
    )
    return receipt, counter


@functools.cache
def _kiosk_statement(dialect: str) -> Any:
    """The kiosk events' insert: a second copy of an event is skipped, the new ones'
    event ids returned."""
    module = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(KIOSK)
        .on_conflict_do_nothing(index_elements=[KIOSK.c.gateway, KIOSK.c.event_id])
        .returning(KIOSK.c.event_id)
    )


def _stage_kiosk(session: Session, gateway: str, seq: int, rows: Rows, receipt_id: int) -> set[int]:
    """Insert the batch's kiosk events (module docstring); the event ids already stored
    before, whose copies were skipped."""
    device = session.execute(
        select(Device.id, Device.branch_id).where(Device.uid == gateway)
    ).first()
    device_id, branch_id = (None, None) if device is None else (device.id, device.branch_id)
    values = [
        {**row, "receipt_id": receipt_id, "device_id": device_id, "branch_id": branch_id}
        for row in rows.kiosk
    ]
    # One multi-row statement (a batch holds few kiosk events), so RETURNING covers them all.
    statement = _kiosk_statement(_dialect(session)).values(values)
    stored = set(session.connection().execute(statement).scalars())
    skipped = {row["event_id"] for row in rows.kiosk} - stored
    offers = [
        {
            **offer,
            "device_id": device_id,
            "branch_id": branch_id,
            "expires_at": offer["occurred_at"] + OFFER_LIFETIME,
        }
        for offer in rows.pairing
        if offer["event_id"] in stored
    ]
    if offers and branch_id is not None:
        session.connection().execute(insert(OFFERS), offers)
    if skipped:
        log.warning(
            "gateway %s batch %d repeats kiosk events %s stored before: not stored again",
            gateway,
            seq,
            ", ".join(str(event_id) for event_id in sorted(skipped)),
        )
    return skipped


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def take_downlink_seq(session: Session, gateway: str, count: int = 1) -> int:
    """Reserve ``count`` downlink sequence numbers of ``gateway`` (0 first); return the
    first of them. Part of the caller's transaction, which must commit before they are used:
    the counter row stays locked until then, so keep that transaction short."""
    counter = _statements(_dialect(session))[1]
    top = int(session.execute(counter, {"gateway": gateway, "count": count}).scalar_one())
    return top - count


def take_ack_numbers(session: Session, batches: Sequence[str]) -> list[int]:
    """Downlink numbers for acknowledging ``batches`` (the gateway of each), in order: one
    counter update per gateway, gateways in sorted order (so concurrent callers lock the
    counter rows in the same order). The caller commits, then seals."""
    counts: dict[str, int] = {}
    for gateway in batches:
        counts[gateway] = counts.get(gateway, 0) + 1
    first = {
        gateway: take_downlink_seq(session, gateway, counts[gateway]) for gateway in sorted(counts)
    }
    out = []
    for gateway in batches:
        out.append(first[gateway])
        first[gateway] += 1
    return out


def _update_health(
    session: Session, gateway: str, key_version: int, seq: int, rows: Rows, receipt_id: int
) -> None:
    """Keep the newest health record (by key version, then sequence number) and turn a
    rise in the gateway's dropped-batch count into a ``loss`` event."""
    if not rows.health:
        return
    latest = rows.health[-1]
    current = session.get(GatewayHealth, gateway, with_for_update=True)
    if current is None:
        try:
            with session.begin_nested():  # another worker may insert the first one too
                session.add(
                    GatewayHealth(gateway=gateway, key_version=key_version, seq=seq, **latest)
                )
            return
        except IntegrityError:
            current = session.get(
                GatewayHealth, gateway, with_for_update=True, populate_existing=True
            )
            if current is None:
                raise
    if (key_version, seq) <= (current.key_version, current.seq):
        return  # an older batch arriving late: its health is history, kept as events
    before, after = current.dropped_batches, latest["dropped_batches"]
    if before is not None and after is not None and after > before:
        session.execute(
            insert(DeviceEvent),
            [
                {
                    "receipt_id": receipt_id,
                    "gateway": gateway,
                    "device": gateway,
                    "kind": "loss",
                    "occurred_at": latest["reported_at"],
                    "time_estimated": latest["time_estimated"],
                    "received_at": latest["received_at"],
                    "data": {
                        "dropped_batches": after - before,
                        "lost_first": latest["lost_first"],
                        "lost_last": latest["lost_last"],
                    },
                    "data_class": retention.DEVICE,
                }
            ],
        )
    current.key_version, current.seq = key_version, seq
    for name, value in latest.items():
        setattr(current, name, value)


# How stale a device's last-seen time may be. The row is written (and locked until the
# group's commit) at most once per this interval per gateway: two workers holding batches of
# one gateway would otherwise queue on that row (measured: a quarter of the connections
# waiting with two PostgreSQL workers). Offline alerts count in minutes.
SEEN_RESOLUTION = dt.timedelta(seconds=30)


def _seen(session: Session, gateway: str, at: dt.datetime) -> None:
    """The gateway's device record was last seen ``at``, to ``SEEN_RESOLUTION``: a row that
    says so already is only read (an UPDATE that matches no row locks none)."""
    session.execute(
        update(Device)
        .where(
            Device.uid == gateway,
            or_(Device.last_seen_at.is_(None), Device.last_seen_at < at - SEEN_RESOLUTION),
        )
        .values(last_seen_at=at)
        .execution_options(synchronize_session=False)
    )


@functools.cache
def _state_statements(dialect: str) -> tuple[Any, Any]:
    """The threshold states' lock (an upsert returning the rows) and update, built once."""
    module = postgresql if dialect == "postgresql" else sqlite
    lock = (
        module.insert(STATES)
        # A no-op update: it locks an existing row and returns it as last committed.
        .on_conflict_do_update(
            index_elements=[STATES.c.device, STATES.c.rule], set_={"crossed": STATES.c.crossed}
        )
        .returning(
            STATES.c.device,
            STATES.c.rule,
            STATES.c.crossed,
            STATES.c.since,
            STATES.c.value,
            STATES.c.last_at,
        )
    )
    save = STATES.update().where(
        STATES.c.device == bindparam("key_device"), STATES.c.rule == bindparam("key_rule")
    )
    return lock, save


def lock_threshold_states(
    session: Session, thresholds: Thresholds, keys: Collection[StateKey]
) -> dict[StateKey, State]:
    """The states of ``keys`` (device, rule key), made (normal) where missing and locked
    until the caller's transaction ends (module docstring). Rule keys must be rules of
    ``thresholds``."""
    if not keys:
        return {}
    metric = {rule.key: rule.metric for rule in thresholds.rules}
    params = [
        {"device": device, "rule": rule, "metric": metric[rule], "crossed": False}
        for device, rule in sorted(keys)  # one lock order for every transaction
    ]
    # Core, one statement compiled once: the rows go as one multi-row INSERT
    # (SQLAlchemy's "insertmanyvalues"), in the order given.
    result = session.connection().execute(_state_statements(_dialect(session))[0], params)
    return {
        (row.device, row.rule): State(
            bool(row.crossed),
            None if row.since is None else utc(row.since),
            row.value,
            None if row.last_at is None else utc(row.last_at),
        )
        for row in result
    }


def save_threshold_states(
    session: Session, before: Mapping[StateKey, State], after: Mapping[StateKey, State]
) -> int:
    """Write the states of ``after`` that differ from ``before`` (as locked); how many."""
    changed = [
        {
            "key_device": device,
            "key_rule": rule,
            "crossed": state.crossed,
            "since": state.since,
            "value": state.value,
            "last_at": state.last_at,
        }
        for (device, rule), state in after.items()
        if before.get((device, rule)) != state
    ]
    if changed:
        session.connection().execute(_state_statements(_dialect(session))[1], changed)
    return len(changed)


def stage_batch(
    session: Session,
    gateway: str,
    key_version: int,
    seq: int,
    rows: Rows,
    received_at: dt.datetime,
    transport: str,
    envelope_bytes: int,
    thresholds: Thresholds | None = None,
    states: dict[StateKey, State] | None = None,
) -> Committed:
    """Store one batch unless it is there already, in the caller's transaction.

    The receipt goes first, ``INSERT ... ON CONFLICT DO NOTHING``: no row back means another
    copy committed first (or is committing: its transaction holds the key until it ends),
    and then nothing else is written.

    ``thresholds`` and ``states`` (from ``lock_threshold_states``, holding every key the
    batch's watched readings touch): the batch's crossings become events and ``states`` is
    updated in place (a duplicate leaves it as it was).
    """
    events = rows.events
    new_states: dict[StateKey, State] = {}
    if thresholds and rows.watched and states is not None:
        new_states, crossings = threshold_events(thresholds, states, rows.watched)
        if crossings:
            # A device's events go in in the order they happened (a stable sort: the
            # batch's own events are in that order already).
            events = sorted(rows.events + crossings, key=lambda row: row["occurred_at"])
    receipt = _statements(_dialect(session))[0]
    receipt_id = session.execute(
        receipt,
        {
            "gateway": gateway,
            "key_version": key_version,
            "seq": seq,
            "received_at": received_at,
            "transport": transport,
            "readings": len(rows.readings),
            "events": len(events),
            "envelope_bytes": envelope_bytes,
        },
    ).scalar()
    if receipt_id is None:
        return Committed(None, 0, 0)
    connection = session.connection()  # Core inserts: the ORM's bookkeeping is not needed
    if rows.kiosk:
        skipped = _stage_kiosk(session, gateway, seq, rows, receipt_id)
        if skipped:
            events = [
                row
                for row in events
                if not (
                    row["device"] == gateway
                    and row["kind"] in KIOSK_EVENT_KINDS
                    and row["data"].get("event_id") in skipped
                )
            ]
            connection.execute(
                update(BatchReceipt).where(BatchReceipt.id == receipt_id).values(events=len(events))
            )
    if rows.readings:
        for row in rows.readings:
            row["receipt_id"] = receipt_id
        connection.execute(insert(READINGS), rows.readings)
    if events:
        for row in events:
            row["receipt_id"] = receipt_id
        connection.execute(insert(EVENTS), events)
    if new_states and states is not None:
        states.update(new_states)
    _update_health(session, gateway, key_version, seq, rows, receipt_id)
    _seen(session, gateway, received_at)
    if rows.results or rows.running is not None:
        fleet_reports.apply(session, gateway, rows.results, rows.running, received_at)
    return Committed(receipt_id, len(rows.readings), len(events))
