"""batches: the ``batches`` table, each job's batch (``batch_id``, ``batch_index``,
``custom_id``), batch webhook events (``webhook_deliveries.batch_id``), the tenant-share
index that leaves batch jobs out, and an index for listing dead webhooks (the operator
dashboard, ``chatq status``)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "in_progress",
                "cancelling",
                "completed",
                "cancelled",
                name="batch_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("released", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelling_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_batches_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_batches_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_batches_tenant_id_idempotency_key")
        ),
    )
    op.create_index(op.f("ix_batches_status"), "batches", ["status"], unique=False)
    op.create_index(
        "ix_batches_tenant_id_created_at", "batches", ["tenant_id", "created_at"], unique=False
    )

    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("batch_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("custom_id", sa.String(length=128), nullable=True))
        batch_op.create_foreign_key(
            "fk_jobs_batch_id_batches", "batches", ["batch_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_unique_constraint(
            "uq_jobs_batch_id_batch_index", ["batch_id", "batch_index"]
        )
        batch_op.create_index("ix_jobs_batch_id_status", ["batch_id", "status"], unique=False)
        # the tenant's share counts open jobs outside batches: batch_id joins the index
        batch_op.drop_index("ix_jobs_tenant_id_status")
        batch_op.create_index(
            "ix_jobs_tenant_id_status_batch_id", ["tenant_id", "status", "batch_id"], unique=False
        )

    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.Uuid(), nullable=True))
        batch_op.alter_column("job_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.create_foreign_key(
            "fk_webhook_deliveries_batch_id_batches",
            "batches",
            ["batch_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint(
            "uq_webhook_deliveries_batch_id_event_type", ["batch_id", "event_type"]
        )
        # a delivery is a job's event or a batch's, never both nor neither
        batch_op.create_check_constraint(
            op.f("ck_webhook_deliveries_one_subject"), "(job_id IS NULL) <> (batch_id IS NULL)"
        )
        batch_op.create_index(
            "ix_webhook_deliveries_status_created_at", ["status", "created_at"], unique=False
        )


def downgrade() -> None:
    op.execute("DELETE FROM webhook_deliveries WHERE batch_id IS NOT NULL")
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_status_created_at")
        batch_op.drop_constraint(op.f("ck_webhook_deliveries_one_subject"), type_="check")
        batch_op.drop_constraint("uq_webhook_deliveries_batch_id_event_type", type_="unique")
        batch_op.drop_constraint("fk_webhook_deliveries_batch_id_batches", type_="foreignkey")
        batch_op.alter_column("job_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column("batch_id")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_tenant_id_status_batch_id")
        batch_op.create_index("ix_jobs_tenant_id_status", ["tenant_id", "status"], unique=False)
        batch_op.drop_index("ix_jobs_batch_id_status")
        batch_op.drop_constraint("uq_jobs_batch_id_batch_index", type_="unique")
        batch_op.drop_constraint("fk_jobs_batch_id_batches", type_="foreignkey")
        batch_op.drop_column("custom_id")
        batch_op.drop_column("batch_index")
        batch_op.drop_column("batch_id")
    op.drop_index("ix_batches_tenant_id_created_at", table_name="batches")
    op.drop_index(op.f("ix_batches_status"), table_name="batches")
    op.drop_table("batches")
