"""``bankiot offers``: campaigns on the cloud's machine (the settings of ``bankiot cloud``).

``create``, ``list``, ``show``, ``set`` (change fields, activate, pause, end), ``send`` (an
app or wearable campaign to its audience now: ``cloud.notifications.offers``) and
``decisions`` (the newest decisions with their reasons). Every list can be had as JSON
(``--json``); a refusal is one line and exit status 1.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from cloud.cli import config_option, data_dir_option, settings

WHEN = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A time given on the command line, taken as UTC."""
    return None if value is None else value.replace(tzinfo=dt.UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # SQLite hands back naive UTC times
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _line(out: dict[str, Any]) -> str:
    r = out["results"]
    return "%d  %-24s %-8s %-6s v%d  %s .. %s  shown %d, accepted %d, declined %d" % (
        out["id"],
        out["name"],
        out["status"],
        out["channel"],
        out["version"],
        out["starts_at"].date().isoformat(),
        out["ends_at"].date().isoformat(),
        r["shown"],
        r["accepted"],
        r["declined"],
    )


def _run(config_file: Path | None, data_dir: Path | None, work: Any) -> Any:
    """``work(session)`` on the configured database, committed; refusals as one line."""
    from cloud.fleet.errors import FleetError
    from cloud.people.commands import database

    with database(settings(config_file, data_dir)) as db:
        try:
            out = work(db)
        except FleetError as exc:
            db.rollback()
            raise click.ClickException(exc.message) from None
        db.commit()
        return out


@click.group()
def offers() -> None:
    """Campaigns and offers: create, target, activate, and see what became of them."""


@offers.command("create")
@config_option
@data_dir_option
@click.argument("name")
@click.option("--title", required=True, help="What the screen shows first (40 bytes at most).")
@click.option("--text", default="", help="One or two short sentences (160 bytes at most).")
@click.option(
    "--audience",
    "rule",
    default="true",
    show_default=True,
    help='Who it is for: true, or a JSON rule such as {"attr": "relationship_days", '
    '"op": "ge", "value": 365} (docs/operations.md).',
)
@click.option("--channel", type=click.Choice(["kiosk", "app", "wearable"]), default="kiosk")
@click.option("--cap", "cap_count", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--per-days", "cap_days", type=click.IntRange(1, 365), default=7, show_default=True)
@click.option("--start", "starts_at", type=WHEN, required=True, help="From (UTC).")
@click.option("--end", "ends_at", type=WHEN, required=True, help="Until (UTC, excluded).")
@click.option("--active", is_flag=True, help="Start it now instead of as a draft.")
@click.option("--json", "as_json", is_flag=True, help="Print the campaign as JSON.")
def create(
    config_file: Path | None,
    data_dir: Path | None,
    name: str,
    title: str,
    text: str,
    rule: str,
    channel: str,
    cap_count: int,
    cap_days: int,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    active: bool,
    as_json: bool,
) -> None:
    """Create campaign NAME (a draft unless --active)."""
    from cloud.identity.models import utcnow
    from cloud.offers import campaigns
    from cloud.people.commands import actor

    values = {
        "name": name,
        "title": title,
        "text": text,
        "audience": rule,
        "channel": channel,
        "cap_count": cap_count,
        "cap_days": cap_days,
        "starts_at": _utc(starts_at),
        "ends_at": _utc(ends_at),
        "status": "active" if active else "draft",
    }

    def work(db: Any) -> dict[str, Any]:
        campaign = campaigns.create(db, values, actor(), utcnow())
        return campaigns.campaign_out(db, campaign)

    out = _run(config_file, data_dir, work)
    click.echo(json.dumps(_plain(out)) if as_json else "created " + _line(out))


@offers.command("list")
@config_option
@data_dir_option
@click.option("--status", type=click.Choice(["draft", "active", "paused", "ended"]))
@click.option("--json", "as_json", is_flag=True, help="Print the campaigns as a JSON list.")
def list_campaigns(
    config_file: Path | None, data_dir: Path | None, status: str | None, as_json: bool
) -> None:
    """Campaigns, newest first, with their results."""
    from cloud.offers import campaigns

    def work(db: Any) -> list[dict[str, Any]]:
        return [campaigns.campaign_out(db, c) for c in campaigns.list_campaigns(db, status)]

    found = _run(config_file, data_dir, work)
    if as_json:
        click.echo(json.dumps(_plain(found)))
        return
    for out in found:
        click.echo(_line(out))
    if not found:
        click.echo("no campaigns")


@offers.command("show")
@config_option
@data_dir_option
@click.argument("campaign_id", metavar="ID", type=click.IntRange(1))
def show(config_file: Path | None, data_dir: Path | None, campaign_id: int) -> None:
    """One campaign as JSON, with its results."""
    from cloud.offers import campaigns

    out = _run(
        config_file, data_dir, lambda db: campaigns.campaign_out(db, campaigns.get(db, campaign_id))
    )
    click.echo(json.dumps(_plain(out), indent=2))


@offers.command("set")
@config_option
@data_dir_option
@click.argument("campaign_id", metavar="ID", type=click.IntRange(1))
@click.option("--status", type=click.Choice(["draft", "active", "paused", "ended"]))
@click.option("--title")
@click.option("--text")
@click.option("--audience", "rule", help="A new audience rule (JSON).")
@click.option("--cap", "cap_count", type=click.IntRange(1, 100))
@click.option("--per-days", "cap_days", type=click.IntRange(1, 365))
@click.option("--start", "starts_at", type=WHEN)
@click.option("--end", "ends_at", type=WHEN)
def set_fields(
    config_file: Path | None,
    data_dir: Path | None,
    campaign_id: int,
    **fields: Any,
) -> None:
    """Change campaign ID (activate it, pause it, end it, retarget it)."""
    from cloud.offers import campaigns
    from cloud.people.commands import actor

    changes = {("audience" if k == "rule" else k): v for k, v in fields.items() if v is not None}
    for key in ("starts_at", "ends_at"):
        if key in changes:
            changes[key] = _utc(changes[key])
    if not changes:
        raise click.UsageError("nothing to change: give --status, --title, ...")

    def work(db: Any) -> dict[str, Any]:
        campaign = campaigns.update(db, campaigns.get(db, campaign_id), changes, actor())
        return campaigns.campaign_out(db, campaign)

    click.echo(_line(_run(config_file, data_dir, work)))


@offers.command("send")
@config_option
@data_dir_option
@click.argument("campaign")
@click.option("--json", "as_json", is_flag=True, help="Print what the send did as JSON.")
def send(config_file: Path | None, data_dir: Path | None, campaign: str, as_json: bool) -> None:
    """Send app or wearable CAMPAIGN (its id or name) to its audience now: every active
    customer decided and logged; those it is offered to get it in their inbox, once within
    the campaign's cap window. A page of customers is committed at a time; a send that
    stopped half-way (killed, a database error) is continued by sending again."""
    from cloud.fleet.errors import NotFound
    from cloud.identity.models import utcnow
    from cloud.notifications import offers as inbox_offers
    from cloud.notifications.push import LoggingChannel, push_all
    from cloud.offers.kiosk import find_campaign
    from cloud.people.commands import actor

    channel = LoggingChannel()  # no push service here: logged

    def work(db: Any) -> Any:
        found = find_campaign(db, campaign)
        if found is None:
            raise NotFound("no campaign %r" % campaign)
        return inbox_offers.send(
            db, found.id, actor(), utcnow(), push=lambda notes: push_all(channel, notes)
        )

    done = _run(config_file, data_dir, work)
    out = inbox_offers.send_out(done)
    if as_json:
        click.echo(json.dumps(_plain(out)))
        return
    if out["resumed_after"] is not None:
        click.echo(
            "continuing send %d, stopped after customer %d" % (out["id"], out["resumed_after"])
        )
    click.echo(
        "send %d of campaign %d (v%d): %d customers decided, %d notified, %d without "
        "consent, %d not offered (audience, cap or in the inbox already)"
        % (
            out["id"],
            out["campaign_id"],
            out["campaign_version"],
            out["decided"],
            out["notified"],
            out["no_consent"],
            out["not_offered"],
        )
    )


@offers.command("decisions")
@config_option
@data_dir_option
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as a JSON list.")
def decisions(config_file: Path | None, data_dir: Path | None, limit: int, as_json: bool) -> None:
    """The newest decisions to offer or not, with their reasons."""
    from sqlalchemy import select

    from cloud.offers.decisions import decision_out
    from cloud.offers.models import OfferDecision

    def work(db: Any) -> list[dict[str, Any]]:
        query = select(OfferDecision).order_by(OfferDecision.id.desc()).limit(limit)
        return [decision_out(row) for row in db.scalars(query)]

    found = _run(config_file, data_dir, work)
    if as_json:
        click.echo(json.dumps(_plain(found)))
        return
    for d in found:
        offered = ", ".join("%d" % c for c in d["offered"]) or "nothing"
        click.echo(
            "%s  %s #%d  offered %s" % (d["at"].isoformat(), d["gateway"], d["event_id"], offered)
        )
        for reason in d["reasons"]:
            click.echo("    - %s" % reason)
