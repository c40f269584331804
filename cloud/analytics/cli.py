"""``bankiot analytics recompute [--customer ID]``: rebuild stored customer profiles, their
life events and everyone's segments from the bank transactions in the cloud's database on
this machine (the settings of ``bankiot cloud``). Imports do this for the customers they
touch; the command is for a new model version, or after a failure the log reported.
"""

from __future__ import annotations

from pathlib import Path

import click

from cloud.cli import config_option, data_dir_option, settings


@click.group()
def analytics() -> None:
    """Customer financial profiles, segments and life events."""


@analytics.command("recompute")
@config_option
@data_dir_option
@click.option(
    "--customer",
    "customers",
    type=click.IntRange(1),
    multiple=True,
    help="Only this customer (repeatable); every customer with accounts by default.",
)
def recompute(config_file: Path | None, data_dir: Path | None, customers: tuple[int, ...]) -> None:
    """Rebuild profiles, life events and segments; one line with what was stored."""
    from cloud.analytics import store
    from cloud.customers.models import Customer
    from cloud.identity.models import utcnow
    from cloud.people.commands import database

    config = settings(config_file, data_dir)
    with database(config) as db:
        missing = [c for c in customers if db.get(Customer, c) is None]
        if missing:
            raise click.ClickException("no customer %s" % ", ".join(map(str, missing)))
        now = utcnow()
        stored = store.recompute(db, customers, now) if customers else store.recompute_all(db, now)
        db.commit()
    click.echo("%d profile%s stored" % (stored, "" if stored == 1 else "s"))
