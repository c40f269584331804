"""Actions the release tests share: release keys, signed bundles, an app that trusts a key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from cloud.audit import AuditEvent
from cloud.db import database
from cloud.fleet.release_models import Release, ReleaseBlob
from provisioning import release_signing
from tests.support.cloud import make_app

FILES = {
    "boot.py": b"import gc\n",
    "main.py": b"import app\n",
    "lib/app.py": b"print('bankiot')\n" * 40,
    "lib/empty.py": b"",
    "lib/empty2.py": b"",  # same content as empty.py: one blob for both
}


@dataclass
class Releases:
    """An app that trusts one release key (``key``: the private key file, kept outside the
    app's data folder), and the folder for bundles."""

    app: APIFlask
    key: Path
    data_dir: Path
    work: Path


def releases_app(database_url: URL, tmp_path: Path) -> Releases:
    """The cloud app on ``database_url`` trusting a new release key (given by path in
    ``release_keys``; the default key folder stays empty)."""
    key = tmp_path / "offline" / "release.pem"
    public = release_signing.new_release_key(key)
    data_dir = tmp_path / "data"
    app = make_app(database_url, data_dir, release_keys=str(public))
    return Releases(app, key, data_dir, tmp_path)


def make_bundle(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        path = root / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def signed_bundle(
    releases: Releases,
    name: str,
    version: str = "1.4.0",
    board: str = "esp32",
    files: dict[str, bytes] = FILES,
) -> Path:
    """A bundle signed with the trusted key."""
    bundle = make_bundle(releases.work / name, files)
    release_signing.sign_bundle(bundle, releases.key, board, version)
    return bundle


def upload_body(bundle: Path) -> dict[str, Any]:
    """The POST /api/fleet/releases body of a signed bundle."""
    sig = json.loads((bundle / "manifest.sig").read_text())
    return {
        "manifest": (bundle / "manifest.json").read_text(),
        "signature": sig["signature"],
        "key_id": sig["key_id"],
    }


def counts(app: APIFlask) -> tuple[int, int, int]:
    """(releases, stored blobs, release audit events) in the database."""
    with app.app_context(), database().sessions() as db:
        return (
            db.scalar(select(func.count()).select_from(Release)) or 0,
            db.scalar(select(func.count()).select_from(ReleaseBlob)) or 0,
            db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action.startswith("release."))
            )
            or 0,
        )


def audit_actions(app: APIFlask) -> list[tuple[str, str, str]]:
    """(actor, action, target) of every release audit event, in order."""
    with app.app_context(), database().sessions() as db:
        rows = db.execute(
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.target)
            .where(AuditEvent.action.startswith("release."))
            .order_by(AuditEvent.id)
        )
        return [(row.actor, row.action, row.target) for row in rows]
