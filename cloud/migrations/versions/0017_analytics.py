"""analytics: stored customer profiles (with segment and income band) and life events

Revision ID: 0017_analytics
Revises: 0001_initial
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_analytics"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("analytics",)
# profiles are computed from bank transactions and belong to customers
depends_on: str | Sequence[str] | None = ("0014_bank", "0013_customers")

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(18, 2)


def upgrade() -> None:
    op.create_table(
        "customer_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("income_monthly", MONEY, nullable=False),
        sa.Column("balance_mean", MONEY, nullable=False),
        sa.Column("balance_min", MONEY, nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=True),
        sa.Column("income_band", sa.String(length=16), nullable=True),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_profiles_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_profiles")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_customer_profiles_customer_id")),
    )
    with op.batch_alter_table("customer_profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_profiles_segment"), ["segment"], unique=False)
    op.create_table(
        "life_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("detail", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_life_events_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_life_events")),
    )
    with op.batch_alter_table("life_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_life_events_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_life_events_kind"), ["kind"], unique=False)


def downgrade() -> None:
    op.drop_table("life_events")
    op.drop_table("customer_profiles")
