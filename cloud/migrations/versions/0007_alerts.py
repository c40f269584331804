"""alerts: fleet alerts, at most one open per (device, kind)

Revision ID: 0007_alerts
Revises: 0001_initial
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_alerts"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("alerts",)
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
OPEN = sa.text("state = 'open'")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", WHEN, nullable=False),
        sa.Column("resolved_at", WHEN, nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("acknowledged_at", WHEN, nullable=True),
        sa.CheckConstraint("state IN ('open', 'resolved')", name=op.f("ck_alerts_state")),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_alerts_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_alerts_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_branch_id"), ["branch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_device_id"), ["device_id"], unique=False)
        # The database's own guarantee of one open alert per (device, kind).
        batch_op.create_index(
            "uq_alerts_open_device_kind",
            ["device_id", "kind"],
            unique=True,
            sqlite_where=OPEN,
            postgresql_where=OPEN,
        )


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("uq_alerts_open_device_kind")
        batch_op.drop_index(batch_op.f("ix_alerts_device_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_branch_id"))
    op.drop_table("alerts")
