"""releases: signed software releases, the files their manifests list, stored blobs

Revision ID: 0006_releases
Revises: 0001_initial
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_releases"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("releases",)
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("board", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=48), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("total_size", sa.Integer(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("ready_at", WHEN, nullable=True),
        sa.Column("retired_at", WHEN, nullable=True),
        sa.Column("retired_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("board", "version", name=op.f("uq_releases_board_version")),
    )
    op.create_table(
        "release_files",
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=96), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_release_files_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("release_id", "path", name=op.f("pk_release_files")),
    )
    with op.batch_alter_table("release_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_files_sha256"), ["sha256"], unique=False)
    op.create_table(
        "release_blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("stored_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_release_blobs")),
    )


def downgrade() -> None:
    op.drop_table("release_blobs")
    with op.batch_alter_table("release_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_files_sha256"))
    op.drop_table("release_files")
    op.drop_table("releases")
