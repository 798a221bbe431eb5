"""One end-to-end run on the real default model (SmolLM2-135M-Instruct, built by
`chatq model build`, which `make test` runs first)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.worker.engine.variant_choice import choose_variant
from shared.config import Settings
from shared.db.engine import dispose_engine
from shared.model_layout import ModelLayout
from tests.conftest import REPO_ROOT, NamespaceFactory, RunningStack, start_stack
from training.default_model import DEFAULT_MODEL_NAME
from training.model_build import ModelSource, build_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def default_model_dir() -> Path:
    model_dir = Settings().model_dir  # CHATQ_MODEL_DIR or .chatq/models/default
    if ModelLayout(model_dir).read_manifest() is None:
        build_model(ModelSource.default(REPO_ROOT / ".chatq" / "cache"), model_dir)
    return model_dir


@pytest.fixture(scope="module")
def running(
    default_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    server_namespace_factory: NamespaceFactory,
) -> Iterator[RunningStack]:
    running = start_stack(
        "embedded",
        default_model_dir,
        tmp_path_factory.mktemp("default-model"),
        server_namespace_factory,
        default_max_new_tokens="48",
    )
    yield running
    running.stack.stop()
    dispose_engine(running.settings.database_url)


def test_the_default_model_answers_the_example_questions(running: RunningStack) -> None:
    with httpx.Client(base_url=running.base_url, headers=running.auth, timeout=120) as client:
        ids = [
            client.post("/v1/jobs", json={"query": q}).json()["id"]
            for q in ("How do I reset my router?", "What is your refund policy?")
        ]
        jobs = [client.get(f"/v1/jobs/{i}", params={"wait": 60}).json() for i in ids]
    # CHATQ_MODEL_VARIANT=auto: int8 on a CPU with int8 dot products (make model builds it)
    variant = choose_variant(running.settings, ModelLayout(running.settings.model_dir)).variant
    for job in jobs:
        assert job["status"] == "completed", job
        assert job["engine"]["model"] == DEFAULT_MODEL_NAME
        assert job["engine"]["variant"] == variant
        # a real model writes words, not the byte soup of random weights
        assert len(re.findall(r"[A-Za-z]{3,}", job["response"])) >= 5, job["response"]
