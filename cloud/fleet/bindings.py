"""Wearables bound to branches: what customers' pairing (issue 9) calls, and what the
gateways of each branch receive as KEYS.

The internal API: ``bind(session, branch_id, address, irk=..., key=..., actor=..., now=...,
cipher=...)`` binds (or re-binds) a wearable to a branch, ``unbind`` removes it; both are
staged in the caller's transaction and audited without any secret (``wearable.bind``,
``wearable.unbind``: the branch, the address, whether an IRK and a key are held). Each
change raises the branch's set version; ``sync`` then gives every gateway of the branch a
new KEYS revision, which ``cloud.fleet.delivery`` seals and sends on the gateway's own
downlink with the same back-off as configuration, until the gateway reports running it (the
``keys_revision`` counter of its latest health record, ``reported_revision``). A gateway
joining a branch, or moving to another, gets the set of its branch the same way.

Secrets at rest: an IRK or a bind key is stored only sealed with AES-256-GCM under a key
derived from the cloud's KEK (``cloud.identity.keys.KeyWrapper.derive``, the key that
already wraps gateways' envelope keys: ``BANKIOT_ENVELOPE_KEK`` or
``DATA_DIR/keys/envelope.kek``), the associated data binding each to its branch, address
and field, so sealed values cannot be moved between rows. They never appear in the audit
log, in API answers, in logs, or in error messages.
"""

from __future__ import annotations

import binascii
import datetime as dt
import logging
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from bankiot_core import downlink
from bankiot_core.address import mac_from_str, mac_to_str
from bankiot_core.errors import DecodeError
from cloud import audit
from cloud.fleet.bindings_models import BindingSet, GatewayKeys, WearableBinding
from cloud.fleet.errors import Conflict, FleetError, Invalid, NotFound
from cloud.fleet.models import Branch, Device
from cloud.identity.keys import KeyWrapper
from cloud.ingest.models import GatewayHealth

log = logging.getLogger(__name__)

PURPOSE = "wearable bindings"
GATEWAY_KINDS = ("gateway", "kiosk")  # the devices that receive KEYS
_NONCE_BYTES = 12


class BindingSecretError(FleetError):
    """A sealed IRK or bind key does not open: the KEK changed, or the row was altered."""

    status = 500


class BindingCipher:
    """Seals and opens the secrets of wearable bindings (module docstring)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the wearable bindings key must be 32 bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "BindingCipher(<hidden>)"

    @classmethod
    def from_wrapper(cls, wrapper: KeyWrapper) -> BindingCipher:
        """The cipher whose key the cloud's KEK derives for this purpose."""
        return cls(wrapper.derive(PURPOSE))

    @staticmethod
    def _aad(branch_id: int, address: str, field: str) -> bytes:
        return b"bankiot wearable binding\x00%d\x00%s\x00%s" % (
            branch_id,
            address.encode(),
            field.encode(),
        )

    def seal(self, branch_id: int, address: str, field: str, secret: bytes) -> bytes:
        """``nonce || ciphertext`` of ``secret``, bound to the branch, address and field."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret, self._aad(branch_id, address, field))

    def open(self, branch_id: int, address: str, field: str, sealed: bytes) -> bytes:
        """The secret ``seal`` sealed; ``BindingSecretError`` if it does not open."""
        try:
            return self._aead.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], self._aad(branch_id, address, field)
            )
        except InvalidTag:
            raise BindingSecretError(
                "the %s of wearable %s at branch %d does not open: wrong KEK, or altered"
                % (field, address, branch_id)
            ) from None


def cipher_from(keys: object) -> BindingCipher | None:
    """The cipher of a key source that holds the KEK (``IdentityKeySource.wrapper``), or
    None (a key source in memory, for tests and demos, holds none)."""
    wrapper = getattr(keys, "wrapper", None)
    return BindingCipher.from_wrapper(wrapper) if isinstance(wrapper, KeyWrapper) else None


# ---- checking what callers give ---------------------------------------------------------------


def parse_address(text: str) -> str:
    """``text`` as the canonical ``AA:BB:CC:DD:EE:FF``; Invalid otherwise."""
    try:
        return mac_to_str(mac_from_str(text))
    except DecodeError:
        raise Invalid("%r is not a wearable address like AA:BB:CC:DD:EE:FF" % (text,)) from None


def parse_secret(value: str | bytes | None, what: str) -> bytes | None:
    """A 16-byte IRK or bind key from bytes or 32 hex digits, or None; Invalid otherwise
    (the message never shows the value)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = binascii.unhexlify(value)
        except (binascii.Error, ValueError):
            raise Invalid("the %s must be 32 hex digits (value not shown)" % what) from None
    if len(value) != 16:
        raise Invalid("the %s must be 16 bytes, 32 hex digits (value not shown)" % what)
    if what == "IRK" and value == bytes(16):
        raise Invalid("the IRK is all zeros, which is no key")
    return bytes(value)


