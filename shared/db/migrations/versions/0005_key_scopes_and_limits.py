"""keys with scopes, an expiry for rotation's grace period and their own rate limits; token
buckets and open waits shared by every API process; an index to count a tenant's open jobs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# Every scope there is at this revision: keys issued before scopes existed could do everything,
# and must go on doing it.
ALL_SCOPES_JSON = '["jobs:write", "jobs:read", "knowledge:write", "admin"]'


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(sa.Column("scopes", JSON, nullable=True))
        batch_op.add_column(sa.Column("rate_limit_per_s", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit_burst", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(f"UPDATE api_keys SET scopes = '{ALL_SCOPES_JSON}'")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.alter_column("scopes", existing_type=JSON, nullable=False)

    op.create_table(
        "rate_limit_buckets",
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("refilled_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_rate_limit_buckets_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key_id", name=op.f("pk_rate_limit_buckets")),
    )
    op.create_table(
        "open_waits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_open_waits_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_open_waits")),
    )
    with op.batch_alter_table("open_waits") as batch_op:
        batch_op.create_index(batch_op.f("ix_open_waits_api_key_id"), ["api_key_id"], unique=False)
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.create_index("ix_jobs_tenant_id_status", ["tenant_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_index("ix_jobs_tenant_id_status")
    with op.batch_alter_table("open_waits") as batch_op:
        batch_op.drop_index(batch_op.f("ix_open_waits_api_key_id"))
    op.drop_table("open_waits")
    op.drop_table("rate_limit_buckets")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("rate_limit_burst")
        batch_op.drop_column("rate_limit_per_s")
        batch_op.drop_column("scopes")
