"""analytics: the history of life events found in customers' profiles over time

Revision ID: 0020_life_event_history
Revises: 0017_analytics
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_life_event_history"
down_revision: str | Sequence[str] | None = "0017_analytics"
branch_labels: str | Sequence[str] | None = None
# episodes belong to customers
depends_on: str | Sequence[str] | None = ("0013_customers",)

WHEN = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "life_event_history",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=32), nullable=False),
        sa.Column("first_as_of", sa.Date(), nullable=False),
        sa.Column("first_detected_at", WHEN, nullable=False),
        sa.Column("last_as_of", sa.Date(), nullable=False),
        sa.Column("last_seen_at", WHEN, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("peak_score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("ended_as_of", sa.Date(), nullable=True),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_life_event_history_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_life_event_history")),
    )
    with op.batch_alter_table("life_event_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_life_event_history_customer_kind",
            ["customer_id", "kind", "ended_at"],
            unique=False,
        )
        batch_op.create_index("ix_life_event_history_first", ["first_detected_at"], unique=False)


def downgrade() -> None:
    op.drop_table("life_event_history")
