"""Rows for integration tests, made the way the API makes them."""

from __future__ import annotations

import uuid
from typing import Any

from shared.db.engine import session_scope
from shared.db.models import ApiKey, ChatSession, Job, JobStatus, utcnow
from shared.messaging.schemas import EngineInfo, InferenceOutcome, Timings, Usage


def make_job(database_url: str, api_key_id: uuid.UUID, **fields: Any) -> Job:
    session_external_id = fields.pop("session_external_id", None)
    now = utcnow()
    with session_scope(database_url) as session:
        key = session.get(ApiKey, api_key_id)
        assert key is not None, "make the job's API key first"
        tenant_id = key.tenant_id
        chat_session = None
        if session_external_id:
            chat_session = ChatSession(
                tenant_id=tenant_id, api_key_id=api_key_id, external_id=session_external_id
            )
            session.add(chat_session)
            session.flush()
        job = Job(
            tenant_id=tenant_id,
            api_key_id=api_key_id,
            session_id=chat_session.id if chat_session else fields.pop("session_id", None),
            status=fields.pop("status", JobStatus.QUEUED),
            query=fields.pop("query", "Where is my order?"),
            request_hash="0" * 64,
            created_at=now,
            updated_at=now,
            **fields,
        )
        session.add(job)
    return job


def completed_outcome(job_id: uuid.UUID, text: str = "It ships tomorrow.") -> InferenceOutcome:
    return InferenceOutcome(
        job_id=job_id,
        status="completed",
        response=text,
        route="llm",
        finish_reason="stop",
        usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
        timings=Timings(queue_ms=1.0, inference_ms=2.0, batch_size=3),
        engine=EngineInfo(name="onnxruntime", providers=["CPUExecutionProvider"], model="tiny"),
        finished_at=utcnow(),
    )
