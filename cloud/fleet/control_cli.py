"""``bankiot fleet config`` and ``bankiot fleet command``: device shadows and commands.

Both talk to the API with the operator's token (``cloud.fleet.cli``). A target is one
device (``--device``, repeatable: a cohort) or a branch (``--branch``), as in the API.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from cloud.fleet.cli import api_client, call, table
from cloud.fleet.client import FleetClient

FINAL = ("done", "failed", "refused", "timed_out", "cancelled")
COMMAND_COLUMNS = ("id", "device", "name", "status", "sent", "detail")


def target_of(devices: tuple[int, ...], branch: int | None, kind: str | None) -> dict[str, Any]:
    """The API's target fields from ``--device``/``--branch``/``--kind``."""
    if bool(devices) == (branch is not None):
        raise click.UsageError("give --device (one or more) or --branch")
    target: dict[str, Any] = {"devices": list(devices)} if devices else {"branch": branch}
    if kind:
        target["kind"] = kind
    return target


def _command_row(command: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(command["id"]),
        str(command["device_id"]),
        command["name"],
        command["status"],
        str(command["send_count"]),
        command["detail"] or "-",
    )


def _commands_table(commands: list[dict[str, Any]]) -> str:
    if not commands:
        return "no commands"
    return table([COMMAND_COLUMNS, *(_command_row(c) for c in commands)])


target_options = [
    click.option("--device", "devices", type=click.IntRange(1), multiple=True, help="Device id."),
    click.option("--branch", type=click.IntRange(1), help="Every gateway and kiosk of a branch."),
    click.option("--kind", type=click.Choice(("gateway", "kiosk")), help="Only this kind."),
]


def with_target(function: Any) -> Any:
    """Add the target options (``--device``, ``--branch``, ``--kind``) to a command."""
    for option in reversed(target_options):
        function = option(function)
    return function


# ---- config --------------------------------------------------------------------------------


@click.group()
def config() -> None:
    """Desired and reported configuration of gateways and kiosks."""


@config.command("show")
@click.argument("device", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def config_show(ctx: click.Context, device: int, as_json: bool) -> None:
    """A device's desired configuration and what it reports running."""
    answer = call(lambda: api_client(ctx).get("/api/fleet/devices/%d/config" % device))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    state = "in sync" if answer["in_sync"] else "not in sync"
    click.echo(
        "device %d: desired revision %s, reported %s (%s)"
        % (device, answer["revision"], answer["reported_revision"], state)
    )
    click.echo(json.dumps(answer["settings"], indent=2, sort_keys=True))


def _read_settings(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        settings = json.loads(text)
    except OSError as exc:
        raise click.ClickException("cannot read %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise click.ClickException("%s is not JSON: %s" % (path, exc)) from None
    if not isinstance(settings, dict):
        raise click.ClickException("%s must hold a JSON object of settings" % path)
    return settings


@config.command("set")
@click.argument("settings_file", metavar="SETTINGS.json")
@with_target
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def config_set(
    ctx: click.Context,
    settings_file: str,
    devices: tuple[int, ...],
    branch: int | None,
    kind: str | None,
    as_json: bool,
) -> None:
    """Set the whole desired configuration (a JSON file, - for stdin) of devices or a branch."""
    settings = _read_settings(settings_file)
    target = target_of(devices, branch, kind)
    client = api_client(ctx)
    answer = call(
        lambda: client.request(
            "PUT", "/api/fleet/config", json_body={**target, "settings": settings}
        )
    )
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    for item in answer["configs"]:
        click.echo("device %d: revision %d" % (item["device_id"], item["revision"]))


# ---- command -------------------------------------------------------------------------------


@click.group()
def command() -> None:
    """Commands to gateways and kiosks, with their acknowledgements."""


def _wait(client: FleetClient, group_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        group = call(lambda: client.get("/api/fleet/command-groups/%d" % group_id))
        if all(c["status"] in FINAL for c in group["commands"]) or time.monotonic() > deadline:
            return group
        time.sleep(1.0)


@command.command("send")
@click.argument("name")
@with_target
@click.option("--timeout", type=click.IntRange(1), default=600, show_default=True, help="Seconds.")
@click.option("--wait", is_flag=True, help="Wait until every device answered or timed out.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def command_send(
    ctx: click.Context,
    name: str,
    devices: tuple[int, ...],
    branch: int | None,
    kind: str | None,
    timeout: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Send command NAME (reboot, rescan, collect_diagnostics, rotate_key, factory_reset)."""
    target = target_of(devices, branch, kind)
    client = api_client(ctx)
    body = {**target, "name": name, "timeout_s": timeout}
    group = call(lambda: client.request("POST", "/api/fleet/commands", json_body=body))
    if wait:
        group = _wait(client, group["id"], timeout + 5)
    if as_json:
        click.echo(json.dumps(group, indent=2))
        return
    counts = ", ".join("%d %s" % (n, s) for s, n in sorted(group["counts"].items()))
    click.echo("command group %d: %s (%s)" % (group["id"], name, counts))
    click.echo(_commands_table(group["commands"]))
    if wait and any(c["status"] != "done" for c in group["commands"]):
        ctx.exit(1)


@command.command("list")
@click.option("--device", type=click.IntRange(1), help="Only this device.")
@click.option("--group", type=click.IntRange(1), help="Only this command group.")
@click.option("--status", type=click.Choice(("pending", "sent", "accepted", *FINAL)))
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the commands as a JSON list.")
@click.pass_context
def command_list(
    ctx: click.Context,
    device: int | None,
    group: int | None,
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest commands of the branches you may see."""
    params = {"device": device, "group": group, "status": status, "limit": limit}
    answer = call(lambda: api_client(ctx).get("/api/fleet/commands", params))
    if as_json:
        click.echo(json.dumps(answer["commands"], indent=2))
    else:
        click.echo(_commands_table(answer["commands"]))


@command.command("cancel")
@click.argument("command_id", type=click.IntRange(1))
@click.pass_context
def command_cancel(ctx: click.Context, command_id: int) -> None:
    """Cancel a command that is still open."""
    path = "/api/fleet/commands/%d/cancel" % command_id
    answer = call(lambda: api_client(ctx).request("POST", path))
    click.echo("command %d: %s" % (answer["id"], answer["status"]))
