"""ingest: threshold states (normal or crossed per device and threshold rule)

Revision ID: 0009_thresholds
Revises: 0004_ingest
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_thresholds"
down_revision: str | Sequence[str] | None = "0004_ingest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "threshold_states",
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=96), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("crossed", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("device", "rule", name=op.f("pk_threshold_states")),
    )


def downgrade() -> None:
    op.drop_table("threshold_states")
