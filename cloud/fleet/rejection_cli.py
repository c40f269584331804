"""``bankiot fleet rejections``: envelopes the cloud refused, per sending gateway and reason,
most first (``GET /api/ingest/rejections``; cloud operations). Over the API with the token of
``BANKIOT_TOKEN``, like ``bankiot fleet alerts``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from cloud.fleet.cli import api_client, call, table
from cloud.fleet.client import PAGE
from cloud.ingest.stats import REASONS

COLUMNS = ("gateway", "reason", "count", "hours", "first seen", "last seen")
WHEN = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])


def _row(rejection: dict[str, Any]) -> tuple[str, ...]:
    return (
        rejection["gateway"],
        rejection["reason"],
        str(rejection["count"]),
        str(rejection["hours"]),
        rejection["first_seen"],
        rejection["last_seen"],
    )


@click.command()
@click.option(
    "--since", type=WHEN, help="From this time's hour on (UTC); default: the last 24 hours."
)
@click.option("--gateway", help="Only this gateway's uid, or `unknown`.")
@click.option("--reason", type=click.Choice(REASONS), help="Only this reason.")
@click.option(
    "--limit",
    type=click.IntRange(1, PAGE),
    default=100,
    show_default=True,
    help="The largest (gateway, reason) sums to list.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the API's answer (since, rejections, truncated)."
)
@click.pass_context
def rejections(
    ctx: click.Context,
    since: dt.datetime | None,
    gateway: str | None,
    reason: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Envelopes ingest refused, per sending gateway and reason, most first (cloud
    operations)."""
    params = {
        "since": None if since is None else since.replace(tzinfo=dt.UTC).isoformat(),
        "gateway": gateway,
        "reason": reason,
        "limit": limit,
    }
    found = call(lambda: api_client(ctx).get("/api/ingest/rejections", params))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    listed = found["rejections"]
    if not listed:
        click.echo("no rejections since %s" % found["since"])
        return
    click.echo(table([COLUMNS, *(_row(r) for r in listed)]))
    if found["truncated"]:
        click.echo("(more: only the %d largest; narrow with --gateway or --reason)" % limit)
