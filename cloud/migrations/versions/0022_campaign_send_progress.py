"""notifications: a campaign send's progress, so a send goes in pages and can be resumed

Revision ID: 0022_campaign_send_progress
Revises: 0019_notifications
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_campaign_send_progress"
down_revision: str | Sequence[str] | None = "0019_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("campaign_sends", schema=None) as batch_op:
        # Sends made before this revision ran in one transaction: they are done.
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="done", nullable=False)
        )
        batch_op.add_column(
            sa.Column("last_customer_id", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("updated_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("finished_at", WHEN, nullable=True))
    op.execute("UPDATE campaign_sends SET updated_at = at, finished_at = at")
    with op.batch_alter_table("campaign_sends", schema=None) as batch_op:
        batch_op.alter_column("updated_at", existing_type=WHEN, nullable=False)
        batch_op.create_check_constraint(
            op.f("ck_campaign_sends_status"), "status IN ('sending', 'done')"
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign_sends", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_campaign_sends_status"), type_="check")
        batch_op.drop_column("finished_at")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("last_customer_id")
        batch_op.drop_column("status")
