"""jobs and sessions belong to the tenant: every key of a tenant sees its jobs, a session goes on
across a key rotation, and an Idempotency-Key is unique per tenant

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _add_tenant(table: str) -> None:
    with op.batch_alter_table(table) as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.Uuid(), nullable=True))
    op.execute(
        f"UPDATE {table} SET tenant_id = "
        f"(SELECT api_keys.tenant_id FROM api_keys WHERE api_keys.id = {table}.api_key_id)"
    )


def upgrade() -> None:
    _add_tenant("sessions")
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.alter_column("tenant_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.create_foreign_key(
            "fk_sessions_tenant_id_tenants", "tenants", ["tenant_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.drop_constraint("uq_sessions_api_key_id_external_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_sessions_tenant_id_external_id", ["tenant_id", "external_id"]
        )
    _add_tenant("jobs")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.alter_column("tenant_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.create_foreign_key(
            "fk_jobs_tenant_id_tenants", "tenants", ["tenant_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.drop_constraint("uq_jobs_api_key_id_idempotency_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_jobs_tenant_id_idempotency_key", ["tenant_id", "idempotency_key"]
        )
        batch_op.create_index(
            "ix_jobs_tenant_id_created_at", ["tenant_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_tenant_id_created_at")
        batch_op.drop_constraint("uq_jobs_tenant_id_idempotency_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_jobs_api_key_id_idempotency_key", ["api_key_id", "idempotency_key"]
        )
        batch_op.drop_constraint("fk_jobs_tenant_id_tenants", type_="foreignkey")
        batch_op.drop_column("tenant_id")
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.drop_constraint("uq_sessions_tenant_id_external_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_sessions_api_key_id_external_id", ["api_key_id", "external_id"]
        )
        batch_op.drop_constraint("fk_sessions_tenant_id_tenants", type_="foreignkey")
        batch_op.drop_column("tenant_id")
