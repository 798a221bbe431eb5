"""The public representation of a job: the HTTP API's body and the webhooks' ``data``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.db.models import Job, JobStatus


class JobLinks(BaseModel):
    self: str
    cancel: str
    feedback: str | None = None  # None in answers of servers from before feedback
    batch: str | None = None  # the batch the job came in, if any


class JobView(BaseModel):
    id: uuid.UUID
    object: str = "chat.job"
    status: JobStatus
    query: str
    session_id: str | None
    response: str | None
    route: str | None
    sources: list[dict[str, Any]]
    intent: dict[str, Any] | None
    handoff: bool
    moderation: dict[str, Any] | None
    usage: dict[str, Any] | None
    timings: dict[str, Any] | None
    engine: dict[str, Any] | None
    # the model version that generated the answer (None: no model ran, or an older server)
    model_version: str | None = None
    # the batch the job came in and the name its line gave it (None: submitted alone; no
    # custom_id for the jobs of POST /v1/jobs/batch)
    batch_id: uuid.UUID | None = None
    custom_id: str | None = None
    error: dict[str, Any] | None
    metadata: dict[str, Any]
    priority: int
    deadline_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    links: JobLinks

    @classmethod
    def from_job(cls, job: Job) -> JobView:
        return cls(
            id=job.id,
            status=job.status,
            query=job.query,
            session_id=job.session.external_id if job.session else None,
            response=job.response,
            route=job.route,
            sources=job.sources or [],
            intent=job.intent,
            handoff=bool(job.handoff),
            moderation=job.moderation,
            usage=job.usage,
            timings=job.timings,
            engine=job.engine,
            model_version=job.model_version,
            batch_id=job.batch_id,
            custom_id=job.custom_id,
            error=job.error,
            metadata=job.metadata_,
            priority=job.priority,
            deadline_at=job.deadline_at,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            links=JobLinks(
                self=f"/v1/jobs/{job.id}",
                cancel=f"/v1/jobs/{job.id}/cancel",
                feedback=f"/v1/jobs/{job.id}/feedback",
                batch=f"/v1/batches/{job.batch_id}" if job.batch_id else None,
            ),
        )
