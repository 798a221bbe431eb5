"""Alembic environment: runs migrations on the URL set by shared.db.migrate."""

from __future__ import annotations

from alembic import context

from shared.db.engine import create_db_engine
from shared.db.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = create_db_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("chatq migrations run online only: use `chatq db upgrade`.")
run_migrations_online()
