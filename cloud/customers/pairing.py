"""Pairing a wearable to a customer with a kiosk's code, consents, and unpairing.

The rules (one transaction each; the caller commits):

- ``pair``: the code must be a live offer (``codes``: unused, not expired), the wearable
  paired to no other customer, and at least one purpose consented (without a consent
  nothing of the wearable may be used, so there would be nothing to pair for). Then the
  wearable is the customer's, the consents are recorded (channel ``kiosk_code``), the offer
  is used up, and every wearable of the customer is bound (``cloud.fleet.bindings.bind``)
  to every branch the customer uses: the kiosk's branch and those of earlier pairings. The
  branches' gateways get the set in a sealed KEYS downlink on the supervisor's next pass.
  The wearable's inventory record, if the bank registered it (a ``devices`` row of kind
  ``wearable`` with its address), moves to the kiosk's branch with its open alerts
  (``cloud.fleet.alerts.move_open_alerts``): that branch's staff look after it now.
- ``change_consents``: records what changed (channel ``web``). While at least one purpose
  is consented the customer's wearables stay bound; when the last one is withdrawn they are
  unbound from every branch at once, and bound again when one is given again.
- ``unpair``: the wearable is unbound from every branch and is no longer the customer's.
- ``purge_offers``: offers used or expired are deleted (``bankiot cloud ingest-purge``).

The customer's copy of a wearable's IRK and bind key (``CustomerWearable``) is sealed with
``bindings.BindingCipher`` under its own key derived from the KEK (``KEEP_PURPOSE``), so a
branch binding's sealed values and the customer's copy are never interchangeable.
Audit rows name the customer by id (``customer:<id>``), never by email.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from cloud import audit
from cloud.customers import codes, consent
from cloud.customers.models import Customer, CustomerWearable, PairingOffer
from cloud.fleet import bindings
from cloud.fleet.alerts import move_open_alerts
from cloud.fleet.bindings_models import WearableBinding
from cloud.fleet.errors import Invalid
from cloud.fleet.models import Device
from cloud.identity.keys import KeyWrapper

KEEP_PURPOSE = "customer wearables"
_HOLDER = 0  # the "branch" in the customer copy's associated data: no branch has id 0
CODE_REFUSED = "this pairing code is unknown, used or expired: ask the kiosk for a new one"


class PairingRefused(ValueError):
    """Pairing cannot be done; the message says why in one line. ``field`` names the form
    field at fault (``code``, ``wearable``, ``consent``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class WearableTaken(PairingRefused):
    """The wearable is paired to another customer."""


@dataclass(frozen=True)
class Ciphers:
    """The keys pairing needs: the ciphers of branch bindings and of the customers' copies,
    and the pairing codes' digest key (``codes.key_from``)."""

    bindings: bindings.BindingCipher
    keep: bindings.BindingCipher
    codes: bytes

    @classmethod
    def from_wrapper(cls, wrapper: KeyWrapper) -> Ciphers:
        """All three, derived from the cloud's KEK."""
        return cls(
            bindings.BindingCipher.from_wrapper(wrapper),
            bindings.BindingCipher(wrapper.derive(KEEP_PURPOSE)),
            codes.key_from(wrapper),
        )

    def __repr__(self) -> str:
        return "Ciphers(<hidden>)"


@dataclass(frozen=True)
class WearableDetails:
    """A wearable as its box describes it: identity address, bind key, IRK (or None)."""

    address: str
    key: bytes | None
    irk: bytes | None


def parse_details(text: str, key: str = "", irk: str = "") -> WearableDetails:
    """The wearable's details from the box: ``text`` is its address or the QR text
    ``bthome:AA:BB:CC:DD:EE:FF;key=<32 hex>[;irk=<32 hex>]``; ``key`` and ``irk`` fields,
    when filled, win over the QR's. PairingRefused (field ``wearable``) for bad values; the
    message never shows a key."""
    text = text.strip()
    fields: dict[str, str] = {}
    if text.lower().startswith("bthome:"):
        address, *parts = text[len("bthome:") :].split(";")
        for part in parts:
            name, sep, value = part.partition("=")
            if not sep or name.strip().lower() not in ("key", "irk"):
                raise PairingRefused(
                    "the QR text holds %r: expected key=... or irk=..." % name.strip()[:16],
                    "wearable",
                )
            fields[name.strip().lower()] = value.strip()
    else:
        address = text
    key = key.strip() or fields.get("key", "")
    irk = irk.strip() or fields.get("irk", "")
    try:
        return WearableDetails(
            bindings.parse_address(address.strip()),
            bindings.parse_secret(key or None, "bind key"),
            bindings.parse_secret(irk or None, "IRK"),
        )
    except Invalid as exc:
        raise PairingRefused(str(exc), "wearable") from None


def live_offer(session: Session, code_text: str, now: dt.datetime, key: bytes) -> PairingOffer:
    """The unused, unexpired offer for the code typed (``key``: the codes' digest key),
    locked for this transaction; PairingRefused (one message for unknown, used and expired)
    otherwise."""
    try:
        code = codes.normalize(code_text)
    except codes.CodeFormatError as exc:
        raise PairingRefused(str(exc), "code") from None
    offer = session.scalar(
        select(PairingOffer)
        .where(
            PairingOffer.code_hash == codes.digest(code, key),
            PairingOffer.used_at.is_(None),
            PairingOffer.expires_at > now,
        )
        .order_by(PairingOffer.occurred_at.desc())
        .limit(1)
        .with_for_update()
    )
    if offer is None:
        raise PairingRefused(CODE_REFUSED, "code")
    return offer


def pair(
    session: Session,
    customer: Customer,
    code_text: str,
    details: WearableDetails,
    consents: Mapping[str, bool],
    now: dt.datetime,
    ciphers: Ciphers,
) -> CustomerWearable:
    """Pair the wearable to ``customer`` with a kiosk's code (module docstring); staged.
    ``consents``: purpose -> ticked. PairingRefused (WearableTaken) when it cannot be."""
    offer = live_offer(session, code_text, now, ciphers.codes)
    if not any(consents.get(p.name) for p in consent.PURPOSES if p.wearable):
        raise PairingRefused(
            "tick at least one purpose for the wearable: without a consent nothing of it is used",
            "consent",
        )
    wearable = session.scalar(
        select(CustomerWearable)
        .where(CustomerWearable.address == details.address)
        .with_for_update()
    )
    if wearable is not None and wearable.customer_id != customer.id:
        raise WearableTaken(
            "this wearable is paired to another account: it must be unpaired there first",
            "wearable",
        )
    if wearable is None:
        wearable = CustomerWearable(customer_id=customer.id, address=details.address)
        session.add(wearable)
    wearable.irk_sealed = _keep(ciphers, details.address, "irk", details.irk)
    wearable.key_sealed = _keep(ciphers, details.address, "key", details.key)
    wearable.paired_at = now
    wearable.branch_id = offer.branch_id
    _move_device(session, customer.id, details.address, offer.branch_id)
    offer.used_at = now
    offer.customer_id = customer.id
    session.flush()
    _record_changes(session, customer.id, consents, "kiosk_code", now)
    _bind_all(session, customer.id, now, ciphers)
    return wearable


def change_consents(
    session: Session,
    customer: Customer,
    consents: Mapping[str, bool],
    now: dt.datetime,
    ciphers: Ciphers,
) -> int:
    """Record the purposes whose answer changed (channel ``web``) and bind or unbind the
    customer's wearables (module docstring); staged. How many rows were added."""
    added = _record_changes(session, customer.id, consents, "web", now)
    if added:
        if consent.any_granted(session, customer.id):
            _bind_all(session, customer.id, now, ciphers)
        else:
            for wearable in wearables_of(session, customer.id):
                _unbind_everywhere(session, customer.id, wearable.address, now)
    return added


def unpair(session: Session, customer: Customer, address: str, now: dt.datetime) -> bool:
    """Remove the wearable from the customer and from every branch (staged); whether the
    customer had it."""
    address = bindings.parse_address(address)
    wearable = session.scalar(
        select(CustomerWearable).where(
            CustomerWearable.customer_id == customer.id, CustomerWearable.address == address
        )
    )
    if wearable is None:
        return False
    _unbind_everywhere(session, customer.id, address, now)
    session.delete(wearable)
    session.flush()
    return True


def purge_offers(session: Session, now: dt.datetime) -> int:
    """Delete the pairing offers that can no longer be used: used ones and expired ones
    (staged); how many. An offer is only a means to pair: once used, the pairing itself
    (``CustomerWearable``, the consent rows with channel ``kiosk_code``) is the record."""
    result = session.execute(
        delete(PairingOffer)
        .where(or_(PairingOffer.used_at.is_not(None), PairingOffer.expires_at <= now))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def wearables_of(session: Session, customer_id: int) -> list[CustomerWearable]:
    """The customer's wearables, in pairing order."""
    return list(
        session.scalars(
            select(CustomerWearable)
            .where(CustomerWearable.customer_id == customer_id)
            .order_by(CustomerWearable.id)
        )
    )


def branches_of(session: Session, customer_id: int) -> set[int]:
    """The branches the customer uses: where their wearables were paired or are bound."""
    owned = [w for w in wearables_of(session, customer_id)]
    found = {w.branch_id for w in owned if w.branch_id is not None}
    if owned:
        found |= set(
            session.scalars(
                select(WearableBinding.branch_id).where(
                    WearableBinding.address.in_([w.address for w in owned])
                )
            )
        )
    return found


# ---- inside ---------------------------------------------------------------------------------


def _actor(customer_id: int) -> str:
    return "customer:%d" % customer_id


def _keep(ciphers: Ciphers, address: str, field: str, secret: bytes | None) -> bytes | None:
    return None if secret is None else ciphers.keep.seal(_HOLDER, address, field, secret)


def _kept(ciphers: Ciphers, wearable: CustomerWearable, field: str) -> bytes | None:
    sealed = wearable.irk_sealed if field == "irk" else wearable.key_sealed
    return None if sealed is None else ciphers.keep.open(_HOLDER, wearable.address, field, sealed)


def _record_changes(
    session: Session, customer_id: int, consents: Mapping[str, bool], channel: str, now: dt.datetime
) -> int:
    current = consent.latest(session, customer_id)
    added = 0
    for purpose in consent.PURPOSES:
        if purpose.name not in consents:
            continue
        wanted = bool(consents[purpose.name])
        row = current.get(purpose.name)
        if (row.granted if row is not None else False) != wanted:
            consent.record(session, customer_id, purpose.name, wanted, channel, now)
            added += 1
    return added


def _bind_all(session: Session, customer_id: int, now: dt.datetime, ciphers: Ciphers) -> None:
    branches = sorted(branches_of(session, customer_id))
    for wearable in wearables_of(session, customer_id):
        irk, key = _kept(ciphers, wearable, "irk"), _kept(ciphers, wearable, "key")
        for branch_id in branches:
            bindings.bind(
                session,
                branch_id,
                wearable.address,
                irk=irk,
                key=key,
                actor=_actor(customer_id),
                now=now,
                cipher=ciphers.bindings,
            )


def _move_device(session: Session, customer_id: int, address: str, branch_id: int) -> None:
    """The wearable's inventory record, if any, and its open alerts move to ``branch_id``
    (audited: the inventory changes)."""
    device = session.scalar(select(Device).where(Device.kind == "wearable", Device.uid == address))
    if device is None or device.branch_id == branch_id:
        return
    before, device.branch_id = device.branch_id, branch_id
    moved = move_open_alerts(session, device.id, branch_id)
    audit.record(
        session,
        _actor(customer_id),
        "device.move",
        "device:%s" % address,
        from_branch=before,
        to_branch=branch_id,
        open_alerts=moved,
    )


def _unbind_everywhere(session: Session, customer_id: int, address: str, now: dt.datetime) -> None:
    branch_ids = session.scalars(
        select(WearableBinding.branch_id).where(WearableBinding.address == address)
    ).all()
    for branch_id in branch_ids:
        bindings.unbind(session, branch_id, address, actor=_actor(customer_id), now=now)
