"""``bankiot fleet``: the fleet inventory for operators, over the API with a bearer token.

The token comes from ``BANKIOT_TOKEN`` (never a flag: it would show in the process list and
shell history), the cloud's address from ``--url`` or ``BANKIOT_URL``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from cloud.fleet.client import ApiError, FleetClient
from cloud.fleet.models import DEVICE_KINDS

DEFAULT_URL = "http://127.0.0.1:5000"
COLUMNS = ("id", "uid", "kind", "branch", "status", "firmware", "last seen", "queue")


@click.group()
@click.option(
    "--url",
    envvar="BANKIOT_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The cloud's address (or BANKIOT_URL).",
)
@click.pass_context
def fleet(ctx: click.Context, url: str) -> None:
    """Fleet inventory (the API token comes from BANKIOT_TOKEN)."""
    ctx.obj = url


def _client(ctx: click.Context) -> FleetClient:
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


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


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
    try:
        found = list(_client(ctx).devices(branch=branch, kind=kind, status=status, q=q))
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found:
        click.echo(_table([COLUMNS, *(_row(device) for device in found)]))
    else:
        click.echo("no devices")
