"""``bankiot fleet alerts``: list the alerts of the branches you may see (open by default),
and ``bankiot fleet alerts ack ID`` to acknowledge one. Over the API with the token of
``BANKIOT_TOKEN``, like ``bankiot fleet devices``."""

from __future__ import annotations

import json
from typing import Any

import click

from cloud.fleet.alert_rules import KINDS
from cloud.fleet.cli import api_client, table
from cloud.fleet.client import ApiError

COLUMNS = ("id", "state", "severity", "kind", "device", "branch", "opened", "acknowledged by")


def _row(alert: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(alert["id"]),
        alert["state"],
        alert["severity"],
        alert["kind"],
        alert["device_uid"],
        alert["branch_code"],
        alert["opened_at"],
        alert["acknowledged_by"] or "-",
    )


@click.group(invoke_without_command=True)
@click.option(
    "--state",
    type=click.Choice(("open", "resolved", "all")),
    default="open",
    show_default=True,
    help="Which alerts to list.",
)
@click.option("--kind", type=click.Choice(tuple(KINDS)), help="Only this kind.")
@click.option("--branch", type=click.IntRange(1), help="Only this branch (id).")
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as a JSON list.")
@click.pass_context
def alerts(
    ctx: click.Context, state: str, kind: str | None, branch: int | None, as_json: bool
) -> None:
    """List alerts of the branches you may see; `alerts ack ID` acknowledges one."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        found = list(
            api_client(ctx).pages(
                "/api/fleet/alerts", "alerts", state=state, kind=kind, branch=branch
            )
        )
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found:
        click.echo(table([COLUMNS, *(_row(alert) for alert in found)]))
    else:
        click.echo("no %s alerts" % state if state != "all" else "no alerts")


@alerts.command()
@click.argument("alert_id", metavar="ID", type=click.IntRange(1))
@click.pass_context
def ack(ctx: click.Context, alert_id: int) -> None:
    """Acknowledge alert ID (branch managers and cloud operations)."""
    try:
        alert = api_client(ctx).request("POST", "/api/fleet/alerts/%d/ack" % alert_id)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        "alert %d (%s on %s) acknowledged by %s at %s"
        % (
            alert["id"],
            alert["kind"],
            alert["device_uid"],
            alert["acknowledged_by"],
            alert["acknowledged_at"],
        )
    )
