"""Shared fixtures: backends (embedded, and real Postgres + RabbitMQ), the tiny model, stacks.

Each test run gets its own Postgres database and RabbitMQ virtual host (dropped at the end), so
runs never collide. Servers are found through ``CHATQ_TEST_POSTGRES_URL`` and
``CHATQ_TEST_RABBITMQ_URL`` (defaults: the local services on their standard ports).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatq.demo import free_port
from chatq.namespaces import Namespace, ServersUnavailableError, create_namespace, drop_namespace
from chatq.stack import Stack
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings
from shared.db.engine import dispose_engine, session_scope
from shared.db.migrate import upgrade_database
from shared.db.models import Base
from shared.knowledge.schemas import TenantSettings
from shared.knowledge.store import configure_tenant
from shared.messaging.broker import broker_connection
from shared.messaging.topology import ALL_QUEUES, declare_topology

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_CACHE = REPO_ROOT / ".cache" / "test-models"

NamespaceFactory = Callable[[], Namespace]

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


@pytest.fixture(scope="session")
def server_namespace_factory() -> Iterator[NamespaceFactory]:
    """Makes a database and a virtual host of this test run's own; drops them all at the end."""
    created: list[Namespace] = []

    def make() -> Namespace:
        try:
            namespace = create_namespace("chatq_test")
        except ServersUnavailableError as error:
            pytest.fail(str(error))
        created.append(namespace)
        return namespace

    yield make
    for namespace in created:
        drop_namespace(namespace)


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
    """The settings a process started with ``env`` would read (lists in JSON included)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return Settings()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (``chatq up`` gives its children
    consecutive metrics ports)."""
    for _ in range(100):
        first = free_port()
        if first + count > 65_535:
            continue
        probes = []
        try:
            for port in range(first, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


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
    # these stacks test the pipeline with the model: no knowledge, the model answers alone
    configure_tenant(settings.database_url, key.tenant, TenantSettings(llm_fallback=True))
    return RunningStack(stack, settings, key, backend)
