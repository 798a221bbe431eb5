"""outbox leases: ``next_attempt_at`` (the time until which the row is leased) replaces
``created_at``; ``attempts`` and ``last_error``, which nothing read, go

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    # a row left from before was due once its grace had passed: due at once now
    op.execute("UPDATE outbox SET next_attempt_at = created_at")
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.alter_column(
            "next_attempt_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.drop_index(batch_op.f("ix_outbox_created_at"))
        batch_op.drop_column("created_at")
        batch_op.drop_column("attempts")
        batch_op.drop_column("last_error")
        batch_op.create_index(
            batch_op.f("ix_outbox_next_attempt_at"), ["next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
    op.execute("UPDATE outbox SET created_at = next_attempt_at")
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.alter_column(
            "created_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.alter_column("attempts", existing_type=sa.Integer(), server_default=None)
        batch_op.drop_index(batch_op.f("ix_outbox_next_attempt_at"))
        batch_op.drop_column("next_attempt_at")
        batch_op.create_index(batch_op.f("ix_outbox_created_at"), ["created_at"], unique=False)
