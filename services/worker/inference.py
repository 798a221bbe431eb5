"""One batch of inference requests → one outcome per job (or none, for jobs that must not run).

Expired jobs never reach the model; cancelled and already finished jobs are skipped; the rest
get their session's transcript, a prompt within budget, and one batched generation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.worker.engine import Engine, GenerationRequest
from services.worker.job_state import claim_jobs, load_session_turns
from services.worker.prompt import PromptBuilder, PromptTooLongError
from shared.db.models import JobStatus, utcnow
from shared.logs import get_logger
from shared.messaging.schemas import InferenceOutcome, InferenceRequest, JobError, Timings, Usage

log = get_logger(__name__)

RUNNABLE = frozenset({JobStatus.IN_PROGRESS})


@dataclass
class BatchProcessor:
    engine: Engine
    prompts: PromptBuilder
    database_url: str

    def process(self, requests: Sequence[InferenceRequest]) -> list[InferenceOutcome | None]:
        """Outcomes in the order of ``requests``; ``None`` where a job must not run."""
        started = utcnow()
        outcomes: list[InferenceOutcome | None] = [None] * len(requests)

        live: list[int] = []
        for index, request in enumerate(requests):
            if request.deadline_at is not None and request.deadline_at <= started:
                outcomes[index] = _failure(
                    request,
                    "expired",
                    "deadline_exceeded",
                    "the job's deadline passed before it was scheduled",
                )
            else:
                live.append(index)

        statuses = claim_jobs(self.database_url, {requests[i].job_id for i in live})
        runnable = []
        for index in live:
            status = statuses.get(requests[index].job_id)
            if status in RUNNABLE:
                runnable.append(index)
            else:
                log.info("job_skipped", job_id=str(requests[index].job_id), status=status)

        session_ids = {requests[i].session_id for i in runnable if requests[i].session_id}
        transcripts = load_session_turns(self.database_url, session_ids)

        generation: list[GenerationRequest] = []
        for index in runnable:
            request = requests[index]
            stored = transcripts.get(request.session_id, []) if request.session_id else []
            try:
                messages = self.prompts.build([*stored, *request.history], request.query)
            except PromptTooLongError as error:
                outcomes[index] = _failure(request, "failed", "prompt_too_long", str(error))
                continue
            generation.append(GenerationRequest(str(index), messages, request.params))

        if generation:
            clock = time.perf_counter()
            results = self.engine.generate(generation)
            inference_ms = (time.perf_counter() - clock) * 1000
            finished = utcnow()
            for result in results:
                index = int(result.request_id)
                request = requests[index]
                outcomes[index] = InferenceOutcome(
                    job_id=request.job_id,
                    status="completed",
                    response=result.text,
                    route="llm",
                    finish_reason=result.finish_reason,
                    usage=Usage(
                        prompt_tokens=result.prompt_tokens,
                        completion_tokens=result.completion_tokens,
                        total_tokens=result.prompt_tokens + result.completion_tokens,
                    ),
                    timings=Timings(
                        queue_ms=_ms_between(request.submitted_at, started),
                        inference_ms=round(inference_ms, 3),
                        batch_size=len(generation),
                    ),
                    engine=self.engine.info,
                    finished_at=finished,
                )
            log.info(
                "batch_generated",
                batch_size=len(generation),
                inference_ms=round(inference_ms, 1),
                completion_tokens=sum(r.completion_tokens for r in results),
            )
        return outcomes


def _ms_between(earlier: datetime, later: datetime) -> float:
    return round((later - earlier).total_seconds() * 1000, 3)


def _failure(
    request: InferenceRequest, status: Literal["failed", "expired"], code: str, message: str
) -> InferenceOutcome:
    return InferenceOutcome(
        job_id=request.job_id,
        status=status,
        error=JobError(code=code, message=message),
        finished_at=utcnow(),
    )
