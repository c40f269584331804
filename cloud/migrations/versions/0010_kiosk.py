"""ingest: kiosk events (check-ins, queue tickets, service requests at branch kiosks)

Revision ID: 0010_kiosk
Revises: 0009_thresholds
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_kiosk"
down_revision: str | Sequence[str] | None = "0009_thresholds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "kiosk_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("receipt_id", sa.BigInteger(), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("wearable", sa.String(length=17), nullable=True),
        sa.Column("detail", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", WHEN, nullable=False),
        sa.Column("time_estimated", sa.Boolean(), nullable=False),
        sa.Column("received_at", WHEN, nullable=False),
        sa.Column("data_class", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branches.id"],
            name=op.f("fk_kiosk_events_branch_id_branches"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_kiosk_events_device_id_devices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["batch_receipts.id"],
            name=op.f("fk_kiosk_events_receipt_id_batch_receipts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_events")),
        sa.UniqueConstraint("gateway", "event_id", name=op.f("uq_kiosk_events_gateway_event_id")),
    )
    with op.batch_alter_table("kiosk_events", schema=None) as batch_op:
        batch_op.create_index("ix_kiosk_events_branch_order", ["branch_id", "id"], unique=False)
        batch_op.create_index(
            "ix_kiosk_events_class_time", ["data_class", "occurred_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_kiosk_events_receipt_id"), ["receipt_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("kiosk_events")
