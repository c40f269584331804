"""``bankiot notifications``: the push outbox on the cloud's machine (the settings of
``bankiot cloud``), like ``bankiot offers``.

``retry`` makes given-up notifications due again (``outbox.requeue``: their attempts back to
0; the running pusher takes them within a second), all of them or those created ``--since``
a time, or the ``--id``s named (unless pushed). Audited as ``notification.push.retry``; a
refusal is one line and exit status 1. ``POST /api/notifications/push/retry`` does the same
over the API.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from cloud.cli import config_option, data_dir_option, settings

WHEN = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])


def _plain(out: dict[str, Any]) -> dict[str, Any]:
    """``out`` with its times as ISO 8601 strings."""
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in out.items()}


@click.group()
def notifications() -> None:
    """Push notifications: try again those whose pushes were given up."""


@notifications.command("retry")
@config_option
@data_dir_option
@click.option("--since", type=WHEN, help="Only those created at or after this time (UTC).")
@click.option(
    "--id",
    "ids",
    type=click.IntRange(1),
    multiple=True,
    help="Only this notification (repeatable), given up or still retrying, unless pushed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def retry(
    config_file: Path | None,
    data_dir: Path | None,
    since: dt.datetime | None,
    ids: tuple[int, ...],
    as_json: bool,
) -> None:
    """Push given-up notifications again: their attempts back to 0, due now. A pushed
    notification is never pushed again."""
    from cloud.fleet.errors import FleetError
    from cloud.identity.models import utcnow
    from cloud.notifications.outbox import requeue, requeued_out
    from cloud.people.commands import actor, database

    when = None if since is None else since.replace(tzinfo=dt.UTC)
    with database(settings(config_file, data_dir)) as db:
        try:
            done = requeue(db, actor(), utcnow(), ids=ids, since=when)
        except FleetError as exc:
            db.rollback()
            raise click.ClickException(exc.message) from None
        db.commit()
    out = requeued_out(done)
    if as_json:
        click.echo(json.dumps(_plain(out)))
        return
    which = "named" if ids else "given-up"
    after = "" if when is None else " created since %s" % when.isoformat()
    click.echo("%d %s notification(s)%s due for pushing again" % (out["requeued"], which, after))
    for skipped in out["skipped"]:
        click.echo("  %d not retried: %s" % (skipped["id"], skipped["reason"]))
