"""``bankiot fleet release``: upload signed release bundles, list, show and retire releases.

A bundle is what ``bankiot firmware sign`` made (``files/``, ``manifest.json``,
``manifest.sig``): ``upload`` sends the manifest and signature, then only the files the
cloud says it is missing (a file already stored for another release is not sent again).
The cloud checks everything itself; the bundle is read as it is, not re-signed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cloud.fleet.cli import api_client, call, table
from provisioning.release_signing import FILES_DIR, MANIFEST_NAME, SIGNATURE_NAME

COLUMNS = ("id", "board", "version", "status", "files", "bytes", "missing", "created")


@click.group()
def release() -> None:
    """Signed software releases: upload, list, show, retire."""


def _read_bundle(bundle: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The upload body, and the file for each device path the manifest lists."""
    try:
        manifest = (bundle / MANIFEST_NAME).read_text(encoding="ascii")
        sig = json.loads((bundle / SIGNATURE_NAME).read_text())
    except FileNotFoundError as exc:
        raise click.ClickException(
            "%s is not a signed bundle: %s is missing (bankiot firmware sign)"
            % (bundle, Path(exc.filename).name)
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise click.ClickException(
            "%s: manifest.json or manifest.sig is unreadable" % bundle
        ) from None
    if not isinstance(sig, dict) or not {"key_id", "signature"} <= set(sig):
        raise click.ClickException("%s: manifest.sig has no key_id and signature" % bundle)
    try:
        paths = [entry["path"] for entry in json.loads(manifest)["files"]]
    except (ValueError, KeyError, TypeError):
        raise click.ClickException("%s: manifest.json lists no files" % bundle) from None
    body = {"manifest": manifest, "signature": sig["signature"], "key_id": sig["key_id"]}
    return body, {path: bundle / FILES_DIR / path.lstrip("/") for path in paths}


@release.command()
@click.argument("bundle_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the release as JSON.")
@click.pass_context
def upload(ctx: click.Context, bundle_dir: Path, as_json: bool) -> None:
    """Upload the signed bundle BUNDLE_DIR; only files the cloud lacks are sent."""
    body, files = _read_bundle(bundle_dir)
    client = api_client(ctx)
    answer = call(client.request, "POST", "/api/fleet/releases", json_body=body)
    by_hash = {f["sha256"]: f["path"] for f in answer["files"]}
    missing = answer["missing"]
    with click.progressbar(missing, label="uploading files", file=sys.stderr) as bar:
        for sha256 in bar:
            path = files[by_hash[sha256]]
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise click.ClickException("%s is missing from the bundle" % path) from None
            url = "/api/fleet/releases/%d/files/%s" % (answer["id"], sha256)
            answer = call(client.request, "PUT", url, data=data)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    distinct = len(by_hash)
    click.echo(
        "release %d: %s %s %s (%d files sent, %d already stored)"
        % (
            answer["id"],
            answer["board"],
            answer["version"],
            answer["status"],
            len(missing),
            distinct - len(missing),
        )
    )


def _row(item: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(item["id"]),
        item["board"],
        item["version"],
        item["status"],
        str(item["file_count"]),
        str(item["total_size"]),
        str(item["missing_count"]),
        item["created_at"],
    )


@release.command("list")
@click.option("--board", help="Only this board (esp32, picow, rpi).")
@click.option("--status", help="Only this status (incomplete, ready, retired).")
@click.option("--json", "as_json", is_flag=True, help="Print the releases as a JSON list.")
@click.pass_context
def list_command(ctx: click.Context, board: str | None, status: str | None, as_json: bool) -> None:
    """List releases by board and version."""
    params = {"board": board, "status": status}
    found = call(api_client(ctx).request, "GET", "/api/fleet/releases", params=params)["releases"]
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found:
        click.echo(table([COLUMNS, *(_row(item) for item in found)]))
    else:
        click.echo("no releases")


@release.command()
@click.argument("release_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print the release as JSON.")
@click.pass_context
def show(ctx: click.Context, release_id: int, as_json: bool) -> None:
    """Show a release: status, files, what is missing."""
    item = call(api_client(ctx).request, "GET", "/api/fleet/releases/%d" % release_id)
    if as_json:
        click.echo(json.dumps(item, indent=2))
        return
    click.echo(table([COLUMNS, _row(item)]))
    click.echo("signed by key %s; manifest sha256 %s" % (item["key_id"], item["manifest_sha256"]))
    for entry in item["files"]:
        mark = "" if entry["stored"] else "  (missing)"
        click.echo(
            "  %s  %d bytes  %s%s" % (entry["sha256"][:12], entry["size"], entry["path"], mark)
        )


@release.command()
@click.argument("release_id", type=click.IntRange(1))
@click.pass_context
def retire(ctx: click.Context, release_id: int) -> None:
    """Retire a release: no new rollout may use it."""
    item = call(api_client(ctx).request, "POST", "/api/fleet/releases/%d/retire" % release_id)
    click.echo("release %d: %s %s retired" % (item["id"], item["board"], item["version"]))
