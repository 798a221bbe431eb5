"""Jobs a worker cannot finish end ``failed`` with a reason instead of looping forever."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from services.worker.engine.onnx_runtime import load_onnx_engine
from services.worker.inference import BatchProcessor
from services.worker.prompt import PromptBuilder
from shared.api_keys import create_api_key
from shared.config import Device, Settings
from shared.db.engine import session_scope
from shared.db.models import Job, utcnow
from shared.messaging.schemas import GenerationParams, InferenceRequest
from shared.model_layout import ModelLayout
from tests.integration.factories import make_job


@pytest.fixture
def processor(backend_settings: Settings, tiny_model_dir: Path) -> BatchProcessor:
    engine = load_onnx_engine(ModelLayout(tiny_model_dir).onnx_dir, Device.CPU, 0, "tiny")
    prompts = PromptBuilder("Be brief.", 256, engine.count_prompt_tokens)
    return BatchProcessor(engine, prompts, backend_settings.database_url, max_attempts=3)


def request_for(job: Job, query: str = "Where is my order?") -> InferenceRequest:
    return InferenceRequest(
        job_id=job.id,
        query=query,
        params=GenerationParams(max_new_tokens=4),
        submitted_at=utcnow(),
    )


def test_a_job_taken_too_often_fails_as_poison(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    good, poison = make_job(url, key.id), make_job(url, key.id)
    with session_scope(url) as session:
        session.execute(update(Job).where(Job.id == poison.id).values(attempts=3))
    prepared = processor.prepare([("good", request_for(good)), ("poison", request_for(poison))])
    assert [g.request_id for g in prepared.generation] == ["good"]
    outcome = prepared.finished["poison"]
    assert outcome is not None and outcome.status == "failed"
    assert outcome.error is not None and outcome.error.code == "too_many_attempts"


def test_a_question_that_cannot_fit_fails_with_a_reason(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    job = make_job(url, key.id)
    prepared = processor.prepare([("long", request_for(job, "refund " * 400))])
    outcome = prepared.finished["long"]
    assert outcome is not None and outcome.error is not None
    assert outcome.error.code == "prompt_too_long"
