"""Signed releases: accept an upload, store its files, say what is missing, retire it.

The rules, in the order they are checked:

- a release is accepted only with an Ed25519 signature, by a trusted key, over the exact
  manifest bytes (``provisioning.release_signing.verify_manifest``), and only then parsed
  with the core's strict parser (``bankiot_core.manifest``): nothing unsigned is parsed;
- (board, version) names one release forever: the same manifest again is the same release
  (idempotent), a different one is refused;
- a file is stored only if a release lists its SHA-256, with exactly that size and hash;
  a release is ``ready`` once every file it lists is stored, and only then offered to
  devices; ``retired`` releases stay downloadable (devices may be mid-update) but no new
  rollout may use one (``usable_release``).

Functions take a session and commit nothing but what they say; the views commit. Errors are
``ReleaseRefused`` with the HTTP status the API answers and a one-line message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bankiot_core.manifest import version_key
from cloud import audit
from cloud.fleet.release_models import Release, ReleaseBlob, ReleaseFile
from cloud.fleet.release_store import BlobMismatch, BlobStore
from cloud.ingest.models import utc
from provisioning.release_signing import (
    InvalidManifest,
    ReleaseError,
    Signature,
    UntrustedRelease,
    check_key_id,
    decode_signature,
    verify_manifest,
)

STATUSES = ("incomplete", "ready", "retired")


class ReleaseRefused(Exception):
    """A request the release rules refuse; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Created:
    """What ``create_release`` did: the release, and whether it is new."""

    release: Release
    new: bool


def _signature(signature_b64: str, key: str) -> Signature:
    try:
        return Signature(check_key_id(key), decode_signature(signature_b64))
    except ReleaseError as exc:
        raise ReleaseRefused(422, str(exc)) from None


def _existing(db: Session, board: str, version: str) -> Release | None:
    return db.scalars(
        select(Release).where(Release.board == board, Release.version == version)
    ).one_or_none()


def _same_or_conflict(existing: Release, text: str) -> Created:
    if existing.manifest != text:
        raise ReleaseRefused(
            409,
            "%s %s already exists with another manifest (release %d): "
            "a version is never reused" % (existing.board, existing.version, existing.id),
        )
    return Created(existing, False)


def create_release(
    db: Session,
    actor: str,
    text: str,
    signature_b64: str,
    key: str,
    trusted: Mapping[str, Ed25519PublicKey],
) -> Created:
    """Accept the signed manifest ``text`` (committed here, with its audit event)."""
    signature = _signature(signature_b64, key)
    if not trusted:
        raise ReleaseRefused(403, "no trusted release keys are configured on this cloud")
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise ReleaseRefused(422, "the manifest must be ASCII text") from None
    try:
        manifest = verify_manifest(data, signature, trusted)
    except InvalidManifest as exc:
        raise ReleaseRefused(422, str(exc)) from None
    except UntrustedRelease as exc:
        raise ReleaseRefused(403, str(exc)) from None
    existing = _existing(db, manifest.board, manifest.version)
    if existing is not None:
        return _same_or_conflict(existing, text)
    release = Release(
        board=manifest.board,
        version=manifest.version,
        manifest=text,
        manifest_sha256=hashlib.sha256(data).hexdigest(),
        key_id=signature.key_id,
        signature=signature.signature,
        file_count=len(manifest.files),
        total_size=sum(entry.size for entry in manifest.files),
        created_at=utcnow(),
        created_by=actor,
    )
    release.files = [ReleaseFile(path=f.path, sha256=f.sha256, size=f.size) for f in manifest.files]
    db.add(release)
    try:
        db.flush()
    except IntegrityError:  # the same version uploaded at the same moment elsewhere
        db.rollback()
        existing = _existing(db, manifest.board, manifest.version)
        if existing is None:
            raise
        return _same_or_conflict(existing, text)
    _mark_ready(db, [release])
    audit.record(
        db,
        actor,
        "release.create",
        "release:%d" % release.id,
        board=release.board,
        version=release.version,
        key_id=release.key_id,
        manifest_sha256=release.manifest_sha256,
        ready=release.ready_at is not None,
    )
    db.commit()
    return Created(release, True)


def missing_files(db: Session, release: Release) -> list[str]:
    """The SHA-256 of every file ``release`` lists that is not stored yet (each once)."""
    stored = select(ReleaseBlob.sha256)
    return list(
        db.scalars(
            select(ReleaseFile.sha256)
            .where(ReleaseFile.release_id == release.id, ReleaseFile.sha256.not_in(stored))
            .distinct()
            .order_by(ReleaseFile.sha256)
        )
    )


def _mark_ready(db: Session, releases: list[Release]) -> list[Release]:
    now = utcnow()
    done = []
    for release in releases:
        if release.ready_at is None and not missing_files(db, release):
            release.ready_at = now
            done.append(release)
    return done


def get_release(db: Session, release_id: int) -> Release:
    """The release ``release_id``, or ReleaseRefused(404)."""
    release = db.get(Release, release_id)
    if release is None:
        raise ReleaseRefused(404, "no such release")
    return release


