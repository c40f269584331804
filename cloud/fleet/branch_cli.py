"""``bankiot fleet branches``: the bank's branches, over the API with a bearer token.

Adding a branch is for cloud operations (``POST /api/branches`` answers 403 to the other
roles); listing shows the branches the token's operator may see. Other commands take a
branch by its id (``--branch ID``), which these print beside the code.
"""

from __future__ import annotations

import json

import click

from cloud.fleet.cli import api_client, call, table

COLUMNS = ("id", "code", "name", "created")


@click.group()
def branches() -> None:
    """Branches: add one (cloud operations), list those you may see."""


@branches.command("create")
@click.argument("code")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def branches_create(ctx: click.Context, code: str, name: str, as_json: bool) -> None:
    """Add the branch CODE (letters, digits, - and _) called NAME."""
    client = api_client(ctx)
    body = {"code": code, "name": name}
    answer = call(lambda: client.request("POST", "/api/branches", json_body=body))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        click.echo("branch %s (id %d): %s" % (answer["code"], answer["id"], answer["name"]))


@branches.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the branches as a JSON list.")
@click.pass_context
def branches_list(ctx: click.Context, as_json: bool) -> None:
    """The branches you may see, by code."""
    found = call(lambda: api_client(ctx).get("/api/branches"))["branches"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("no branches")
    else:
        rows = [(str(b["id"]), b["code"], b["name"], b["created_at"]) for b in found]
        click.echo(table([COLUMNS, *rows]))
