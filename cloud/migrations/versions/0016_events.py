"""events: rule decisions, service requests for branch staff, the event worker's cursor

Revision ID: 0016_events
Revises: 0001_initial
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_events"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("events",)
# service requests name customers; decisions read device events
depends_on: str | Sequence[str] | None = ("0013_customers", "0004_ingest")

WHEN = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rule_decisions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("decided_at", WHEN, nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("acted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_decisions")),
    )
    with op.batch_alter_table("rule_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rule_decisions_event_id"), ["event_id"], unique=False)
        batch_op.create_index("ix_rule_decisions_rule_at", ["rule_id", "at"], unique=False)
        batch_op.create_index("ix_rule_decisions_subject_at", ["subject", "at"], unique=False)
    op.create_table(
        "service_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=True),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("closed_at", WHEN, nullable=True),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.CheckConstraint(
            "kind IN ('callback', 'ticket', 'alert')", name=op.f("ck_service_requests_kind")
        ),
        sa.CheckConstraint("state IN ('open', 'closed')", name=op.f("ck_service_requests_state")),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branches.id"],
            name=op.f("fk_service_requests_branch_id_branches"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_service_requests_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["rule_decisions.id"],
            name=op.f("fk_service_requests_decision_id_rule_decisions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_requests")),
        sa.UniqueConstraint(
            "decision_id", "kind", name=op.f("uq_service_requests_decision_id_kind")
        ),
    )
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_requests_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_service_requests_branch_state", ["branch_id", "state", "id"], unique=False
        )
    op.create_table(
        "rule_cursors",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.JSON(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rule_cursors")),
    )


def downgrade() -> None:
    op.drop_table("rule_cursors")
    with op.batch_alter_table("service_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_service_requests_branch_state")
        batch_op.drop_index(batch_op.f("ix_service_requests_customer_id"))
    op.drop_table("service_requests")
    with op.batch_alter_table("rule_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_decisions_subject_at")
        batch_op.drop_index("ix_rule_decisions_rule_at")
        batch_op.drop_index(batch_op.f("ix_rule_decisions_event_id"))
    op.drop_table("rule_decisions")