# ---- the internal API ---------------------------------------------------------------------------


def _bump(session: Session, branch_id: int, now: dt.datetime) -> int:
    row = session.get(BindingSet, branch_id, with_for_update=True)
    if row is None:
        row = BindingSet(branch_id=branch_id, version=0, updated_at=now)
        session.add(row)
    row.version += 1
    row.updated_at = now
    return row.version


def bind(
    session: Session,
    branch_id: int,
    address: str,
    *,
    irk: str | bytes | None = None,
    key: str | bytes | None = None,
    actor: str,
    now: dt.datetime,
    cipher: BindingCipher,
) -> WearableBinding:
    """Bind the wearable ``address`` (its identity address) to branch ``branch_id`` with its
    IRK and BTHome bind key (16 bytes or 32 hex digits each, or None), replacing what was
    bound under that address. Staged in the caller's transaction; the branch's gateways get
    the new set on their next delivery pass. A binding that holds these values already
    changes nothing. NotFound for an unknown branch, Invalid for bad values, Conflict when
    the branch holds ``downlink.MAX_BINDINGS`` wearables already."""
    if session.get(Branch, branch_id) is None:
        raise NotFound("no branch %d" % branch_id)
    address = parse_address(address)
    irk_bytes = parse_secret(irk, "IRK")
    key_bytes = parse_secret(key, "bind key")
    row = session.scalar(
        select(WearableBinding)
        .where(WearableBinding.branch_id == branch_id, WearableBinding.address == address)
        .with_for_update()
    )
    if row is None:
        count = len(
            session.scalars(
                select(WearableBinding.id).where(WearableBinding.branch_id == branch_id)
            ).all()
        )
        if count >= downlink.MAX_BINDINGS:
            raise Conflict(
                "branch %d holds %d wearables already, the most a gateway can"
                % (branch_id, downlink.MAX_BINDINGS)
            )
        row = WearableBinding(branch_id=branch_id, address=address, created_at=now)
        session.add(row)
    elif _secrets(cipher, row) == (irk_bytes, key_bytes):
        return row
    row.irk_sealed = (
        None if irk_bytes is None else cipher.seal(branch_id, address, "irk", irk_bytes)
    )
    row.key_sealed = (
        None if key_bytes is None else cipher.seal(branch_id, address, "key", key_bytes)
    )
    row.updated_at = now
    row.updated_by = actor
    version = _bump(session, branch_id, now)
    audit.record(
        session,
        actor,
        "wearable.bind",
        "branch:%d" % branch_id,
        address=address,
        irk=irk_bytes is not None,
        bind_key=key_bytes is not None,
        set_version=version,
    )
    session.flush()
    return row


