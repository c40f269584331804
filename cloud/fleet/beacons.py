"""Beacons of branches and partner merchants: the registry, what gateways listen for, and
which place a beacon heard means.

**Registry.** A beacon is an iBeacon (proximity UUID, major, minor) or an Eddystone UID
(10-byte namespace, 6-byte instance) at one place: a branch, or a partner merchant
(``merchants``: a name and its ISO 18245 merchant category code). What it advertises is
kept as one canonical ``identifier`` (``ibeacon:<uuid>:<major>:<minor>``,
``eddystone:<namespace>:<instance>``, lower-case hex, as ``bankiot_core.beacons`` decodes
it), unique: one advertisement means one place. Its fixed radio address (``address``) is
optional and unique too.

**What gateways listen for.** The gateways' allow-list is by address
(``bankiot_core.filterconfig`` ``paired``, ``irks``): a frame from an address that is not
paired is dropped before it is decoded further, so the identifiers alone cannot let a
beacon through. Installed beacons advertise from a fixed public or static random address;
a beacon registered with its ``address`` at a branch joins the ``paired`` list of the
desired configuration of every gateway and kiosk of that branch (``join_addresses``: added
when the beacon is added, removed when it is removed, kept through an operator's
``config set``, ``configs.set_desired`` joins them), which the cloud seals and delivers like
any configuration, and an enrolling gateway starts with (``initial_config``). A beacon
without an address (a phone acting as one, on rotating addresses) is registered for the
lookup only: the edge drops it. Merchants' beacons join no gateway configuration (there
are no gateways at merchants); they are heard by whatever reports them.

**Meaning.** ``find_places`` and ``place_of`` turn what was heard (the identifier readings
``uuid``/``major``/``minor`` or ``namespace``/``instance``, or the beacon's address, which
presence events name) into the ``Place``: the branch or the merchant, with the merchant's
category, for the analytics.

Everything is staged in the caller's transaction and audited (``beacon.add``,
``beacon.remove``, ``merchant.add``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bankiot_core.address import mac_from_str, mac_to_str
from bankiot_core.errors import DecodeError
from cloud import audit
from cloud.fleet.beacon_models import Beacon, Merchant
from cloud.fleet.errors import Conflict, Invalid, NotFound
from cloud.fleet.models import Branch, Device

KINDS = ("ibeacon", "eddystone")
GATEWAY_KINDS = ("gateway", "kiosk")  # the devices whose configuration holds beacons
INACTIVE = ("revoked", "decommissioned")
_CATEGORY = re.compile(r"[0-9]{4}\Z")
_HEX = re.compile(r"[0-9a-f]*\Z")


@dataclass(frozen=True)
class Place:
    """Where a beacon is: ``kind`` ``"branch"`` or ``"merchant"``, its id and name, the
    branch's code or the merchant's category (ISO 18245), and the beacon's id and label."""

    kind: str
    id: int
    name: str
    code: str | None
    category: str | None
    beacon_id: int
    label: str


# ---- identifiers ------------------------------------------------------------------------------


