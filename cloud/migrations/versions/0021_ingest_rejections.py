"""ingest: rejected envelopes counted per (gateway, reason, hour)

Revision ID: 0021_ingest_rejections
Revises: 0010_kiosk
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_ingest_rejections"
down_revision: str | Sequence[str] | None = "0010_kiosk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ingest_rejections",
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("hour", WHEN, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", WHEN, nullable=False),
        sa.Column("last_seen", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("gateway", "reason", "hour", name=op.f("pk_ingest_rejections")),
    )
    with op.batch_alter_table("ingest_rejections", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_rejections_hour", ["hour"], unique=False)


def downgrade() -> None:
    op.drop_table("ingest_rejections")
