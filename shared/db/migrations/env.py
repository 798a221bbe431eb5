"""Alembic environment: runs migrations on the URL set by shared.db.migrate."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import event

from shared.db.engine import create_db_engine
from shared.db.models import Base

target_metadata = Base.metadata


def _foreign_keys_off(dbapi_connection: Any, _record: Any) -> None:
    # SQLite alters a table by copying it, dropping the old one and renaming the copy; with
    # foreign keys on, dropping e.g. api_keys would cascade-delete every job and session.
    # The pragma only takes effect outside a transaction, so it is set as the connection opens.
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:  # a bare `alembic` command, without shared.db.migrate's configuration
        raise RuntimeError("no database URL: run migrations with `chatq db upgrade`")
    engine = create_db_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _foreign_keys_off)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if connection.dialect.name == "sqlite":
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("chatq migrations run online only: use `chatq db upgrade`.")
run_migrations_online()
