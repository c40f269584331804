"""Desired and reported configuration (a device shadow): set, deliver, reconcile.

The desired configuration is the whole of a gateway's settings (``gatewayconfig``: the
filter settings plus the gateway's own), checked with the same core function the gateway
runs, so the cloud refuses at once what a gateway would refuse. Each change gets the next
revision; setting the same settings again is no change (no new revision, nothing resent).
The gateway reports the revision it runs in its uplink (``batch.Running``); the two are in
sync when the reported revision is the desired one. Delivery is ``cloud.fleet.delivery``'s.

Settings may hold secrets (IRKs of customers' wearables): the audit log records which keys
changed, never values.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from bankiot_core import downlink
from bankiot_core.errors import ConfigError
from bankiot_core.gatewayconfig import load_gateway_config
from cloud import audit
from cloud.fleet.control_models import DeviceConfig
from cloud.fleet.errors import Invalid
from cloud.fleet.models import Device
from cloud.identity.models import utc

MAX_SETTINGS_BYTES = 4096  # what one CONFIG message carries (``downlink``)


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as a plain dict if a gateway would accept them; Invalid (one line, the
    key named, secret values not echoed) otherwise."""
    plain = dict(settings)
    if not plain:
        raise Invalid("settings must not be empty: give the whole configuration")
    if len(json.dumps(plain, separators=(",", ":"))) > MAX_SETTINGS_BYTES:
        raise Invalid("settings too large: at most %d bytes" % MAX_SETTINGS_BYTES)
    try:
        load_gateway_config(plain)
        downlink.encode_config(1, plain)  # what the wire can carry, as the gateway reads it
    except ConfigError as exc:
        raise Invalid("settings refused: %s" % exc.message) from None
    return plain


def set_desired(
    session: Session,
    devices: Sequence[Device],
    settings: Mapping[str, Any],
    *,
    actor: str,
    now: dt.datetime,
) -> list[DeviceConfig]:
    """Make ``settings`` (checked) the desired configuration of each device, joined with the
    addresses of its branch's beacons (``beacons.with_beacons``); a device whose desired
    settings are already these keeps its revision. Staged in the caller's
    transaction; returns the rows in ``devices`` order."""
    from cloud.fleet.beacons import with_beacons  # beacons set configurations too

    checked = check_settings(settings)
    rows = []
    for device in devices:
        plain = with_beacons(session, device, checked)  # the branch's beacons stay paired
        if plain != checked:
            check_settings(plain)  # still within what one CONFIG message carries
        row = session.get(DeviceConfig, device.id, with_for_update=True)
        if row is None:
            row = DeviceConfig(device_id=device.id, revision=0, settings={}, send_count=0)
            session.add(row)
        elif row.settings == plain:
            rows.append(row)
            continue
        changed = sorted((set(row.settings) ^ set(plain)) | _differing(row.settings, plain))
        row.revision += 1
        row.settings = plain
        row.updated_at = now
        row.updated_by = actor
        row.send_count = 0
        audit.record(
            session,
            actor,
            "config.set",
            "device:%d" % device.id,
            revision=row.revision,
            keys=changed,
        )
        rows.append(row)
    session.flush()
    return rows


def _differing(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    return {key for key in set(before) & set(after) if before[key] != after[key]}


def apply_running(
    session: Session, device: Device, software: str, config_revision: int | None, at: dt.datetime
) -> None:
    """Record what ``device`` reports running (in the ingest transaction): its software
    version, and the configuration revision it applied. A report older than the one on
    record changes nothing (batches may arrive out of order)."""
    row = session.get(DeviceConfig, device.id)
    fresher = row is not None and (row.reported_at is None or utc(row.reported_at) <= at)
    if row is not None and config_revision is not None and fresher:
        row.reported_revision = config_revision
        row.reported_at = at
    if software and software != device.firmware_version:
        device.firmware_version = software


def config_out(device: Device, row: DeviceConfig | None) -> dict[str, Any]:
    """A device's configuration as the API shows it."""

    def when(moment: dt.datetime | None) -> dt.datetime | None:
        return None if moment is None else utc(moment)

    if row is None:
        return {
            "device_id": device.id,
            "revision": None,
            "settings": {},
            "updated_at": None,
            "updated_by": None,
            "sent_revision": None,
            "sent_at": None,
            "reported_revision": None,
            "reported_at": None,
            "in_sync": True,
        }
    return {
        "device_id": device.id,
        "revision": row.revision,
        "settings": row.settings,
        "updated_at": when(row.updated_at),
        "updated_by": row.updated_by,
        "sent_revision": row.sent_revision,
        "sent_at": when(row.sent_at),
        "reported_revision": row.reported_revision,
        "reported_at": when(row.reported_at),
        "in_sync": row.reported_revision == row.revision,
    }


def configs_of(session: Session, devices: Iterable[Device]) -> list[dict[str, Any]]:
    """``config_out`` for each device."""
    return [config_out(d, session.get(DeviceConfig, d.id)) for d in devices]