def store_file(
    db: Session,
    store: BlobStore,
    actor: str,
    release: Release,
    sha256: str,
    stream: IO[bytes],
    length: int | None,
) -> bool:
    """Store the file ``sha256`` of ``release`` from ``stream`` (``length``: the declared
    body size, if any); commit. False when it was stored already (the body is not read)."""
    if release.retired_at is not None:
        raise ReleaseRefused(409, "release %d is retired" % release.id)
    listed = db.scalars(
        select(ReleaseFile).where(
            ReleaseFile.release_id == release.id, ReleaseFile.sha256 == sha256
        )
    ).first()
    if listed is None:
        raise ReleaseRefused(404, "release %d lists no file with SHA-256 %s" % (release.id, sha256))
    if db.get(ReleaseBlob, sha256) is not None:
        return False
    if length is not None and length != listed.size:
        raise ReleaseRefused(
            422, "%s has %d bytes, the manifest says %d" % (listed.path, length, listed.size)
        )
    try:
        store.write(sha256, listed.size, stream)
    except BlobMismatch as exc:
        raise ReleaseRefused(422, "%s: %s" % (listed.path, exc)) from None
    db.add(ReleaseBlob(sha256=sha256, size=listed.size, stored_at=utcnow()))
    try:
        db.flush()
    except IntegrityError:  # stored by another request meanwhile: same bytes
        db.rollback()
        return False
    waiting = list(
        db.scalars(
            select(Release)
            .join(ReleaseFile, ReleaseFile.release_id == Release.id)
            .where(ReleaseFile.sha256 == sha256, Release.ready_at.is_(None))
            .distinct()
        )
    )
    ready = _mark_ready(db, waiting)
    audit.record(
        db,
        actor,
        "release.file",
        "release:%d" % release.id,
        sha256=sha256,
        size=listed.size,
        ready=sorted(r.id for r in ready),
    )
    db.commit()
    return True


def retire_release(db: Session, actor: str, release: Release) -> bool:
    """Retire ``release`` (no new rollout uses it); commit. False if it already was."""
    if release.retired_at is not None:
        return False
    release.retired_at = utcnow()
    release.retired_by = actor
    audit.record(
        db,
        actor,
        "release.retire",
        "release:%d" % release.id,
        board=release.board,
        version=release.version,
    )
    db.commit()
    return True


def list_releases(
    db: Session, board: str | None = None, status: str | None = None
) -> list[Release]:
    """Releases, by board then version precedence (newest last); optionally one board or
    one status."""
    query = select(Release)
    if board is not None:
        query = query.where(Release.board == board)
    if status == "retired":
        query = query.where(Release.retired_at.is_not(None))
    elif status == "ready":
        query = query.where(Release.retired_at.is_(None), Release.ready_at.is_not(None))
    elif status == "incomplete":
        query = query.where(Release.retired_at.is_(None), Release.ready_at.is_(None))
    releases = list(db.scalars(query))
    return sorted(releases, key=lambda r: (r.board, version_key(r.version)))


def missing_counts(db: Session) -> dict[int, int]:
    """Release id -> how many distinct files it still misses (releases missing none left out)."""
    stored = select(ReleaseBlob.sha256)
    rows = db.execute(
        select(ReleaseFile.release_id, func.count(ReleaseFile.sha256.distinct()))
        .where(ReleaseFile.sha256.not_in(stored))
        .group_by(ReleaseFile.release_id)
    )
    return {release_id: count for release_id, count in rows}


def usable_release(db: Session, release_id: int) -> Release:
    """The release a new rollout may use: it exists, is ready and is not retired; else
    ReleaseRefused (404 or 409) saying why. For the rollouts area."""
    release = get_release(db, release_id)
    if release.retired_at is not None:
        raise ReleaseRefused(409, "release %d is retired" % release_id)
    if release.ready_at is None:
        raise ReleaseRefused(409, "release %d is not ready: files are missing" % release_id)
    return release


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else utc(moment)


def release_out(release: Release, missing: int | list[str]) -> dict[str, Any]:
    """A release as the API shows it; ``missing``: a count (lists) or the hashes (show)."""
    out: dict[str, Any] = {
        "id": release.id,
        "board": release.board,
        "version": release.version,
        "status": release.status,
        "ready": release.ready_at is not None,
        "retired": release.retired_at is not None,
        "key_id": release.key_id,
        "manifest_sha256": release.manifest_sha256,
        "file_count": release.file_count,
        "total_size": release.total_size,
        "created_at": utc(release.created_at),
        "created_by": release.created_by,
        "ready_at": _utc(release.ready_at),
        "retired_at": _utc(release.retired_at),
        "retired_by": release.retired_by,
    }
    if isinstance(missing, int):
        out["missing_count"] = missing
    else:
        out["missing_count"] = len(missing)
        out["missing"] = missing
        out["files"] = [
            {"path": f.path, "sha256": f.sha256, "size": f.size, "stored": f.sha256 not in missing}
            for f in release.files
        ]
    return out


def downloadable(db: Session, sha256: str) -> bool:
    """Whether a ready release lists the blob ``sha256`` (and it is stored)."""
    found = db.scalars(
        select(ReleaseFile.sha256)
        .join(Release, Release.id == ReleaseFile.release_id)
        .join(ReleaseBlob, ReleaseBlob.sha256 == ReleaseFile.sha256)
        .where(ReleaseFile.sha256 == sha256, Release.ready_at.is_not(None))
        .limit(1)
    ).first()
    return found is not None
