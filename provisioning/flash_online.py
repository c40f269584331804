"""After ``bankiot flash`` resets the board: wait until the cloud sees it, then report.

"Online" is the cloud's word, not the board's: the device's ``last_seen_at`` in the fleet
inventory (``GET /api/fleet/devices``), which ingest sets when it commits a batch from the
device, has moved past what it was before the reset. Meanwhile everything the board prints
on its REPL is kept, so that a board that does not come online is reported with what it
said (``not provisioned: ...``, a crash, a WiFi error).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloud.fleet.client import ApiError, FleetClient

if TYPE_CHECKING:  # pyserial is the field extra: `bankiot fleet replace` runs without it
    from provisioning.repl import RawRepl

POLL_S = 1.0


class NotOnline(Exception):
    """The board did not come online in time; the message has what it printed."""


@dataclass(frozen=True)
class Online:
    """What the cloud knows of the device once it is online."""

    device_id: int
    uid: str
    branch: str
    firmware: str
    uplink: str
    last_seen_at: str

    def report(self) -> str:
        """The short report a technician reads."""
        return "device %s (id %d) online in branch %s: firmware %s, uplink %s, seen %s" % (
            self.uid,
            self.device_id,
            self.branch,
            self.firmware or "-",
            self.uplink or "-",
            self.last_seen_at,
        )


def inventory_entry(client: FleetClient, device_id: int, uid: str) -> dict[str, Any] | None:
    """The device's row of the fleet inventory (None if the caller cannot see it)."""
    for device in client.pages("/api/fleet/devices", "devices", q=uid):
        if device["id"] == device_id:
            return device
    return None


def board_said(output: bytes, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines the board printed, joined with `` | ``."""
    text = output.decode(errors="replace").replace("\r", "")
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) if kept else "nothing"


def wait_online(
    client: FleetClient,
    repl: RawRepl,
    device_id: int,
    uid: str,
    seen_before: str | None,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> Online:
    """Poll the inventory until the device's ``last_seen_at`` is not ``seen_before``,
    reading the board's output meanwhile; ``NotOnline`` after ``timeout_s``."""
    deadline = clock() + timeout_s
    output = b""
    while True:
        output += repl.read_output(0)
        try:
            entry = inventory_entry(client, device_id, uid)
        except ApiError as exc:
            raise NotOnline("cannot ask the cloud whether %s is online: %s" % (uid, exc)) from None
        if entry is not None and entry["last_seen_at"] and entry["last_seen_at"] != seen_before:
            return Online(
                entry["id"],
                entry["uid"],
                entry["branch_code"],
                entry["firmware_version"],
                entry.get("uplink") or "",
                entry["last_seen_at"],
            )
        if clock() >= deadline:
            raise NotOnline(
                "%s was not online within %.0f s; the board printed: %s"
                % (uid, timeout_s, board_said(output))
            )
        output += repl.read_output(POLL_S)


def replaced_line(answer: dict[str, Any]) -> str:
    """One line saying what a replacement (``POST .../replace``) did."""
    revision = answer["config_revision"]
    return "%s replaces %s in branch %d: %s; %s revoked (%d certificates)" % (
        answer["new"]["uid"],
        answer["old"]["uid"],
        answer["old"]["branch_id"],
        "configuration taken over (revision %d)" % revision
        if revision is not None
        else "the old one had no configuration to take over",
        answer["old"]["uid"],
        len(answer["revoked_serials"]),
    )
