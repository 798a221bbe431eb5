"""``chatq status`` on real servers, and what any command says when a server is away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.api_keys import create_api_key
from shared.config import Settings
from tests.conftest import NamespaceFactory, backend_env, prepare_backend, settings_from_env
from tests.integration.factories import make_job

pytestmark = pytest.mark.integration

CHATQ = str(Path(sys.executable).with_name("chatq"))
CLOSED_PORT_DATABASE = "postgresql+psycopg://chatq:s3cret@127.0.0.1:9/chatq"


@pytest.fixture
def server_settings(tmp_path: Path, server_namespace_factory: NamespaceFactory) -> Settings:
    """Postgres and RabbitMQ (the embedded default has no server to be away)."""
    settings = settings_from_env(backend_env("servers", tmp_path, server_namespace_factory))
    prepare_backend(settings)
    return settings


def run(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "CHATQ_DATA_DIR": str(settings.data_dir),
        "CHATQ_DATABASE_URL": settings.database_url,
        "CHATQ_BROKER_URL": settings.broker_url or "",
        **env,
    }
    return subprocess.run(
        [CHATQ, *args], env=environment, capture_output=True, text=True, timeout=60
    )


def test_status_shows_queues_with_their_consumers_and_jobs_by_status(
    backend_settings: Settings,
) -> None:
    key = create_api_key(backend_settings.database_url, "status")
    job = make_job(backend_settings.database_url, key.id)
    done = run(backend_settings, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["problems"] == {}
    assert status["jobs_by_status"] == {job.status.value: 1}
    assert status["queues"]["chat.inference"] == {"ready": 0, "consumers": 0}  # no worker
    assert set(status["queues"]) == {
        "chat.inference",
        "chat.postprocess",
        "chat.webhooks",
        "chat.dead-letter",
    }
    assert status["outbox_backlog"] == 0 and status["webhooks_dead"] == 0
    text = run(backend_settings, "status")
    assert "chat.inference" in text.stdout and "jobs: " in text.stdout


def test_with_the_database_away_status_says_so_in_a_line_and_still_reads_the_broker(
    server_settings: Settings,
) -> None:
    done = run(server_settings, "status", CHATQ_DATABASE_URL=CLOSED_PORT_DATABASE)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    problem = next(line for line in done.stdout.splitlines() if line.startswith("database:"))
    assert "postgresql+psycopg://chatq:***@127.0.0.1:9/chatq does not answer" in problem
    assert "s3cret" not in done.stdout
    assert "chat.inference" in done.stdout  # the broker answered


def test_any_command_with_the_database_away_says_so_in_one_line(
    server_settings: Settings,
) -> None:
    done = run(server_settings, "keys", "list", CHATQ_DATABASE_URL=CLOSED_PORT_DATABASE)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") <= 2 and "Traceback" not in done.stderr
    assert "the database at postgresql+psycopg://chatq:***@127.0.0.1:9/chatq" in done.stderr
    assert "CHATQ_DATABASE_URL" in done.stderr


def test_with_the_broker_away_status_says_so_in_a_line(server_settings: Settings) -> None:
    done = run(server_settings, "status", CHATQ_BROKER_URL="amqp://guest:guest@127.0.0.1:9//")
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    problem = next(line for line in done.stdout.splitlines() if line.startswith("broker:"))
    assert "127.0.0.1:9" in problem and "CHATQ_BROKER_URL" in problem
    assert "jobs: " in done.stdout  # the database answered