def ibeacon_identifier(uuid: str, major: int, minor: int) -> str:
    """The canonical identifier of an iBeacon; Invalid for a bad UUID, major or minor."""
    try:
        canonical = str(uuidlib.UUID(str(uuid)))
    except ValueError:
        raise Invalid("%r is not a UUID like f7826da6-4fa2-4e98-8024-bc5b71e0893e" % uuid) from None
    for name, value in (("major", major), ("minor", minor)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
            raise Invalid("the iBeacon %s must be from 0 to 65535, got %r" % (name, value))
    return "ibeacon:%s:%d:%d" % (canonical, major, minor)


def _hex(value: str, size: int, what: str) -> str:
    text = str(value).lower()
    if len(text) != 2 * size or not _HEX.match(text):
        raise Invalid("the Eddystone %s must be %d hex digits, got %r" % (what, 2 * size, value))
    return text


def eddystone_identifier(namespace: str, instance: str) -> str:
    """The canonical identifier of an Eddystone UID; Invalid for a bad namespace/instance."""
    return "eddystone:%s:%s" % (
        _hex(namespace, 10, "namespace"),
        _hex(instance, 6, "instance"),
    )


def identifier_of(readings: Mapping[str, Any]) -> str | None:
    """The identifier of what a beacon's frame carried (its readings by metric: ``uuid``,
    ``major``, ``minor`` or ``namespace``, ``instance``), or None if they name no beacon."""
    try:
        if {"uuid", "major", "minor"} <= set(readings):
            return ibeacon_identifier(readings["uuid"], readings["major"], readings["minor"])
        if {"namespace", "instance"} <= set(readings):
            return eddystone_identifier(readings["namespace"], readings["instance"])
    except Invalid:
        return None
    return None


def canonical_address(text: str) -> str:
    """``text`` as ``AA:BB:CC:DD:EE:FF``; Invalid otherwise."""
    try:
        return mac_to_str(mac_from_str(text))
    except DecodeError:
        raise Invalid("%r is not a beacon address like AA:BB:CC:DD:EE:FF" % (text,)) from None


# ---- merchants --------------------------------------------------------------------------------


def add_merchant(
    session: Session, name: str, category: str, *, actor: str, now: dt.datetime
) -> Merchant:
    """A new partner merchant (``category``: four digits, ISO 18245); Conflict if the name
    is taken, Invalid for a bad name or category."""
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("a merchant's name is 1 to 200 characters")
    if not _CATEGORY.match(category):
        raise Invalid("the merchant category %r must be four digits (ISO 18245)" % category)
    if session.scalar(select(Merchant.id).where(Merchant.name == name)) is not None:
        raise Conflict("a merchant named %r exists already" % name)
    merchant = Merchant(name=name, category=category, created_at=now, created_by=actor)
    session.add(merchant)
    _flush(session, "a merchant named %r exists already" % name)
    audit.record(
        session, actor, "merchant.add", "merchant:%d" % merchant.id, name=name, category=category
    )
    return merchant


def list_merchants(session: Session) -> list[Merchant]:
    """Every merchant, by name."""
    return list(session.scalars(select(Merchant).order_by(Merchant.name)))


# ---- beacons ----------------------------------------------------------------------------------


def _flush(session: Session, conflict: str) -> None:
    """Flush; a UNIQUE violation (a racing request) is a Conflict, not a 500."""
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(conflict) from None


def add_beacon(
    session: Session,
    *,
    kind: str,
    branch_id: int | None = None,
    merchant_id: int | None = None,
    uuid: str | None = None,
    major: int | None = None,
    minor: int | None = None,
    namespace: str | None = None,
    instance: str | None = None,
    address: str | None = None,
    label: str = "",
    actor: str,
    now: dt.datetime,
) -> Beacon:
    """Register a beacon at a branch or a merchant (exactly one); a beacon with an address
    at a branch joins the configuration of the branch's gateways. Invalid for bad or
    missing identifiers, NotFound for an unknown place, Conflict when its identifier or
    address is registered already."""
    if (branch_id is None) == (merchant_id is None):
        raise Invalid("a beacon is at a branch or at a merchant: give exactly one")
    if kind == "ibeacon":
        if uuid is None or major is None or minor is None or namespace or instance:
            raise Invalid("an iBeacon is given by uuid, major and minor (only)")
        identifier = ibeacon_identifier(uuid, major, minor)
    elif kind == "eddystone":
        if namespace is None or instance is None or uuid or major is not None or minor is not None:
            raise Invalid("an Eddystone beacon is given by namespace and instance (only)")
        identifier = eddystone_identifier(namespace, instance)
    else:
        raise Invalid("a beacon is %s, not %r" % (" or ".join(KINDS), kind))
    address = canonical_address(address) if address else None
    if branch_id is not None and session.get(Branch, branch_id) is None:
        raise NotFound("no branch %d" % branch_id)
    if merchant_id is not None and session.get(Merchant, merchant_id) is None:
        raise NotFound("no merchant %d" % merchant_id)
    clash = session.scalars(
        select(Beacon).where(
            or_(Beacon.identifier == identifier, Beacon.address == address)
            if address
            else Beacon.identifier == identifier
        )
    ).first()
    if clash is not None:
        what = "%s" % identifier if clash.identifier == identifier else "address %s" % address
        raise Conflict("beacon %d is registered with %s already" % (clash.id, what))
    parts = identifier.split(":")
    beacon = Beacon(
        kind=kind,
        identifier=identifier,
        uuid=parts[1] if kind == "ibeacon" else None,
        major=major if kind == "ibeacon" else None,
        minor=minor if kind == "ibeacon" else None,
        namespace=parts[1] if kind == "eddystone" else None,
        instance=parts[2] if kind == "eddystone" else None,
        address=address,
        branch_id=branch_id,
        merchant_id=merchant_id,
        label=label.strip(),
        created_at=now,
        created_by=actor,
    )
    session.add(beacon)
    _flush(session, "a beacon with %s is registered already" % identifier)
    audit.record(
        session,
        actor,
        "beacon.add",
        _place_target(beacon),
        beacon_id=beacon.id,
        identifier=identifier,
        address=address,
    )
    if branch_id is not None and address is not None:
        sync_branch(session, branch_id, actor=actor, now=now)
    return beacon


def remove_beacon(session: Session, beacon: Beacon, *, actor: str, now: dt.datetime) -> None:
    """Remove ``beacon``; its address leaves the configuration of its branch's gateways."""
    branch_id, address = beacon.branch_id, beacon.address
    audit.record(
        session,
        actor,
        "beacon.remove",
        _place_target(beacon),
        beacon_id=beacon.id,
        identifier=beacon.identifier,
        address=address,
    )
    session.delete(beacon)
    session.flush()
    if branch_id is not None and address is not None:
        sync_branch(session, branch_id, actor=actor, now=now, dropped=(address,))


def _place_target(beacon: Beacon) -> str:
    if beacon.branch_id is not None:
        return "branch:%d" % beacon.branch_id
    return "merchant:%d" % (beacon.merchant_id or 0)


def list_beacons(
    session: Session,
    *,
    visible: Iterable[int] | None,
    branch: int | None = None,
    merchant: int | None = None,
) -> list[Beacon]:
    """The beacons of the branches in ``visible`` (None: every branch, and merchants'
    beacons too), optionally of one branch or one merchant, by id."""
    query = select(Beacon).order_by(Beacon.id)
    if visible is not None:
        query = query.where(Beacon.branch_id.in_(list(visible)))
    if branch is not None:
        query = query.where(Beacon.branch_id == branch)
    if merchant is not None:
        query = query.where(Beacon.merchant_id == merchant)
    return list(session.scalars(query))


def beacon_out(session: Session, beacon: Beacon) -> dict[str, Any]:
    """A beacon as the API shows it (with its place)."""
    place = _place(session, beacon)
    return {
        "id": beacon.id,
        "kind": beacon.kind,
        "identifier": beacon.identifier,
        "uuid": beacon.uuid,
        "major": beacon.major,
        "minor": beacon.minor,
        "namespace": beacon.namespace,
        "instance": beacon.instance,
        "address": beacon.address,
        "branch_id": beacon.branch_id,
        "merchant_id": beacon.merchant_id,
        "place": {"kind": place.kind, "id": place.id, "name": place.name},
        "label": beacon.label,
        "created_at": beacon.created_at,
        "created_by": beacon.created_by,
    }


# ---- what gateways listen for -----------------------------------------------------------------


def branch_addresses(session: Session, branch_id: int) -> list[str]:
    """The addresses of the beacons registered at branch ``branch_id``, sorted."""
    found = session.scalars(
        select(Beacon.address).where(Beacon.branch_id == branch_id, Beacon.address.is_not(None))
    )
    return sorted(address for address in found if address is not None)


def join_addresses(
    settings: Mapping[str, Any], addresses: Iterable[str], dropped: Iterable[str] = ()
) -> dict[str, Any]:
    """``settings`` with ``addresses`` in their ``paired`` list and ``dropped`` out of it
    (entries compared as addresses; the others kept in their order)."""
    out = dict(settings)
    gone = {_same(a) for a in dropped}
    paired = [a for a in out.get("paired", ()) if _same(a) not in gone]
    have = {_same(a) for a in paired}
    paired += [a for a in sorted(set(addresses)) if _same(a) not in have]
    if paired or "paired" in out:
        out["paired"] = paired
    return out


def _same(address: Any) -> Any:
    """An address compared whatever its case or separator (anything else as it is)."""
    try:
        return mac_from_str(address)
    except DecodeError:
        return address


def with_beacons(session: Session, device: Device, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` for ``device``: a gateway's or kiosk's joined with its branch's beacon
    addresses, any other device's as they are."""
    if device.kind not in GATEWAY_KINDS:
        return dict(settings)
    return join_addresses(settings, branch_addresses(session, device.branch_id))


def sync_branch(
    session: Session,
    branch_id: int,
    *,
    actor: str,
    now: dt.datetime,
    dropped: Iterable[str] = (),
) -> None:
    """Give every active gateway and kiosk of branch ``branch_id`` a desired configuration
    with the branch's beacon addresses (and without ``dropped``), a new revision where it
    changes; staged, delivered sealed by ``cloud.fleet.delivery``."""
    from cloud.fleet.configs import set_desired
    from cloud.fleet.control_models import DeviceConfig

    addresses = branch_addresses(session, branch_id)
    devices = session.scalars(
        select(Device)
        .where(
            Device.branch_id == branch_id,
            Device.kind.in_(GATEWAY_KINDS),
            Device.status.not_in(INACTIVE),
        )
        .order_by(Device.id)
    ).all()
    for device in devices:
        row = session.get(DeviceConfig, device.id)
        current = dict(row.settings) if row is not None else {}
        wanted = join_addresses(current, addresses, dropped)
        if wanted != current and wanted:
            set_desired(session, [device], wanted, actor=actor, now=now)


def initial_config(session: Session, device: Device) -> dict[str, Any]:
    """What an enrolling ``device`` starts with: its desired configuration (none for a new
    one) with its branch's beacon addresses (``cloud.identity.runtime.set_initial_config``)."""
    from cloud.fleet.control_models import DeviceConfig

    row = session.get(DeviceConfig, device.id)
    return with_beacons(session, device, dict(row.settings) if row is not None else {})


# ---- meaning ----------------------------------------------------------------------------------


def _place(session: Session, beacon: Beacon) -> Place:
    if beacon.branch_id is not None:
        branch = session.get(Branch, beacon.branch_id)
        assert branch is not None
        return Place("branch", branch.id, branch.name, branch.code, None, beacon.id, beacon.label)
    merchant = session.get(Merchant, beacon.merchant_id)
    assert merchant is not None
    return Place(
        "merchant", merchant.id, merchant.name, None, merchant.category, beacon.id, beacon.label
    )


def find_places(
    session: Session, identifiers: Iterable[str] = (), addresses: Iterable[str] = ()
) -> dict[str, Place]:
    """The place of each registered beacon among ``identifiers`` (canonical, as
    ``identifier_of`` gives them) and ``addresses`` (any case), keyed as given; what is
    not registered is left out. One query for many."""
    wanted_ids = {text for text in identifiers if text}
    by_address: dict[str, str] = {}
    for text in addresses:
        try:
            by_address[canonical_address(text)] = text
        except Invalid:
            continue
    if not wanted_ids and not by_address:
        return {}
    found = session.scalars(
        select(Beacon).where(
            or_(Beacon.identifier.in_(wanted_ids), Beacon.address.in_(list(by_address)))
        )
    ).all()
    out: dict[str, Place] = {}
    for beacon in found:
        place = _place(session, beacon)
        if beacon.identifier in wanted_ids:
            out[beacon.identifier] = place
        if beacon.address is not None and beacon.address in by_address:
            out[by_address[beacon.address]] = place
    return out


def place_of(
    session: Session, readings: Mapping[str, Any] | None = None, address: str | None = None
) -> Place | None:
    """The place a beacon heard means: by the identifier in its ``readings`` (metric ->
    value), else by its ``address``; None for a beacon that is not registered."""
    identifier = identifier_of(readings or {})
    places = find_places(session, [identifier] if identifier else (), [address] if address else ())
    if identifier is not None and identifier in places:
        return places[identifier]
    return places.get(address) if address else None
