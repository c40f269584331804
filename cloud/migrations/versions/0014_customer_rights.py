"""customers: erasure receipts; pairing offers' digests become keyed (old ones dropped)

Revision ID: 0014_customer_rights
Revises: 0013_customers
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_customer_rights"
down_revision: str | Sequence[str] | None = "0013_customers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wearables", sa.Integer(), nullable=False),
        sa.Column("branches", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_erasures")),
    )
    # Offers kept as a plain SHA-256 can no longer be matched (codes are now HMAC'd under a
    # key from the KEK); they live ten minutes anyway.
    op.execute("DELETE FROM pairing_offers")


def downgrade() -> None:
    op.drop_table("customer_erasures")
