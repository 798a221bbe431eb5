"""Migrations keep existing data and end where the models are (SQLite and Postgres)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from shared.db.migrate import upgrade_database
from shared.db.models import Base
from tests.conftest import NamespaceFactory

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(
    request: pytest.FixtureRequest, tmp_path: Path, server_namespace_factory: NamespaceFactory
) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chatq.db'}"
    return server_namespace_factory().database_url


def test_upgrading_keeps_jobs_and_sessions_and_gives_them_the_keys_tenant(
    empty_database: str,
) -> None:
    url = empty_database
    upgrade_database(url, "0002")  # a database from before tenants
    engine = create_engine(url)
    sqlite = url.startswith("sqlite")
    key, chat, job = (uuid.uuid4() for _ in range(3))
    ids = {"key": key, "session": chat, "job": job}
    params = {name: (value.hex if sqlite else value) for name, value in ids.items()}
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_keys (id, name, key_prefix, key_hash, webhook_secret,"
                " allowed_cidrs, created_at) VALUES (:key, 'shop', 'cq_x', 'h', 'whsec_x', '[]',"
                " :now)"
            ),
            {**params, "now": now},
        )
        connection.execute(
            text(
                "INSERT INTO sessions (id, api_key_id, external_id, created_at,"
                " last_activity_at) VALUES (:session, :key, 'customer-1', :now, :now)"
            ),
            {**params, "now": now},
        )
        connection.execute(
            text(
                "INSERT INTO jobs (id, api_key_id, session_id, status, query, history, params,"
                " metadata, priority, request_hash, created_at, updated_at, attempts) VALUES"
                " (:job, :key, :session, 'queued', 'Where is my order?', '[]', '{}', '{}', 0,"
                " 'h', :now, :now, 0)"
            ),
            {**params, "now": now},
        )

    upgrade_database(url)

    with engine.begin() as connection:
        tenant = connection.execute(text("SELECT tenant_id FROM api_keys")).scalar_one()
        assert tenant is not None
        assert connection.execute(text("SELECT tenant_id FROM jobs")).scalar_one() == tenant
        assert connection.execute(text("SELECT tenant_id FROM sessions")).scalar_one() == tenant
        assert connection.execute(text("SELECT name FROM tenants")).scalar_one() == "shop"
        # the migrations end exactly where the models are: no drift
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
