"""Fixtures of the integration tests that talk to the API in-process (Flask's test client)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from services.api.app import create_app
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings, get_settings
from shared.db.engine import dispose_engine, session_scope
from shared.db.models import Tenant
from tests.conftest import NamespaceFactory, backend_env, prepare_backend, settings_from_env


@dataclass
class TenantApi:
    """The API as a tenant's keys see it: its key, a colleague key, another tenant's key."""

    client: FlaskClient
    settings: Settings
    key: IssuedKey
    colleague: IssuedKey  # another key of the same tenant
    stranger: IssuedKey  # a key of another tenant

    def auth(self, key: IssuedKey | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {(key or self.key).key}"}

    def put(self, path: str, body: Any, key: IssuedKey | None = None) -> Any:
        return self.client.put(path, json=body, headers=self.auth(key))

    def rows(self, model: type) -> int:
        with session_scope(self.settings.database_url) as session:
            return session.scalar(select(func.count()).select_from(model)) or 0

    def version(self) -> int:
        with session_scope(self.settings.database_url) as session:
            return session.scalar(select(func.max(Tenant.knowledge_version))) or 0


@pytest.fixture
def api(backend_settings: Settings) -> TenantApi:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    colleague = create_api_key(url, "shop-rotated", tenant="shop")
    stranger = create_api_key(url, "school")
    app = create_app(backend_settings)
    return TenantApi(app.test_client(), backend_settings, key, colleague, stranger)


@pytest.fixture
def command_env(monkeypatch: pytest.MonkeyPatch, backend_settings: Settings) -> Iterator[Settings]:
    """``chatq.cli.main()`` in this process reads the backend's settings."""
    monkeypatch.setenv("CHATQ_DATABASE_URL", backend_settings.database_url)
    monkeypatch.setenv("CHATQ_DATA_DIR", str(backend_settings.data_dir))
    get_settings.cache_clear()
    yield backend_settings
    get_settings.cache_clear()


@pytest.fixture
def postgres_settings(
    tmp_path: Path, server_namespace_factory: NamespaceFactory
) -> Iterator[Settings]:
    """A fresh backend on the real servers only, for what only Postgres does (batched
    statements, notifications)."""
    settings = settings_from_env(backend_env("servers", tmp_path, server_namespace_factory))
    prepare_backend(settings)
    yield settings
    dispose_engine(settings.database_url)
