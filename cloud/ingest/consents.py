"""Consent enforced in ingest: what a batch may store of a customer's wearable.

GDPR Art 7(3): once a customer withdraws a purpose, processing for it stops at once. Ingest
is where processing starts, so a batch's records about a wearable paired to a customer
(``cloud.customers``) are stored only if the customer consents, now, to every purpose the
record serves (``cloud.customers.consent.PURPOSES``):

| record of a customer's wearable | purposes it needs |
|---|---|
| a reading (heart rate, RR, energy, steps, battery, a button ...), its event | ``activity`` |
| an identifying reading (iBeacon / Eddystone fields), ``enter`` / ``leave`` | the place's |
| a kiosk action naming it (check-in, ticket, request) | ``presence_branch`` |

The place's purposes: ``presence_branch``, and ``presence_partner`` as well in a batch
that reports a partner merchant's beacon.

Where a presence record was: gateways are the branches' (``Device.branch_id``), so presence
heard by one is presence in a branch. Merchants have no gateways; a merchant's beacon is
heard by a branch gateway near the shop (``cloud.fleet.beacons``), and a batch that reports
one (by its identifier readings or its address, ``beacons.find_places``) places the
wearables it heard near a partner shop too: their presence records then need both
presence purposes. Asking for both when in doubt means a wearable is never stored as near a
partner shop without that consent.

A gateway sends a presence event at once, in a small batch of its own (the batcher's
urgent lane), so the batch of a wearable's ``enter`` seldom holds the readings of the
beacon beside it: a stationary beacon's own ``enter`` came in an earlier batch, and it is
present until its ``leave``. ``partners_present`` gives the registered partner beacons
present at a gateway that way (their newest enter/leave from it is an enter), and a batch
is near a partner shop when it reports one or its gateway has one present.

Devices no customer paired (a staff badge, a bank-owned sensor, a beacon, a wearable an
operator bound for the bank's own use) are not a customer's personal data here and are
stored as before; their class and retention still apply (``retention``).

What is withheld is counted, never silent: ``withhold`` returns the records withheld per
missing purpose (the first purpose missing, in ``PURPOSES`` order), which the pipeline adds
to its result and to ``IngestStats`` (``bankiot_ingest_withheld{purpose}``). The batch's
receipt is stored as usual, with the counts of what was stored: the batch is
acknowledged, and the gateway's loss counters (what the data-loss alert reads) are not
touched, since nothing was lost in transit.

Cost: the pipeline asks ``consent.granted_purposes`` once per group of batches, for every
address the group names, in a short session of its own before the group's transaction
(never remembered: a withdrawal must count for the next batch). A group with no customer's
wearable costs that one query and nothing per record. The beacon lookup runs only for
batches holding presence records of a customer's wearable.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bankiot_core.presence import ENTER, LEAVE
from cloud.customers.consent import PURPOSES
from cloud.fleet import beacons
from cloud.fleet.beacon_models import Beacon
from cloud.ingest import retention
from cloud.ingest.models import DeviceEvent
from cloud.ingest.records import KIOSK_EVENT_KINDS, Rows

ACTIVITY = "activity"
BRANCH = "presence_branch"
PARTNER = "presence_partner"
_ORDER = tuple(purpose.name for purpose in PURPOSES)
_PRESENCE_KINDS = (ENTER, LEAVE)
_BEACON_METRICS = ("uuid", "major", "minor", "namespace", "instance")


def subjects(rows: Rows) -> set[str]:
    """The addresses a batch's records are about: devices of readings and of presence
    events, and wearables named by kiosk actions."""
    found = set(rows.devices)
    for event in rows.events:
        if event["kind"] in _PRESENCE_KINDS:
            found.add(event["device"])
    for action in rows.kiosk:
        if action["wearable"] is not None:
            found.add(action["wearable"])
    return found


def has_presence_of(rows: Rows, customers: Collection[str]) -> bool:
    """Whether the batch holds presence records (enter / leave, identifying readings) of
    any of ``customers``' wearables: only then does its place matter."""
    if any(e["kind"] in _PRESENCE_KINDS and e["device"] in customers for e in rows.events):
        return True
    return any(
        r["device"] in customers and r["data_class"] == retention.PRESENCE for r in rows.readings
    )


