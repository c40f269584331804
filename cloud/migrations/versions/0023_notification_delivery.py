"""notifications: the push outbox (pushed or not, attempts, when next) and relay to a watch

Revision ID: 0023_notification_delivery
Revises: 0022_campaign_send_progress
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_notification_delivery"
down_revision: str | Sequence[str] | None = "0022_campaign_send_progress"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pushed_at", WHEN, nullable=True))
        batch_op.add_column(
            sa.Column("push_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("next_push_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("relayed_at", WHEN, nullable=True))
        batch_op.create_index(
            batch_op.f("ix_notifications_next_push_at"), ["next_push_at"], unique=False
        )
    # Older notifications went to the post-commit hook when they were stored: not again.
    op.execute("UPDATE notifications SET pushed_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_next_push_at"))
        batch_op.drop_column("relayed_at")
        batch_op.drop_column("next_push_at")
        batch_op.drop_column("push_attempts")
        batch_op.drop_column("pushed_at")
