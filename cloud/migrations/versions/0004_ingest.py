"""ingest: batch receipts, readings (partitioned by month on PostgreSQL), device events,
gateway health, downlink counters

Revision ID: 0004_ingest
Revises: 0001_initial
Create Date: 2026-11-28
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004_ingest"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = ("ingest",)
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "batch_receipts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("envelope_bytes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_receipts")),
        sa.UniqueConstraint(
            "gateway",
            "key_version",
            "seq",
            name=op.f("uq_batch_receipts_gateway_key_version_seq"),
        ),
    )
    with op.batch_alter_table("batch_receipts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_batch_receipts_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "downlink_counters",
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("next_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("gateway", name=op.f("pk_downlink_counters")),
    )
    op.create_table(
        "gateway_health",
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_estimated", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.Column("queue_depth", sa.BigInteger(), nullable=True),
        sa.Column("dropped_batches", sa.BigInteger(), nullable=True),
        sa.Column("dropped_bytes", sa.BigInteger(), nullable=True),
        sa.Column("lost_first", sa.BigInteger(), nullable=True),
        sa.Column("lost_last", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("gateway", name=op.f("pk_gateway_health")),
    )
    op.create_table(
        "device_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("receipt_id", sa.BigInteger(), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_estimated", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("data_class", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["batch_receipts.id"],
            name=op.f("fk_device_events_receipt_id_batch_receipts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_events")),
    )
    with op.batch_alter_table("device_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_events_class_time", ["data_class", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_device_events_device_order", ["device", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_device_events_receipt_id"), ["receipt_id"], unique=False
        )

    # On PostgreSQL the readings are partitioned by month of measured_at (the primary key
    # includes it for that reason); the partitions live in their own schema, made ahead of
    # time by cloud.ingest.partitions, with a default partition for anything else.
    options: dict[str, Any] = {"postgresql_partition_by": "RANGE (measured_at)"} if postgres else {}
    op.create_table(
        "readings",
        sa.Column("receipt_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("value_kind", sa.String(length=8), nullable=False),
        sa.Column("value_num", sa.Double(), nullable=True),
        sa.Column("value_text", sa.Text(), nullable=True),
        sa.Column("value_bytes", sa.LargeBinary(), nullable=True),
        sa.Column("time_estimated", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_class", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["batch_receipts.id"],
            name=op.f("fk_readings_receipt_id_batch_receipts"),
        ),
        sa.PrimaryKeyConstraint("receipt_id", "position", "measured_at", name=op.f("pk_readings")),
        **options,
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.create_index("ix_readings_class_time", ["data_class", "measured_at"], unique=False)
        batch_op.create_index(
            "ix_readings_device_metric_time", ["device", "metric", "measured_at"], unique=False
        )
    if postgres:
        from cloud.ingest.partitions import create_partitions

        create_partitions(op.get_bind())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        from cloud.ingest.partitions import SCHEMA

        op.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % SCHEMA)
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index("ix_readings_device_metric_time")
        batch_op.drop_index("ix_readings_class_time")
    op.drop_table("readings")
    with op.batch_alter_table("device_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_events_receipt_id"))
        batch_op.drop_index("ix_device_events_device_order")
        batch_op.drop_index("ix_device_events_class_time")
    op.drop_table("device_events")
    op.drop_table("gateway_health")
    op.drop_table("downlink_counters")
    with op.batch_alter_table("batch_receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_receipts_received_at"))
    op.drop_table("batch_receipts")
