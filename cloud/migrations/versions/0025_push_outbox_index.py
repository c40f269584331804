"""notifications: a partial index of the unpushed ones (the outbox /metrics counts)

Revision ID: 0025_push_outbox_index
Revises: 0023_notification_delivery
Create Date: 2026-12-14
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_push_outbox_index"
down_revision: str | Sequence[str] | None = "0023_notification_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNPUSHED = sa.text("pushed_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        # Pushed rows, nearly all of the table, have no next_push_at, as given-up ones: only
        # an index without them keeps counting the given-up ones cheap.
        batch_op.create_index(
            "ix_notifications_unpushed",
            ["next_push_at"],
            unique=False,
            sqlite_where=UNPUSHED,
            postgresql_where=UNPUSHED,
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_unpushed")
