"""What a stored outcome adds to the metrics: jobs by status and route, latencies, tokens/s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.messaging.schemas import Usage
from shared.metrics import (
    HANDOFFS,
    INFERENCE_LATENCY,
    JOBS_FINISHED,
    QUEUE_LATENCY,
    TOKENS_PER_SECOND,
    TOTAL_LATENCY,
)


@dataclass(frozen=True)
class FinishedJob:
    status: str
    route: str | None
    timings: dict[str, Any] | None  # the job's stored timings (Timings, total_ms set)
    usage: Usage | None
    handoff: bool


def observe_finished(job: FinishedJob) -> None:
    route = job.route or "none"  # failed and expired jobs may have none
    JOBS_FINISHED.labels(job.status, route).inc()
    if job.handoff:
        HANDOFFS.inc()
    timings = job.timings or {}
    if timings.get("total_ms") is not None:
        TOTAL_LATENCY.labels(route).observe(timings["total_ms"] / 1000)
    if timings.get("queue_ms") is not None:
        QUEUE_LATENCY.observe(timings["queue_ms"] / 1000)
    inference_ms = timings.get("inference_ms") or 0.0
    if inference_ms > 0:  # the model ran
        INFERENCE_LATENCY.observe(inference_ms / 1000)
        if job.usage is not None and job.usage.completion_tokens:
            TOKENS_PER_SECOND.observe(job.usage.completion_tokens / (inference_ms / 1000))
