"""bank: accounts, statements and transactions imported from bank statement files

Revision ID: 0014_bank
Revises: 0001_initial
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_bank"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("bank",)
# accounts may belong to a customer
depends_on: str | Sequence[str] | None = "0013_customers"

WHEN = sa.DateTime(timezone=True)
NOW = sa.text("(CURRENT_TIMESTAMP)")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AMOUNT = sa.Numeric(18, 5)


def upgrade() -> None:
    op.create_table(
        "bank_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scheme", sa.String(length=40), nullable=False),
        sa.Column("identifier", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("servicer", sa.String(length=140), nullable=False),
        sa.Column("name", sa.String(length=140), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("created_at", WHEN, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_bank_accounts_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_accounts")),
        sa.UniqueConstraint(
            "scheme",
            "identifier",
            "currency",
            name=op.f("uq_bank_accounts_scheme_identifier_currency"),
        ),
    )
    with op.batch_alter_table("bank_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bank_accounts_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_bank_accounts_provider_ref"), ["provider_ref"], unique=False
        )

    op.create_table(
        "bank_statements",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("file_digest", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("statement_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.String(length=32), nullable=False),
        sa.Column("created", WHEN, nullable=True),
        sa.Column("period_start", WHEN, nullable=True),
        sa.Column("period_end", WHEN, nullable=True),
        sa.Column("opening_balance", AMOUNT, nullable=True),
        sa.Column("opening_date", sa.Date(), nullable=True),
        sa.Column("closing_balance", AMOUNT, nullable=True),
        sa.Column("closing_date", sa.Date(), nullable=True),
        sa.Column("balance_currency", sa.String(length=3), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("imported_at", WHEN, nullable=False),
        sa.Column("imported_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bank_accounts.id"],
            name=op.f("fk_bank_statements_account_id_bank_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_statements")),
        sa.UniqueConstraint(
            "account_id", "kind", "ref", name=op.f("uq_bank_statements_account_id_kind_ref")
        ),
    )
    with op.batch_alter_table("bank_statements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bank_statements_file_digest"), ["file_digest"], unique=False
        )

    op.create_table(
        "bank_transactions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("statement_id", BIG_ID, nullable=False),
        sa.Column("entry_key", sa.String(length=64), nullable=False),
        sa.Column("amount", AMOUNT, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=4), nullable=False),
        sa.Column("reversal", sa.Boolean(), nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=True),
        sa.Column("value_date", sa.Date(), nullable=True),
        sa.Column("counterparty_name", sa.String(length=140), nullable=False),
        sa.Column("counterparty_account", sa.String(length=64), nullable=False),
        sa.Column("remittance", sa.Text(), nullable=False),
        sa.Column("domain_code", sa.String(length=4), nullable=False),
        sa.Column("family_code", sa.String(length=40), nullable=False),
        sa.Column("subfamily_code", sa.String(length=40), nullable=False),
        sa.Column("proprietary_code", sa.String(length=64), nullable=False),
        sa.Column("proprietary_issuer", sa.String(length=64), nullable=False),
        sa.Column("gvc", sa.String(length=3), nullable=False),
        sa.Column("mcc", sa.String(length=4), nullable=False),
        sa.Column("end_to_end_id", sa.String(length=64), nullable=False),
        sa.Column("servicer_ref", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("imported_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bank_accounts.id"],
            name=op.f("fk_bank_transactions_account_id_bank_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["bank_statements.id"],
            name=op.f("fk_bank_transactions_statement_id_bank_statements"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_transactions")),
        sa.UniqueConstraint(
            "account_id", "entry_key", name=op.f("uq_bank_transactions_account_id_entry_key")
        ),
    )
    with op.batch_alter_table("bank_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bank_transactions_booking_date"), ["booking_date"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_bank_transactions_statement_id"), ["statement_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("bank_transactions")
    op.drop_table("bank_statements")
    op.drop_table("bank_accounts")
