"""``bankiot fleet replace`` and ``bankiot fleet decommission``: swapping and retiring gateways.

``replace OLD --by NEW``: the new gateway (enrolled with a claim for the old one's branch)
takes over the old one's configuration; the old identity is revoked. ``bankiot flash
--replaces OLD`` does the same right after enrolling the new board.

``decommission ID [--port PORT]``: the device's identity is revoked and it leaves the
fleet; with ``--port`` the board on that serial port is wiped too (its identity, WiFi
settings and data), after checking that it is that device. Wiping needs pyserial (the
``field`` extra).
"""

from __future__ import annotations

import json

import click

from cloud.fleet.cli import api_client, call
from provisioning.flash_online import replaced_line


@click.command("replace")
@click.argument("old", type=click.IntRange(1))
@click.option("--by", "new", required=True, type=click.IntRange(1), help="The new device (id).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def replace(ctx: click.Context, old: int, new: int, as_json: bool) -> None:
    """Replace device OLD by a new one: configuration taken over, OLD's identity revoked."""
    client = api_client(ctx)
    answer = call(
        lambda: client.request("POST", "/api/fleet/devices/%d/replace" % old, json_body={"by": new})
    )
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(replaced_line(answer))


@click.command("decommission")
@click.argument("device_id", type=click.IntRange(1))
@click.option("--port", help="The board's serial port, to wipe it too (socket://HOST:PORT too).")
@click.option("--note", default="", help="Why (kept in the audit log).")
@click.pass_context
def decommission(ctx: click.Context, device_id: int, port: str | None, note: str) -> None:
    """Decommission a device: identity revoked, open commands cancelled, board wiped (--port)."""
    client = api_client(ctx)
    device = call(lambda: client.get("/api/devices/%d" % device_id))
    board = None
    if port is not None:
        from provisioning.board_wipe import open_board_of
        from provisioning.repl import ReplError

        try:
            board = open_board_of(port, device["uid"])  # refuses another device's board
        except ReplError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        answer = call(
            lambda: client.request(
                "POST", "/api/fleet/devices/%d/decommission" % device_id, json_body={"note": note}
            )
        )
        click.echo(
            "%s decommissioned: %d certificates and %d envelope keys revoked"
            % (
                answer["device"]["uid"],
                len(answer["revoked_serials"]),
                len(answer["revoked_key_versions"]),
            )
        )
        if board is not None:
            from provisioning.board_wipe import wipe
            from provisioning.repl import ReplError

            try:
                click.echo(wipe(board.repl, port or ""))
            except ReplError as exc:
                raise click.ClickException(
                    "keys revoked, but the board was not wiped: %s" % exc
                ) from None
        elif port is not None:
            raise click.ClickException(
                "the board on %s did not answer: its files were not wiped (keys are revoked "
                "all the same)" % port
            )
    finally:
        if board is not None:
            board.repl.close()
