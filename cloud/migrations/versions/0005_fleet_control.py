"""fleet control: desired and reported device configuration, commands and command groups

Revision ID: 0005_fleet_control
Revises: 0001_initial
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_fleet_control"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("fleet_control",)
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "device_configs",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("sent_revision", sa.Integer(), nullable=True),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("send_count", sa.Integer(), nullable=False),
        sa.Column("reported_revision", sa.Integer(), nullable=True),
        sa.Column("reported_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_configs_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_configs")),
    )
    op.create_table(
        "command_groups",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("deadline_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_groups")),
    )
    op.create_table(
        "commands",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("group_id", BIG_ID, nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("deadline_at", WHEN, nullable=False),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("send_count", sa.Integer(), nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_commands_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["command_groups.id"], name=op.f("fk_commands_group_id_command_groups")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
    )
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_commands_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_commands_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_commands_status"), ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("commands")
    op.drop_table("command_groups")
    op.drop_table("device_configs")
