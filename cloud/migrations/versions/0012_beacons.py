"""fleet: partner merchants, and the beacons of branches and merchants

Revision ID: 0012_beacons
Revises: 0011_wearable_bindings
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_beacons"
down_revision: str | Sequence[str] | None = "0011_wearable_bindings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "merchants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=4), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
        sa.UniqueConstraint("name", name=op.f("uq_merchants_name")),
    )
    op.create_table(
        "beacons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("identifier", sa.String(length=64), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=True),
        sa.Column("major", sa.Integer(), nullable=True),
        sa.Column("minor", sa.Integer(), nullable=True),
        sa.Column("namespace", sa.String(length=20), nullable=True),
        sa.Column("instance", sa.String(length=12), nullable=True),
        sa.Column("address", sa.String(length=17), nullable=True),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("merchant_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_beacons_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_beacons_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beacons")),
        sa.UniqueConstraint("address", name=op.f("uq_beacons_address")),
        sa.UniqueConstraint("identifier", name=op.f("uq_beacons_identifier")),
    )
    with op.batch_alter_table("beacons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_beacons_branch_id"), ["branch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_beacons_merchant_id"), ["merchant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("beacons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_beacons_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_beacons_branch_id"))
    op.drop_table("beacons")
    op.drop_table("merchants")
