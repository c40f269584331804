"""Signed software releases: the release, the files its manifest lists, the blobs stored.

A release is immutable once uploaded (its manifest and signature are kept byte for byte);
only ``ready_at`` (every file stored) and ``retired_at`` (no new rollout) change. Files are
stored once per content (``release_blobs``, keyed by SHA-256), whatever release lists them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud.db import Base

WHEN = DateTime(timezone=True)


class Release(Base):
    """One signed release for one board: (board, version) is unique."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("board", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    board: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(48))
    manifest: Mapped[str] = mapped_column(Text)  # the canonical JSON text, as signed
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    file_count: Mapped[int] = mapped_column(Integer)
    total_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(WHEN)
    created_by: Mapped[str] = mapped_column(String(128))
    ready_at: Mapped[dt.datetime | None] = mapped_column(WHEN)
    retired_at: Mapped[dt.datetime | None] = mapped_column(WHEN)
    retired_by: Mapped[str | None] = mapped_column(String(128))
    files: Mapped[list[ReleaseFile]] = relationship(
        back_populates="release", order_by="ReleaseFile.path"
    )

    @property
    def status(self) -> str:
        """``retired``, ``ready`` (every file stored) or ``incomplete``."""
        if self.retired_at is not None:
            return "retired"
        return "ready" if self.ready_at is not None else "incomplete"


class ReleaseFile(Base):
    """A file a release's manifest lists (a copy of the manifest, for queries)."""

    __tablename__ = "release_files"

    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(96), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    release: Mapped[Release] = relationship(back_populates="files")


class ReleaseBlob(Base):
    """A file's content stored under ``<data dir>/releases/blobs/<sha256>``."""

    __tablename__ = "release_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    stored_at: Mapped[dt.datetime] = mapped_column(WHEN)
