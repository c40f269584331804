"""``bankiot fleet``: the fleet inventory for operators, over the API with a bearer token.

The token comes from ``BANKIOT_TOKEN`` (never a flag: it would show in the process list and
shell history), the cloud's address from ``--url`` or ``BANKIOT_URL``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

from cloud.fleet.client import ApiError, FleetClient
from cloud.fleet.models import DEVICE_KINDS
from provisioning.cli import LazyGroup

DEFAULT_URL = "http://127.0.0.1:5000"

# Subcommands that live in their own modules, imported when used (one row each):
# name -> (module, attribute, extra, one-line help).
FLEET_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "release": ("cloud.fleet.release_cli", "release", "cloud", "Signed software releases."),
    "alerts": ("cloud.fleet.alert_cli", "alerts", "cloud", "Fleet alerts: list, acknowledge."),
    "branches": ("cloud.fleet.branch_cli", "branches", "cloud", "Branches: add, list."),
    "claims": ("cloud.fleet.claims_cli", "claims", "cloud", "Claim tokens for enrollment."),
    "command": ("cloud.fleet.control_cli", "command", "cloud", "Commands to gateways."),
    "config": ("cloud.fleet.control_cli", "config", "cloud", "Gateways' configuration."),
    "rollout": ("cloud.fleet.rollout_cli", "rollout", "cloud", "Staged rollouts of releases."),
    "beacons": ("cloud.fleet.beacon_cli", "beacons", "cloud", "Beacons of branches, merchants."),
    "merchants": ("cloud.fleet.beacon_cli", "merchants", "cloud", "Partner merchants."),
    "rejections": (
        "cloud.fleet.rejection_cli",
        "rejections",
        "cloud",
        "Envelopes ingest refused, by gateway and reason.",
    ),
    "replace": ("cloud.fleet.replacement_cli", "replace", "cloud", "Replace a failed gateway."),
    "decommission": (
        "cloud.fleet.replacement_cli",
        "decommission",
        "cloud",
        "Decommission a device (and wipe its board).",
    ),
}
COLUMNS = ("id", "uid", "kind", "branch", "status", "firmware", "last seen", "queue")


@click.group(cls=LazyGroup, lazy=FLEET_COMMANDS)
@click.option(
    "--url",
    envvar="BANKIOT_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The cloud's address (or BANKIOT_URL).",
)
@click.pass_context
def fleet(ctx: click.Context, url: str) -> None:
    """Fleet management for operators (the API token comes from BANKIOT_TOKEN)."""
    ctx.obj = url


def api_client(ctx: click.Context) -> FleetClient:
    """The API client of ``bankiot fleet`` (its ``--url``, the token from BANKIOT_TOKEN)."""
    try:
        return FleetClient(ctx.obj, os.environ.get("BANKIOT_TOKEN", ""))
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None


def _row(device: dict[str, Any]) -> tuple[str, ...]:
    health = device["health"] or {}
    depth = health.get("queue_depth")
    return (
        str(device["id"]),
        device["uid"],
        device["kind"],
        device["branch_code"],
        device["status"],
        device["firmware_version"] or "-",
        device["last_seen_at"] or "never",
        "-" if depth is None else str(depth),
    )


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows (the first one the header) as aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def call(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``action(*args, **kwargs)``, an API error turned into a one-line CLI error."""
    try:
        return action(*args, **kwargs)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None


@fleet.command()
@click.option("--branch", type=click.IntRange(1), help="Only this branch (id).")
@click.option("--kind", type=click.Choice(DEVICE_KINDS), help="Only this kind.")
@click.option("--status", help="Only this status.")
@click.option("--search", "q", help="A substring of the uid or name.")
@click.option("--json", "as_json", is_flag=True, help="Print the devices as a JSON list.")
@click.pass_context
def devices(
    ctx: click.Context,
    branch: int | None,
    kind: str | None,
    status: str | None,
    q: str | None,
    as_json: bool,
) -> None:
    """List the devices of the branches you may see."""
    found = call(
        lambda: list(api_client(ctx).devices(branch=branch, kind=kind, status=status, q=q))
    )
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found:
        click.echo(table([COLUMNS, *(_row(device) for device in found)]))
    else:
        click.echo("no devices")


@fleet.command()
@click.argument("device_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.pass_context
def show(ctx: click.Context, device_id: int, as_json: bool) -> None:
    """One device: its record, configuration, open alerts and latest commands."""
    client = api_client(ctx)
    device = call(lambda: client.get("/api/devices/%d" % device_id))
    out: dict[str, Any] = {"device": device, "config": None, "commands": []}
    if device["kind"] in ("gateway", "kiosk"):
        out["config"] = call(lambda: client.get("/api/fleet/devices/%d/config" % device_id))
        listed = call(lambda: client.get("/api/fleet/commands", {"device": device_id, "limit": 5}))
        out["commands"] = listed["commands"]
    out["alerts"] = call(
        lambda: list(client.pages("/api/fleet/alerts", "alerts", device=device_id))
    )
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(
        "%s %s (id %d) in branch %d: %s, firmware %s, last seen %s"
        % (
            device["kind"],
            device["uid"],
            device["id"],
            device["branch_id"],
            device["status"],
            device["firmware_version"] or "-",
            device["last_seen_at"] or "never",
        )
    )
    config = out["config"]
    if config is not None:
        click.echo(
            "configuration: desired revision %s, reported %s%s"
            % (
                config["revision"],
                config["reported_revision"],
                "" if config["in_sync"] else " (not in sync)",
            )
        )
    for alert in out["alerts"]:
        click.echo(
            "alert %d: %s %s since %s"
            % (alert["id"], alert["severity"], alert["kind"], alert["opened_at"])
        )
    for command in out["commands"]:
        click.echo("command %d: %s %s" % (command["id"], command["name"], command["status"]))
