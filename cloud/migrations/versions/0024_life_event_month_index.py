"""analytics: a covering index for the life events found per month and kind

``store.events_over_time`` reads first_detected_at, kind, customer_id and ended_at of the
episodes since a date; through the first_detected_at index alone SQLite and PostgreSQL
fetch every table row of the span. This index holds all four columns, so the counts come
from the index; it replaces the one on first_detected_at alone, its prefix.

Revision ID: 0024_life_event_month_index
Revises: 0020_life_event_history
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024_life_event_month_index"
down_revision: str | Sequence[str] | None = "0020_life_event_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("life_event_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_life_event_history_month",
            ["first_detected_at", "kind", "customer_id", "ended_at"],
            unique=False,
        )
        batch_op.drop_index("ix_life_event_history_first")


def downgrade() -> None:
    with op.batch_alter_table("life_event_history", schema=None) as batch_op:
        batch_op.create_index("ix_life_event_history_first", ["first_detected_at"], unique=False)
        batch_op.drop_index("ix_life_event_history_month")