def beacon_clues(rows: Rows, customers: Collection[str]) -> tuple[set[str], set[str]]:
    """What the batch heard that may be a registered beacon: identifiers (from each
    device's identifier readings, ``beacons.identifier_of``) and addresses (devices of
    readings and presence events), customers' wearables left out."""
    fields: dict[str, dict[str, Any]] = {}
    addresses = set()
    for row in rows.readings:
        device = row["device"]
        if device in customers:
            continue
        addresses.add(device)
        if row["metric"] in _BEACON_METRICS:
            value = row["value_text"] if row["value_text"] is not None else row["value_num"]
            if row["value_kind"] == "int" and row["value_num"] is not None:
                value = int(row["value_num"])
            elif row["value_kind"] == "bytes" and row["value_bytes"] is not None:
                value = row["value_bytes"].hex()
            fields.setdefault(device, {})[row["metric"]] = value
    for event in rows.events:
        if event["kind"] in _PRESENCE_KINDS and event["device"] not in customers:
            addresses.add(event["device"])
    identifiers = {beacons.identifier_of(found) for found in fields.values()}
    return {text for text in identifiers if text}, addresses


def partner_places(session: Session, identifiers: set[str], addresses: set[str]) -> set[str]:
    """Of ``identifiers`` and ``addresses``, those of registered partner merchants' beacons
    (one query)."""
    places = beacons.find_places(session, identifiers, addresses)
    return {clue for clue, place in places.items() if place.kind == "merchant"}


def partners_present(session: Session, gateway: str, up_to_receipt: int | None = None) -> set[str]:
    """Addresses of registered partner merchants' beacons present at ``gateway``: the
    newest enter or leave the gateway reported of each (in batches up to ``up_to_receipt``,
    when given) is an enter (module docstring). One query."""
    partner_addresses = select(Beacon.address).where(
        Beacon.merchant_id.is_not(None), Beacon.address.is_not(None)
    )
    newest = select(DeviceEvent.device, func.max(DeviceEvent.id).label("id")).where(
        DeviceEvent.gateway == gateway,
        DeviceEvent.device.in_(partner_addresses),
        DeviceEvent.kind.in_(_PRESENCE_KINDS),
    )
    if up_to_receipt is not None:
        newest = newest.where(DeviceEvent.receipt_id <= up_to_receipt)
    latest = newest.group_by(DeviceEvent.device).subquery()
    return set(
        session.scalars(
            select(DeviceEvent.device)
            .join(latest, DeviceEvent.id == latest.c.id)
            .where(DeviceEvent.kind == ENTER)
        )
    )


def withhold(
    rows: Rows, granted: Mapping[str, frozenset[str]], at_partner: bool = False
) -> dict[str, int]:
    """Remove from ``rows`` (in place) the records of customers' wearables whose purposes
    (module docstring) are not all in ``granted[address]``; ``granted`` holds only the
    addresses customers paired (``consent.granted_purposes``). ``at_partner``: the batch
    reports a partner merchant's beacon. Returns records withheld per missing purpose."""
    if not granted:
        return {}
    place = (BRANCH, PARTNER) if at_partner else (BRANCH,)
    counts: dict[str, int] = {}

    def allowed(address: str, needs: tuple[str, ...]) -> bool:
        purposes = granted.get(address)
        if purposes is None:
            return True  # no customer's: not gated here
        for purpose in needs:
            if purpose not in purposes:
                counts[purpose] = counts.get(purpose, 0) + 1
                return False
        return True

    kept = []
    for row in rows.readings:
        if row["device"] in granted:
            needs = place if row["data_class"] == retention.PRESENCE else (ACTIVITY,)
            if not allowed(row["device"], needs):
                continue
        kept.append(row)
    if len(kept) != len(rows.readings):
        rows.readings = kept
        ids = {id(row) for row in kept}
        rows.watched = [row for row in rows.watched if id(row) in ids]
    refused_actions = set()
    actions = []
    for action in rows.kiosk:
        wearable = action["wearable"]
        if wearable is not None and not allowed(wearable, (BRANCH,)):
            refused_actions.add(action["event_id"])
            continue
        actions.append(action)
    rows.kiosk = actions
    events = []
    for event in rows.events:
        device, kind = event["device"], event["kind"]
        if device in granted:
            if kind in _PRESENCE_KINDS:
                if not allowed(device, place):
                    continue
            elif not _has(granted[device], (ACTIVITY,)):
                continue  # made from a reading: counted with it
        elif kind in KIOSK_EVENT_KINDS and event["data"].get("event_id") in refused_actions:
            continue  # counted with its kiosk action
        events.append(event)
    rows.events = events
    return {purpose: counts[purpose] for purpose in _ORDER if purpose in counts}


def _has(purposes: frozenset[str], needs: tuple[str, ...]) -> bool:
    return all(purpose in purposes for purpose in needs)
