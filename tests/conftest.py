"""Shared fixtures: backends (embedded, and real Postgres + RabbitMQ), the tiny model, stacks.

Each test run gets its own Postgres database and RabbitMQ virtual host (dropped at the end), so
runs never collide. Servers are found through ``CHATQ_TEST_POSTGRES_URL`` and
``CHATQ_TEST_RABBITMQ_URL`` (defaults: the local services on their standard ports).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy.engine import make_url

from chatq.demo import free_port
from chatq.stack import Stack
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings
from shared.db.engine import dispose_engine, session_scope
from shared.db.migrate import upgrade_database
from shared.db.models import Base
from shared.messaging.broker import broker_connection
from shared.messaging.topology import ALL_QUEUES, declare_topology

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_CACHE = REPO_ROOT / ".cache" / "test-models"

POSTGRES_URL = os.environ.get(
    "CHATQ_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("CHATQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

BACKENDS = ("embedded", "servers")


# --- the tiny model ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A 2-layer random Llama with a ChatML tokenizer, built once and cached (.cache/)."""
    from training.model_build import ModelSource, build_model
    from training.random_model import build_random_model

    source = TEST_CACHE / "tiny-source"
    if not (source / "config.json").is_file():
        shutil.rmtree(source, ignore_errors=True)
        build_random_model(source, "tiny", seed=0)
    target = TEST_CACHE / "tiny"
    build_model(ModelSource.from_folder(source), target, progress=False)
    return target


# --- backends -------------------------------------------------------------------------------


def _postgres_admin() -> psycopg.Connection:
    url = make_url(POSTGRES_URL)
    return psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        dbname=url.database, autocommit=True,
    )  # fmt: skip


def _rabbitmqctl(*args: str) -> None:
    completed = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {completed.stderr.strip()}")


@dataclass
class ServerNamespace:
    """A database and a virtual host of this test run's own."""

    database_url: str
    broker_url: str


NamespaceFactory = Callable[[], ServerNamespace]


@pytest.fixture(scope="session")
def server_namespace_factory() -> Iterator[NamespaceFactory]:
    created: list[tuple[str, str]] = []

    def make() -> ServerNamespace:
        name = f"chatq_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        try:
            with _postgres_admin() as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as error:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable ({error}); start it first")
        vhost = name.replace("_", "-")
        _rabbitmqctl("add_vhost", vhost)
        user = urlsplit(RABBITMQ_URL).username or "guest"
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        created.append((name, vhost))
        database_url = make_url(POSTGRES_URL).set(database=name).render_as_string(False)
        return ServerNamespace(database_url, RABBITMQ_URL.rstrip("/") + "/" + vhost)

    yield make
    for name, vhost in created:
        with _postgres_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _rabbitmqctl("delete_vhost", vhost)


def backend_env(
    backend: str, tmp: Path, server_namespace_factory: NamespaceFactory
) -> dict[str, str]:
    """``CHATQ_*`` variables for a fresh, empty backend of the given kind."""
    env = {"CHATQ_DATA_DIR": str(tmp / "data")}
    if backend == "servers":
        namespace = server_namespace_factory()
        env["CHATQ_DATABASE_URL"] = namespace.database_url
        env["CHATQ_BROKER_URL"] = namespace.broker_url
    else:
        env["CHATQ_DATABASE_URL"] = ""
        env["CHATQ_BROKER_URL"] = ""
    return env


def settings_from_env(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("CHATQ_").lower(): v for k, v in env.items()})


def prepare_backend(settings: Settings) -> None:
    upgrade_database(settings.database_url)
    with broker_connection(settings) as connection:
        declare_topology(connection)


@pytest.fixture(scope="module", params=BACKENDS)
def module_backend(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    server_namespace_factory: NamespaceFactory,
) -> Iterator[Settings]:
    """A migrated, declared backend for one test module (embedded, then real servers)."""
    tmp = tmp_path_factory.mktemp(request.param)
    settings = settings_from_env(backend_env(request.param, tmp, server_namespace_factory))
    prepare_backend(settings)
    yield settings
    dispose_engine(settings.database_url)


@pytest.fixture
def backend_settings(module_backend: Settings) -> Settings:
    """The module's backend, emptied: no rows, no queued messages."""
    with session_scope(module_backend.database_url) as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(table.delete())
    with broker_connection(module_backend) as connection:
        for queue in ALL_QUEUES:
            queue(connection.default_channel).purge()
    return module_backend


# --- whole stacks -----------------------------------------------------------------------------


@dataclass
class RunningStack:
    stack: Stack
    settings: Settings
    key: IssuedKey
    backend: str

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.key}"}


def start_stack(
    backend: str,
    model_dir: Path,
    tmp: Path,
    server_namespace_factory: NamespaceFactory,
    **overrides: str,
) -> RunningStack:
    env = backend_env(backend, tmp, server_namespace_factory)
    env.update(
        CHATQ_MODEL_DIR=str(model_dir),
        CHATQ_API_PORT=str(free_port()),
        CHATQ_WEBHOOK_ALLOW_PRIVATE="true",  # the test receiver listens on loopback
        CHATQ_LOG_LEVEL="WARNING",
        CHATQ_API_PROCESSES="1",
        CHATQ_OUTBOX_GRACE_S="1",
    )
    env.update({f"CHATQ_{k.upper()}": v for k, v in overrides.items()})
    settings = settings_from_env(env)
    stack = Stack(settings, env)
    stack.start()
    try:
        stack.wait_ready(timeout_s=120)
    except BaseException:
        stack.stop()
        raise
    key = create_api_key(settings.database_url, f"test-{backend}")
    return RunningStack(stack, settings, key, backend)
