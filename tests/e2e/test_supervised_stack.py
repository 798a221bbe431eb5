"""``chatq up`` as an operator runs it, on Postgres + RabbitMQ: an inference worker killed with
``kill -9`` under load is started again, and every job still completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatq.demo import free_port
from shared.api_keys import IssuedKey, create_api_key
from shared.db.engine import dispose_engine
from shared.knowledge.schemas import TenantSettings
from shared.knowledge.store import configure_tenant
from tests.conftest import REPO_ROOT, NamespaceFactory, backend_env, settings_from_env
from tests.e2e.test_pipeline import poll_until_finished, submit

pytestmark = pytest.mark.e2e

JOBS = 30


def children_of(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == pid:
            found[int(entry.name)] = command
    return found


def worker_pids(up: subprocess.Popen[bytes]) -> set[int]:
    return {pid for pid, command in children_of(up.pid).items() if "services.worker" in command}


class Up:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, key: IssuedKey) -> None:
        self.process, self.base_url, self.key = process, base_url, key


@pytest.fixture
def up(
    tiny_model_dir: Path, tmp_path: Path, server_namespace_factory: NamespaceFactory
) -> Iterator[Up]:
    env = backend_env("servers", tmp_path, server_namespace_factory)
    port = free_port()
    env.update(
        CHATQ_MODEL_DIR=str(tiny_model_dir),
        CHATQ_API_PORT=str(port),
        CHATQ_LOG_LEVEL="WARNING",
        CHATQ_API_PROCESSES="1",
        CHATQ_DEFAULT_MAX_NEW_TOKENS="8",
    )
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("chatq")), "up"],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, "chatq up exited while starting"
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        settings = settings_from_env(env)
        key = create_api_key(settings.database_url, "supervised")
        configure_tenant(settings.database_url, key.tenant, TenantSettings(llm_fallback=True))
        dispose_engine(settings.database_url)
        yield Up(process, base_url, key)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0  # a clean stop after all that
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def test_a_killed_worker_is_restarted_and_every_job_completes(up: Up) -> None:
    headers = {"Authorization": f"Bearer {up.key.key}"}
    with httpx.Client(base_url=up.base_url, headers=headers, timeout=60) as client:
        deadline = time.monotonic() + 30
        while not worker_pids(up.process) and time.monotonic() < deadline:
            time.sleep(0.1)
        (victim,) = worker_pids(up.process)
        ids = [submit(client, query=f"Question {n}: can I pay by card?")["id"] for n in range(JOBS)]
        os.kill(victim, signal.SIGKILL)  # while it works through them
        jobs = [poll_until_finished(client, job_id, timeout_s=180) for job_id in ids]
    assert [job["status"] for job in jobs] == ["completed"] * JOBS
    assert up.process.poll() is None  # the stack went on
    survivors = worker_pids(up.process)
    assert len(survivors) == 1 and victim not in survivors  # a new worker took its place
