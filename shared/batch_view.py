"""The public representation of a batch: the HTTP API's body and the ``batch.*`` webhooks'
``data`` (its counts are read from its jobs when it is shown, never kept beside them); and a
line of its results."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import Batch, BatchStatus, Job, JobStatus
from shared.job_view import JobView


class BatchRequestCounts(BaseModel):
    """The batch's jobs by status (OpenAI's ``request_counts``, with every status)."""

    total: int
    queued: int
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    expired: int

    @classmethod
    def from_counts(cls, total: int, by_status: Mapping[JobStatus, int]) -> BatchRequestCounts:
        return cls(total=total, **{status.value: by_status.get(status, 0) for status in JobStatus})


class BatchLinks(BaseModel):
    self: str
    results: str
    cancel: str


class BatchView(BaseModel):
    id: uuid.UUID
    object: Literal["batch"] = "batch"
    status: BatchStatus
    request_counts: BatchRequestCounts
    metadata: dict[str, Any]
    created_at: datetime
    cancelling_at: datetime | None = Field(description="when it was cancelled, if it was")
    completed_at: datetime | None = Field(
        description="when its last job ended (also for a cancelled batch)"
    )
    links: BatchLinks

    @classmethod
    def from_batch(cls, batch: Batch, by_status: Mapping[JobStatus, int]) -> BatchView:
        return cls(
            id=batch.id,
            status=batch.status,
            request_counts=BatchRequestCounts.from_counts(batch.total, by_status),
            metadata=batch.metadata_,
            created_at=batch.created_at,
            cancelling_at=batch.cancelling_at,
            completed_at=batch.completed_at,
            links=BatchLinks(
                self=f"/v1/batches/{batch.id}",
                results=f"/v1/batches/{batch.id}/results",
                cancel=f"/v1/batches/{batch.id}/cancel",
            ),
        )


class BatchResultLine(BaseModel):
    """One line of ``GET /v1/batches/{id}/results``: a job of the batch as it is now."""

    id: uuid.UUID = Field(description="the job's id")
    custom_id: str | None = Field(description="the line's `custom_id` (null from /v1/jobs/batch)")
    status: JobStatus
    response: JobView = Field(description="the job, as `GET /v1/jobs/{id}` shows it")


def count_jobs_by_status(
    session: Session, batch_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dict[JobStatus, int]]:
    """Each batch's jobs by status: one GROUP BY over the ``(batch_id, status)`` index."""
    counts: dict[uuid.UUID, dict[JobStatus, int]] = defaultdict(dict)
    if not batch_ids:
        return counts
    rows = session.execute(
        select(Job.batch_id, Job.status, func.count())
        .where(Job.batch_id.in_(list(batch_ids)))
        .group_by(Job.batch_id, Job.status)
    ).all()
    for batch_id, status, count in rows:
        assert batch_id is not None  # the IN above
        counts[batch_id][JobStatus(status)] = count
    return counts
