"""``bankiot fleet beacons add|list|remove`` and ``bankiot fleet merchants add|list``: the
beacons of branches and partner merchants, over the API with the token of
``BANKIOT_TOKEN``, like ``bankiot fleet devices``. Every error is one line."""

from __future__ import annotations

import json
from typing import Any

import click

from cloud.fleet.cli import api_client, call, table

COLUMNS = ("id", "kind", "identifier", "address", "place", "label")


def _row(beacon: dict[str, Any]) -> tuple[str, ...]:
    place = beacon["place"]
    return (
        str(beacon["id"]),
        beacon["kind"],
        beacon["identifier"],
        beacon["address"] or "-",
        "%s %d (%s)" % (place["kind"], place["id"], place["name"]),
        beacon["label"] or "-",
    )


@click.group()
def beacons() -> None:
    """Beacons of branches and partner merchants: add, list, remove."""


@beacons.command("list")
@click.option("--branch", type=click.IntRange(1), help="Only this branch (id).")
@click.option("--merchant", type=click.IntRange(1), help="Only this merchant (id).")
@click.option("--json", "as_json", is_flag=True, help="Print the beacons as a JSON list.")
@click.pass_context
def list_beacons(
    ctx: click.Context, branch: int | None, merchant: int | None, as_json: bool
) -> None:
    """List the beacons of the branches you may see."""
    client = api_client(ctx)
    found = call(
        lambda: client.get("/api/fleet/beacons", {"branch": branch, "merchant": merchant})
    )["beacons"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found:
        click.echo(table([COLUMNS, *(_row(beacon) for beacon in found)]))
    else:
        click.echo("no beacons")


@beacons.command("add")
@click.option("--branch", type=click.IntRange(1), help="The branch it is at (id).")
@click.option("--merchant", type=click.IntRange(1), help="The merchant it is at (id).")
@click.option("--ibeacon", nargs=3, metavar="UUID MAJOR MINOR", help="An iBeacon's identifiers.")
@click.option(
    "--eddystone", nargs=2, metavar="NAMESPACE INSTANCE", help="An Eddystone UID's identifiers."
)
@click.option(
    "--address",
    metavar="AA:BB:CC:DD:EE:FF",
    help="Its fixed radio address: the branch's gateways then listen for it.",
)
@click.option("--label", default="", help='Where it hangs, for people ("entrance").')
@click.option("--json", "as_json", is_flag=True, help="Print the beacon as JSON.")
@click.pass_context
def add_beacon(
    ctx: click.Context,
    branch: int | None,
    merchant: int | None,
    ibeacon: tuple[str, str, str] | None,
    eddystone: tuple[str, str] | None,
    address: str | None,
    label: str,
    as_json: bool,
) -> None:
    """Register a beacon (--ibeacon or --eddystone) at --branch or --merchant."""
    if (branch is None) == (merchant is None):
        raise click.UsageError("give --branch or --merchant (one)")
    if (ibeacon is None) == (eddystone is None):
        raise click.UsageError("give --ibeacon UUID MAJOR MINOR or --eddystone NAMESPACE INSTANCE")
    body: dict[str, Any] = {"label": label}
    body.update({"branch": branch} if branch is not None else {"merchant": merchant})
    if ibeacon is not None:
        uuid, major, minor = ibeacon
        try:
            body.update(kind="ibeacon", uuid=uuid, major=int(major), minor=int(minor))
        except ValueError:
            raise click.UsageError("--ibeacon: MAJOR and MINOR are numbers (0 to 65535)") from None
    elif eddystone is not None:
        body.update(kind="eddystone", namespace=eddystone[0], instance=eddystone[1])
    if address:
        body["address"] = address
    client = api_client(ctx)
    beacon = call(lambda: client.request("POST", "/api/fleet/beacons", json_body=body))
    if as_json:
        click.echo(json.dumps(beacon, indent=2))
        return
    place = beacon["place"]
    click.echo(
        "beacon %d: %s at %s %d (%s)%s"
        % (
            beacon["id"],
            beacon["identifier"],
            place["kind"],
            place["id"],
            place["name"],
            ", its gateways listen for %s" % beacon["address"]
            if beacon["address"] and place["kind"] == "branch"
            else "",
        )
    )


@beacons.command("remove")
@click.argument("beacon_id", metavar="ID", type=click.IntRange(1))
@click.pass_context
def remove_beacon(ctx: click.Context, beacon_id: int) -> None:
    """Remove beacon ID."""
    client = api_client(ctx)
    call(lambda: client.request("DELETE", "/api/fleet/beacons/%d" % beacon_id))
    click.echo("beacon %d removed" % beacon_id)


@click.group()
def merchants() -> None:
    """Partner merchants (their beacons: `fleet beacons add --merchant ID`)."""


@merchants.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the merchants as a JSON list.")
@click.pass_context
def list_merchants(ctx: click.Context, as_json: bool) -> None:
    """List the partner merchants."""
    client = api_client(ctx)
    found = call(lambda: client.get("/api/fleet/merchants"))["merchants"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found:
        rows = [(str(m["id"]), m["name"], m["category"]) for m in found]
        click.echo(table([("id", "name", "category"), *rows]))
    else:
        click.echo("no merchants")


@merchants.command("add")
@click.argument("name")
@click.option(
    "--category", required=True, metavar="MCC", help="Merchant category code (ISO 18245)."
)
@click.pass_context
def add_merchant(ctx: click.Context, name: str, category: str) -> None:
    """Add a partner merchant (cloud operations)."""
    client = api_client(ctx)
    merchant = call(
        lambda: client.request(
            "POST", "/api/fleet/merchants", json_body={"name": name, "category": category}
        )
    )
    click.echo("merchant %d: %s (%s)" % (merchant["id"], merchant["name"], merchant["category"]))
