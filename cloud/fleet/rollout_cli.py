"""``bankiot fleet rollout``: staged rollouts of a release (start, list, show, steer)."""

from __future__ import annotations

import json
from typing import Any

import click

from cloud.fleet.cli import api_client, call, table
from cloud.fleet.control_cli import target_of, with_target

LIST_COLUMNS = ("id", "release", "version", "state", "counts", "reason")
MEMBER_COLUMNS = ("device", "wave", "state", "from", "detail")


def _counts(rollout: dict[str, Any]) -> str:
    return ", ".join("%d %s" % (n, s) for s, n in sorted(rollout["counts"].items()))


def _summary(rollout: dict[str, Any]) -> str:
    return "rollout %d of %s %s: %s (%s)%s" % (
        rollout["id"],
        rollout["board"],
        rollout["version"],
        rollout["state"],
        _counts(rollout),
        " - " + rollout["reason"] if rollout["reason"] else "",
    )


def _waves(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter("a list of percentages like 5,25,50,100") from None


@click.group()
def rollout() -> None:
    """Staged rollouts of signed releases."""


@rollout.command("start")
@click.option("--release", "release_id", type=click.IntRange(1), required=True, help="Release id.")
@with_target
@click.option("--waves", help="Cumulative percentages, canary first (default 5,25,50,100).")
@click.option("--health-minutes", type=click.IntRange(1), help="Time to come back healthy.")
@click.option("--failure-percent", type=click.IntRange(0, 100), help="Halt past this.")
@click.option("--max-starts-per-minute", type=click.IntRange(1), help="Start rate.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def rollout_start(
    ctx: click.Context,
    release_id: int,
    devices: tuple[int, ...],
    branch: int | None,
    kind: str | None,
    waves: str | None,
    health_minutes: int | None,
    failure_percent: int | None,
    max_starts_per_minute: int | None,
    as_json: bool,
) -> None:
    """Start rolling out a ready release to a branch or to devices."""
    body: dict[str, Any] = {"release_id": release_id, **target_of(devices, branch, kind)}
    for name, value in (
        ("waves", _waves(waves)),
        ("health_minutes", health_minutes),
        ("failure_percent", failure_percent),
        ("max_starts_per_minute", max_starts_per_minute),
    ):
        if value is not None:
            body[name] = value
    client = api_client(ctx)
    answer = call(lambda: client.request("POST", "/api/fleet/rollouts", json_body=body))
    click.echo(json.dumps(answer, indent=2) if as_json else _summary(answer))


@rollout.command("list")
@click.option("--state", type=click.Choice(("running", "halted", "completed", "cancelled")))
@click.option("--json", "as_json", is_flag=True, help="Print the rollouts as a JSON list.")
@click.pass_context
def rollout_list(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """Rollouts, newest first."""
    answer = call(lambda: api_client(ctx).get("/api/fleet/rollouts", {"state": state}))
    found = answer["rollouts"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("no rollouts")
    else:
        rows = [
            (
                str(r["id"]),
                str(r["release_id"]),
                r["version"],
                r["state"],
                _counts(r),
                r["reason"] or "-",
            )
            for r in found
        ]
        click.echo(table([LIST_COLUMNS, *rows]))


@rollout.command("show")
@click.argument("rollout_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def rollout_show(ctx: click.Context, rollout_id: int, as_json: bool) -> None:
    """A rollout and each device's part in it."""
    answer = call(lambda: api_client(ctx).get("/api/fleet/rollouts/%d" % rollout_id))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(_summary(answer))
    rows = [
        (
            str(m["device_id"]),
            str(m["wave"]),
            m["state"],
            m["from_version"] or "-",
            m["detail"] or "-",
        )
        for m in answer["members"]
    ]
    click.echo(table([MEMBER_COLUMNS, *rows]))


def _steer(action: str) -> click.Command:
    @click.argument("rollout_id", type=click.IntRange(1))
    @click.pass_context
    def steer(ctx: click.Context, rollout_id: int) -> None:
        path = "/api/fleet/rollouts/%d/%s" % (rollout_id, action)
        answer = call(lambda: api_client(ctx).request("POST", path))
        click.echo(_summary(answer))

    steer.__doc__ = {
        "halt": "Halt a running rollout (updates under way finish).",
        "resume": "Resume a halted rollout (its failures so far are forgiven).",
        "cancel": "Cancel a rollout.",
    }[action]
    return rollout.command(action)(steer)


for _action in ("halt", "resume", "cancel"):
    _steer(_action)