def unbind(session: Session, branch_id: int, address: str, *, actor: str, now: dt.datetime) -> bool:
    """Remove the wearable ``address`` from branch ``branch_id``'s set (staged); whether it
    was bound. Its gateways get the set without it on their next delivery pass, and stop
    decoding it the moment they apply it."""
    address = parse_address(address)
    result = session.execute(
        delete(WearableBinding).where(
            WearableBinding.branch_id == branch_id, WearableBinding.address == address
        )
    )
    if not getattr(result, "rowcount", 0):
        return False
    version = _bump(session, branch_id, now)
    audit.record(
        session,
        actor,
        "wearable.unbind",
        "branch:%d" % branch_id,
        address=address,
        set_version=version,
    )
    session.flush()
    return True


def _secrets(cipher: BindingCipher, row: WearableBinding) -> tuple[bytes | None, bytes | None]:
    irk = (
        None
        if row.irk_sealed is None
        else cipher.open(row.branch_id, row.address, "irk", row.irk_sealed)
    )
    key = (
        None
        if row.key_sealed is None
        else cipher.open(row.branch_id, row.address, "key", row.key_sealed)
    )
    return irk, key


def binding_out(row: WearableBinding, set_version: int | None = None) -> dict[str, Any]:
    """What may be shown of a binding: never a secret, only whether one is held."""
    return {
        "branch": row.branch_id,
        "address": row.address,
        "irk": row.irk_sealed is not None,
        "bind_key": row.key_sealed is not None,
        "updated_at": row.updated_at,
        "set_version": set_version,
    }


def set_version(session: Session, branch_id: int) -> int:
    """The version of branch ``branch_id``'s set (0: never changed)."""
    row = session.get(BindingSet, branch_id)
    return 0 if row is None else row.version


# ---- what each gateway runs ------------------------------------------------------------------


def sync(session: Session, now: dt.datetime, device_id: int | None = None) -> None:
    """Give each gateway (or only ``device_id``) whose branch's set, or branch, changed since
    its KEYS revision was issued a new revision (staged in the caller's transaction)."""
    query = (
        select(Device, GatewayKeys, BindingSet)
        .outerjoin(GatewayKeys, GatewayKeys.device_id == Device.id)
        .outerjoin(BindingSet, BindingSet.branch_id == Device.branch_id)
        .where(
            Device.kind.in_(GATEWAY_KINDS),
            or_(GatewayKeys.device_id.is_not(None), BindingSet.branch_id.is_not(None)),
        )
    )
    if device_id is not None:
        query = query.where(Device.id == device_id)
    for device, row, branch_set in session.execute(query).all():
        version = 0 if branch_set is None else branch_set.version
        if row is None:
            session.add(
                GatewayKeys(
                    device_id=device.id,
                    revision=1,
                    branch_id=device.branch_id,
                    set_version=version,
                    issued_at=now,
                    send_count=0,
                )
            )
        elif (row.branch_id, row.set_version) != (device.branch_id, version):
            row.revision += 1
            row.branch_id, row.set_version = device.branch_id, version
            row.issued_at = now
            row.send_count = 0
    session.flush()


def reported_revisions(session: Session, uids: list[str]) -> dict[str, int | None]:
    """The KEYS revision each gateway's latest health record reports (``keys_revision``)."""
    if not uids:
        return {}
    out: dict[str, int | None] = {}
    for gateway, counters in session.execute(
        select(GatewayHealth.gateway, GatewayHealth.counters).where(GatewayHealth.gateway.in_(uids))
    ).all():
        value = (counters or {}).get("keys_revision")
        out[gateway] = value if isinstance(value, int) and not isinstance(value, bool) else None
    return out


def messages(session: Session, cipher: BindingCipher, row: GatewayKeys) -> list[bytes]:
    """The KEYS messages (one per page) of ``row``'s revision: the whole set of the branch
    it was issued for, secrets opened with ``cipher`` (``BindingSecretError`` if one does
    not open)."""
    found = session.scalars(
        select(WearableBinding).where(WearableBinding.branch_id == row.branch_id)
    ).all()
    entries = []
    for binding in found:
        irk, key = _secrets(cipher, binding)
        entries.append((mac_from_str(binding.address), irk, key))
    return downlink.encode_keys(row.revision, entries)
