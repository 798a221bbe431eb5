"""From inference requests to engine requests, and from engine results to job outcomes.

Expired jobs never reach the model; cancelled and already finished jobs are skipped; the rest
are claimed (``in_progress``), get their session's transcript and a prompt within budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from services.worker.engine import Engine, GenerationRequest, GenerationResult
from services.worker.job_state import claim_jobs, load_session_turns
from services.worker.prompt import PromptBuilder, PromptTooLongError
from shared.db.models import JobStatus, utcnow
from shared.logs import get_logger
from shared.messaging.schemas import InferenceOutcome, InferenceRequest, JobError, Timings, Usage

log = get_logger(__name__)


@dataclass
class PreparedJobs:
    """``generation`` goes to the engine (``request_id`` is the caller's key); ``finished``
    maps keys to outcomes decided without the model (``None``: acknowledge, nothing to send)."""

    generation: list[GenerationRequest] = field(default_factory=list)
    finished: dict[str, InferenceOutcome | None] = field(default_factory=dict)


@dataclass
class BatchProcessor:
    engine: Engine
    prompts: PromptBuilder
    database_url: str
    max_attempts: int = 3

    def prepare(self, jobs: Sequence[tuple[str, InferenceRequest]]) -> PreparedJobs:
        """Decide, for each ``(key, request)``, whether and how the model runs it."""
        now = utcnow()
        prepared = PreparedJobs()
        live: list[tuple[str, InferenceRequest]] = []
        for key, request in jobs:
            if request.deadline_at is not None and request.deadline_at <= now:
                prepared.finished[key] = failure(
                    request, "expired", "deadline_exceeded",
                    "the job's deadline passed before it was scheduled",
                )  # fmt: skip
            else:
                live.append((key, request))

        claims = claim_jobs(self.database_url, {request.job_id for _, request in live})
        runnable = []
        for key, request in live:
            claim = claims.get(request.job_id)
            if claim is None or claim.status is not JobStatus.IN_PROGRESS:
                log.info("job_skipped", job_id=str(request.job_id), claim=claim)
                prepared.finished[key] = None
            elif claim.attempts > self.max_attempts:
                # taken this often without a result: it keeps killing workers, so it stops here
                prepared.finished[key] = failure(
                    request, "failed", "too_many_attempts",
                    f"the job was started {claim.attempts - 1} times without finishing",
                )  # fmt: skip
            else:
                runnable.append((key, request))

        session_ids = {r.session_id for _, r in runnable if r.session_id is not None}
        transcripts = load_session_turns(self.database_url, session_ids)
        for key, request in runnable:
            stored = transcripts.get(request.session_id, []) if request.session_id else []
            try:
                messages = self.prompts.build([*stored, *request.history], request.query)
            except PromptTooLongError as error:
                prepared.finished[key] = failure(request, "failed", "prompt_too_long", str(error))
                continue
            prepared.generation.append(GenerationRequest(key, messages, request.params))
        return prepared

    def completed(
        self, request: InferenceRequest, result: GenerationResult, admitted_at: datetime
    ) -> InferenceOutcome:
        return InferenceOutcome(
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
                queue_ms=round((admitted_at - request.submitted_at).total_seconds() * 1000, 3),
                inference_ms=result.inference_ms,
                batch_size=result.batch_size,
            ),
            engine=self.engine.info,
            finished_at=utcnow(),
        )


def failure(
    request: InferenceRequest, status: Literal["failed", "expired"], code: str, message: str
) -> InferenceOutcome:
    return InferenceOutcome(
        job_id=request.job_id,
        status=status,
        error=JobError(code=code, message=message),
        finished_at=utcnow(),
    )
