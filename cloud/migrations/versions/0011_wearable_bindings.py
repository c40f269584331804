"""fleet: wearables bound to branches (secrets sealed), and each gateway's KEYS revision

Revision ID: 0011_wearable_bindings
Revises: 0008_rollouts
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_wearable_bindings"
down_revision: str | Sequence[str] | None = "0008_rollouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wearable_bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=17), nullable=False),
        sa.Column("irk_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("key_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_wearable_bindings_branch_id_branches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wearable_bindings")),
        sa.UniqueConstraint(
            "branch_id", "address", name=op.f("uq_wearable_bindings_branch_id_address")
        ),
    )
    with op.batch_alter_table("wearable_bindings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wearable_bindings_branch_id"), ["branch_id"], unique=False
        )
    op.create_table(
        "wearable_binding_sets",
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branches.id"],
            name=op.f("fk_wearable_binding_sets_branch_id_branches"),
        ),
        sa.PrimaryKeyConstraint("branch_id", name=op.f("pk_wearable_binding_sets")),
    )
    op.create_table(
        "gateway_keys",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("set_version", sa.Integer(), nullable=False),
        sa.Column("issued_at", WHEN, nullable=False),
        sa.Column("sent_revision", sa.Integer(), nullable=True),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("send_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_gateway_keys_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_gateway_keys")),
    )


def downgrade() -> None:
    op.drop_table("gateway_keys")
    op.drop_table("wearable_binding_sets")
    with op.batch_alter_table("wearable_bindings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wearable_bindings_branch_id"))
    op.drop_table("wearable_bindings")
