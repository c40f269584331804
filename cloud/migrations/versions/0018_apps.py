"""apps: the applications' decisions, loan applications, holding alerts

Revision ID: 0018_apps
Revises: 0001_initial
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_apps"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("apps",)
# rows name customers; shopping reads rule decisions, device events and readings
depends_on: str | Sequence[str] | None = ("0013_customers", "0016_events")

WHEN = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(18, 5, asdecimal=True)


def upgrade() -> None:
    op.create_table(
        "app_decisions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("app", sa.String(length=16), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("rule_decision_id", sa.BigInteger(), nullable=True),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_app_decisions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_decisions")),
        sa.UniqueConstraint(
            "app", "rule_decision_id", name=op.f("uq_app_decisions_app_rule_decision_id")
        ),
    )
    with op.batch_alter_table("app_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_decisions_app"), ["app"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_app_decisions_customer_id"), ["customer_id"], unique=False
        )
    op.create_table(
        "loan_applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("term_months", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("review", sa.String(length=16), nullable=True),
        sa.Column("reviewed_by", sa.String(length=128), nullable=True),
        sa.Column("reviewed_at", WHEN, nullable=True),
        sa.Column("review_note", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('approved', 'referred', 'declined')",
            name=op.f("ck_loan_applications_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branches.id"],
            name=op.f("fk_loan_applications_branch_id_branches"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_loan_applications_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_applications")),
    )
    with op.batch_alter_table("loan_applications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loan_applications_branch_id"), ["branch_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_loan_applications_customer_id"), ["customer_id"], unique=False
        )
    op.create_table(
        "holding_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("instrument", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("threshold", MONEY, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("last_price", MONEY, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.CheckConstraint(
            "channel IN ('wearable', 'app')", name=op.f("ck_holding_alerts_channel")
        ),
        sa.CheckConstraint(
            "direction IN ('above', 'below')", name=op.f("ck_holding_alerts_direction")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_holding_alerts_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holding_alerts")),
    )
    with op.batch_alter_table("holding_alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_holding_alerts_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_holding_alerts_instrument"), ["instrument"], unique=False
        )


def downgrade() -> None:
    for table in ("holding_alerts", "loan_applications", "app_decisions"):
        op.drop_table(table)
