"""``bankiot fleet claims``: claim tokens for enrolling (and re-enrolling) gateways.

A token is printed once, when it is made: the cloud keeps only its hash. Hand it to the
technician (``bankiot flash --claim``) or the gateway (``bankiot gateway enroll --claim``).
"""

from __future__ import annotations

import json

import click

from cloud.fleet.cli import api_client, call, table

COLUMNS = ("id", "branch", "kind", "device", "status", "expires", "note")


@click.group()
def claims() -> None:
    """Claim tokens for enrolling gateways and kiosks."""


@claims.command("create")
@click.option("--branch", type=click.IntRange(1), help="The branch the new device joins.")
@click.option(
    "--kind", type=click.Choice(("gateway", "kiosk")), default="gateway", show_default=True
)
@click.option(
    "--device",
    type=click.IntRange(1),
    help="Re-claim this device record (re-provisioning after a factory reset).",
)
@click.option("--expires-in", type=click.IntRange(60), help="Seconds (default: the cloud's).")
@click.option("--note", default="", help="Why (kept with the claim).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def claims_create(
    ctx: click.Context,
    branch: int | None,
    kind: str,
    device: int | None,
    expires_in: int | None,
    note: str,
    as_json: bool,
) -> None:
    """Make a single-use claim token (printed once)."""
    if (branch is None) == (device is None):
        raise click.UsageError("give --branch (a new device) or --device (a re-claim)")
    body: dict[str, object] = {"note": note}
    if expires_in is not None:
        body["expires_in"] = expires_in
    if device is not None:
        path = "/api/identity/devices/%d/claims" % device
    else:
        path, body["branch_id"], body["kind"] = "/api/identity/claims", branch, kind
    client = api_client(ctx)
    answer = call(lambda: client.request("POST", path, json_body=body))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(
        "claim %d for a %s in branch %d, expires %s"
        % (answer["id"], answer["kind"], answer["branch_id"], answer["expires_at"])
    )
    click.echo("token (shown once): %s" % answer["token"])


@claims.command("list")
@click.option("--branch", type=click.IntRange(1), help="Only this branch.")
@click.option("--status", type=click.Choice(("pending", "redeemed", "expired", "cancelled")))
@click.option("--json", "as_json", is_flag=True, help="Print the claims as a JSON list.")
@click.pass_context
def claims_list(ctx: click.Context, branch: int | None, status: str | None, as_json: bool) -> None:
    """Claims of the branches you may see, newest first (never their tokens)."""
    params = {"branch_id": branch, "status": status}
    found = call(lambda: api_client(ctx).get("/api/identity/claims", params))
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("no claims")
    else:
        rows = [
            (
                str(c["id"]),
                str(c["branch_id"]),
                c["kind"],
                str(c["device_id"] or "-"),
                c["status"],
                c["expires_at"],
                c.get("note") or "-",
            )
            for c in found
        ]
        click.echo(table([COLUMNS, *rows]))


@claims.command("cancel")
@click.argument("claim_id", type=click.IntRange(1))
@click.pass_context
def claims_cancel(ctx: click.Context, claim_id: int) -> None:
    """Cancel a pending claim."""
    call(lambda: api_client(ctx).request("DELETE", "/api/identity/claims/%d" % claim_id))
    click.echo("claim %d cancelled" % claim_id)
