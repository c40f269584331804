"""identity: claim tokens, issued certificates, envelope keys

Revision ID: 0002_identity
Revises: 0001_initial
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_identity"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("identity",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_identity_certificates_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_certificates")),
        sa.UniqueConstraint("serial", name=op.f("uq_identity_certificates_serial")),
    )
    with op.batch_alter_table("identity_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_certificates_device_id"), ["device_id"], unique=False
        )

    op.create_table(
        "identity_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_device_id", sa.Integer(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branches.id"], name=op.f("fk_identity_claims_branch_id_branches")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_identity_claims_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["redeemed_device_id"],
            ["devices.id"],
            name=op.f("fk_identity_claims_redeemed_device_id_devices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_claims")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_identity_claims_token_hash")),
    )
    with op.batch_alter_table("identity_claims", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_claims_branch_id"), ["branch_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_identity_claims_device_id"), ["device_id"], unique=False
        )

    op.create_table(
        "identity_envelope_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_identity_envelope_keys_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_envelope_keys")),
        sa.UniqueConstraint(
            "device_id", "version", name=op.f("uq_identity_envelope_keys_device_id_version")
        ),
    )
    with op.batch_alter_table("identity_envelope_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_envelope_keys_device_id"), ["device_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("identity_envelope_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_envelope_keys_device_id"))
    op.drop_table("identity_envelope_keys")
    with op.batch_alter_table("identity_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_claims_device_id"))
        batch_op.drop_index(batch_op.f("ix_identity_claims_branch_id"))
    op.drop_table("identity_claims")
    with op.batch_alter_table("identity_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_certificates_device_id"))
    op.drop_table("identity_certificates")
