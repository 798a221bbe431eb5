"""moderation and anonymisation: tenants' own moderation lists, what moderation found on each job,
when a job's texts were anonymised or erased, and each session's placeholder map

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "moderation_lists",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("terms", JSON, nullable=False),
        sa.Column("allow", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_moderation_lists_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_lists")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_moderation_lists_tenant_id_name")),
    )
    op.create_index(
        op.f("ix_moderation_lists_tenant_id"), "moderation_lists", ["tenant_id"], unique=False
    )
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(sa.Column("moderation", JSON, nullable=True))
        batch_op.add_column(sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.add_column(sa.Column("pii_placeholders", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch_op:
        batch_op.drop_column("pii_placeholders")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("redacted_at")
        batch_op.drop_column("moderation")
    op.drop_index(op.f("ix_moderation_lists_tenant_id"), table_name="moderation_lists")
    op.drop_table("moderation_lists")
