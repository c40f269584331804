"""What gateways report about fleet management in their batches, applied at ingest.

A batch may carry command results (``batch.CommandResult``) and what the gateway runs
(``batch.Running``: software version, configuration revision). ``cloud.ingest.store`` calls
``apply`` in the batch's own transaction, once per new batch (never for a duplicate), so a
report is applied exactly once and together with the batch that carried it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.fleet import commands, configs
from cloud.fleet.models import Device


def apply(
    session: Session,
    gateway: str,
    results: Sequence[dict[str, Any]],
    running: dict[str, Any] | None,
    now: dt.datetime,
) -> None:
    """Apply ``gateway``'s reports (``ingest.records.Rows.results`` and ``.running``). A
    gateway with no device record (keys provisioned outside enrollment) has nothing to
    update."""
    device = session.scalar(select(Device).where(Device.uid == gateway))
    if device is None:
        return
    if results:
        reports = [
            commands.Report(r["command_id"], r["status"], r["detail"], r["at"]) for r in results
        ]
        commands.apply_reports(session, device, reports, now)
    if running is not None:
        configs.apply_running(
            session, device, running["software"], running["config_revision"], running["at"]
        )
