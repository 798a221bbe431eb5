"""The query and the answer of ``GET /v1/operator/dashboard``: what the operator dashboard draws.

The answer holds counts, timings and ids, never a job's query or response: the page shows every
tenant's traffic to the people who run the service, not what customers wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DashboardWindow(StrEnum):
    """How far back the plots reach. Each window is cut into at most 96 buckets, so a plot has
    as many bars as a screen can show, whatever the window."""

    FIFTEEN_MINUTES = "15m"
    ONE_HOUR = "1h"
    SIX_HOURS = "6h"
    ONE_DAY = "24h"

    @property
    def duration(self) -> timedelta:
        return WINDOW_SHAPES[self][0]

    @property
    def bucket(self) -> timedelta:
        return WINDOW_SHAPES[self][1]


WINDOW_SHAPES: dict[DashboardWindow, tuple[timedelta, timedelta]] = {
    DashboardWindow.FIFTEEN_MINUTES: (timedelta(minutes=15), timedelta(minutes=1)),
    DashboardWindow.ONE_HOUR: (timedelta(hours=1), timedelta(minutes=1)),
    DashboardWindow.SIX_HOURS: (timedelta(hours=6), timedelta(minutes=5)),
    DashboardWindow.ONE_DAY: (timedelta(hours=24), timedelta(minutes=15)),
}


class DashboardQuery(BaseModel):
    """The query string. Flask hands every parameter over as a list (``to_dict(flat=False)``);
    each is given at most once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: DashboardWindow = DashboardWindow.ONE_HOUR

    @field_validator("window", mode="before")
    @classmethod
    def _given_once(cls, value: object) -> object:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("give `window` at most once")
            return value[0]
        return value

    @classmethod
    def from_query(cls, args: Mapping[str, list[str]]) -> DashboardQuery:
        """Raises pydantic's ``ValidationError`` (a 422 naming the bad parameter)."""
        return cls.model_validate(dict(args))


class QueueDepth(BaseModel):
    name: str
    ready: int | None = Field(description="messages waiting; null when the broker was not read")
    consumers: int | None = Field(description="e.g. inference workers on chat.inference")


class ThroughputBucket(BaseModel):
    start: datetime
    completed: int
    failed: int


class LatencyBucket(BaseModel):
    """Percentiles of the jobs completed in one bucket; null where none completed."""

    start: datetime
    jobs: int
    total_ms_p50: float | None
    total_ms_p95: float | None
    queue_ms_p50: float | None
    queue_ms_p95: float | None


class BatchSizeCount(BaseModel):
    batch_size: int = Field(description="jobs the model generated together")
    jobs: int


class RouteCount(BaseModel):
    route: str = Field(description="moderation, rule, faq, cache, knowledge, llm or fallback")
    jobs: int


class RecentJob(BaseModel):
    id: uuid.UUID
    tenant: str
    status: str
    route: str | None
    moderation_flagged: bool | None = Field(description="null until the job has finished")
    moderation_action: str | None
    total_ms: float | None
    created_at: datetime


class DeadWebhook(BaseModel):
    id: str
    job_id: uuid.UUID | None = Field(description="null for a batch's event (`batch.completed`)")
    event_type: str
    url_host: str = Field(description="the receiver's host only: paths may carry tokens")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime


class OperatorDashboard(BaseModel):
    object: Literal["operator.dashboard"] = "operator.dashboard"
    generated_at: datetime
    window: DashboardWindow
    window_start: datetime
    bucket_s: int = Field(description="the width of each throughput and latency bucket")
    jobs_read: int = Field(description="finished jobs of the window the figures are drawn from")
    jobs_capped: bool = Field(
        description="true when the window held more finished jobs than are read: the figures "
        "cover the newest ones"
    )
    queues: list[QueueDepth]
    broker_note: str | None = Field(description="why the queues could not be read, if so")
    outbox_backlog: int = Field(description="accepted jobs not yet confirmed by the broker")
    webhooks_dead: int
    throughput: list[ThroughputBucket] = Field(description="oldest bucket first, every bucket")
    latency: list[LatencyBucket] = Field(description="oldest bucket first, every bucket")
    batch_sizes: list[BatchSizeCount] = Field(description="of jobs the model answered")
    routes: list[RouteCount] = Field(description="of completed jobs, largest first")
    recent_jobs: list[RecentJob] = Field(description="newest first, every tenant's")
    dead_webhooks: list[DeadWebhook] = Field(description="newest first")
