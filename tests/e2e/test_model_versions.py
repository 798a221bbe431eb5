"""Model versions on a running stack (Postgres + RabbitMQ): jobs keep flowing while the operator
activates another version; none is lost or failed, each names the version that answered it, and
the jobs submitted after the switch are answered by the new version."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.api_keys import create_api_key
from shared.db.engine import dispose_engine
from shared.model_layout import ModelLayout
from shared.model_versions import register_model_version
from tests.conftest import TEST_CACHE, NamespaceFactory, RunningStack, start_stack
from tests.e2e.test_pipeline import poll_until_finished

pytestmark = pytest.mark.e2e

REFRESH_S = 0.5


@pytest.fixture(scope="module")
def second_model_dir() -> Path:
    """The tiny model's shape with other random weights: other answers."""
    from training.model_build import ModelSource, build_model
    from training.random_model import build_random_model

    source = TEST_CACHE / "tiny-seed1-source"
    if not (source / "config.json").is_file():
        shutil.rmtree(source, ignore_errors=True)
        build_random_model(source, "tiny", seed=1)
    target = TEST_CACHE / "tiny-seed1"
    build_model(ModelSource.from_folder(source), target, progress=False)
    return target


@pytest.fixture
def running(
    tiny_model_dir: Path, tmp_path: Path, server_namespace_factory: NamespaceFactory
) -> Iterator[RunningStack]:
    running = start_stack(
        "servers",
        tiny_model_dir,
        tmp_path,
        server_namespace_factory,
        max_batch_size="4",
        default_max_new_tokens="24",
        model_refresh_interval_s=str(REFRESH_S),
    )
    yield running
    running.stack.stop()
    dispose_engine(running.settings.database_url)


def test_activating_a_version_under_load_loses_no_job(
    running: RunningStack, second_model_dir: Path
) -> None:
    database_url = running.settings.database_url
    register_model_version(database_url, "tiny-v2", second_model_dir)
    operator = create_api_key(database_url, "ops", scopes=["operator"])
    default_name = ModelLayout(running.settings.model_dir).require_manifest().name
    submitted: list[tuple[float, str]] = []
    stop = threading.Event()

    def submit_continuously() -> None:
        with httpx.Client(base_url=running.base_url, headers=running.auth, timeout=30) as http:
            while not stop.is_set():
                response = http.post("/v1/jobs", json={"query": "Where is my order?"})
                assert response.status_code == 202, response.text
                submitted.append((time.monotonic(), response.json()["id"]))
                time.sleep(0.05)

    submitter = threading.Thread(target=submit_continuously)
    submitter.start()
    try:
        time.sleep(3)
        with httpx.Client(base_url=running.base_url, timeout=30) as http:
            # a tenant's admin may not change what every tenant is answered by
            refused = http.post("/v1/operator/models/tiny-v2/activate", headers=running.auth)
            assert refused.status_code == 403
            activated = http.post(
                "/v1/operator/models/tiny-v2/activate",
                headers={"Authorization": f"Bearer {operator.key}"},
            )
            assert activated.status_code == 200, activated.text
            assert activated.json()["active"] is True
        activated_at = time.monotonic()
        time.sleep(6)
    finally:
        stop.set()
        submitter.join()

    jobs: list[tuple[float, dict[str, Any]]] = []
    with httpx.Client(base_url=running.base_url, headers=running.auth, timeout=30) as http:
        for at, job_id in submitted:
            jobs.append((at, poll_until_finished(http, job_id, timeout_s=120)))
    assert len(jobs) > 40
    assert [job["status"] for _, job in jobs] == ["completed"] * len(jobs)
    versions = [job["model_version"] for _, job in jobs]
    assert set(versions) == {default_name, "tiny-v2"}
    # one switch: the old version's answers, then the new one's (by submission time)
    switched = versions.index("tiny-v2")
    assert versions[:switched] == [default_name] * switched
    late = [job for at, job in jobs if at > activated_at + REFRESH_S + 3]
    assert late and all(job["model_version"] == "tiny-v2" for job in late)
    assert all(job["engine"]["version"] == job["model_version"] for job in late)
