"""From inference requests to engine requests, and from engine results to job outcomes.

Expired jobs never reach the model; cancelled and already finished jobs are skipped; the rest
are claimed (``in_progress``) and get their session's transcript, both in one transaction. The
worker does this on its preparer thread, ahead of the engine. The router then answers what
it can without the model (rules, FAQ, cache, knowledge, fallback); the rest get a prompt within
budget and go to the engine. A job whose tenant's knowledge is still being indexed waits aside
(``PreparedJobs.parked``), claimed, until the registry has it (``resume``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import structlog

from services.worker.engine import Engine, GenerationRequest, GenerationResult
from services.worker.job_state import Claim, claim_with_transcripts
from services.worker.prompt import PromptBuilder, PromptTooLongError
from services.worker.prompt_encoder import PromptEncoder, own_token_counter
from services.worker.router.router import ModelTask, RoutedAnswer, Router, RouterInput
from services.worker.router.tenant_knowledge import KnowledgeRegistry, TenantKnowledge
from shared.db.models import JobStatus, utcnow
from shared.knowledge.text import detect_language
from shared.logs import get_logger, job_context
from shared.messaging.schemas import (
    ChatTurn,
    InferenceOutcome,
    InferenceRequest,
    JobError,
    Route,
    Source,
    Timings,
    Usage,
)
from shared.moderation import Moderator

log = get_logger(__name__)


@dataclass(frozen=True)
class ClaimedJob:
    """A job claimed to run here, with its session's history (stored turns, then the
    request's own)."""

    key: str
    request: InferenceRequest
    history: list[ChatTurn]
    claim: Claim


@dataclass(frozen=True)
class ParkedJob:
    """A claimed job whose tenant's knowledge is being indexed (``loading``): routed once
    that ends (``BatchProcessor.resume``)."""

    job: ClaimedJob
    loading: Future[TenantKnowledge]


@dataclass
class PreparedJobs:
    """``generation`` goes to the engine (``request_id`` is the caller's key); ``finished``
    maps keys to outcomes decided without the model (``None``: acknowledge, nothing to send);
    ``parked`` wait for their tenant's knowledge."""

    generation: list[GenerationRequest] = field(default_factory=list)
    finished: dict[str, InferenceOutcome | None] = field(default_factory=dict)
    parked: list[ParkedJob] = field(default_factory=list)


@dataclass(frozen=True)
class _ModelRoute:
    """What a job sent to the model was routed as, for its outcome and the answer cache."""

    route: Route
    sources: list[Source]
    tenant_id: uuid.UUID | None
    knowledge_version: int
    cache_key: str | None
    route_ms: float
    moderation: dict[str, Any] | None  # what input moderation found
    moderator: Moderator | None  # the tenant's, for the text streamed while it is generated
    lang: str  # the customer's language, as post-processing moderates the answer


@dataclass
class BatchProcessor:
    engine: Engine
    prompts: PromptBuilder
    database_url: str
    max_attempts: int = 3
    # None: every job goes to the model (the engine-only worker of the speed benchmarks)
    router: Router | None = None
    registry: KnowledgeRegistry | None = None
    _model_routes: dict[str, _ModelRoute] = field(default_factory=dict)

    def prepare(self, jobs: Sequence[tuple[str, InferenceRequest]]) -> PreparedJobs:
        """Decide, for each ``(key, request)``, whether and how the model runs it."""
        now = utcnow()
        prepared = PreparedJobs()
        live: list[tuple[str, InferenceRequest]] = []
        for key, request in jobs:
            if expiry := past_deadline(request, now, "before it was scheduled"):
                prepared.finished[key] = expiry
            else:
                live.append((key, request))

        claimed = claim_with_transcripts(
            self.database_url, {request.job_id: request.session_id for _, request in live}
        )
        claims, transcripts = claimed.claims, claimed.transcripts
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
                stored = transcripts.get(request.session_id, []) if request.session_id else []
                runnable.append(ClaimedJob(key, request, [*stored, *request.history], claim))
        self._route(runnable, now, prepared)
        return prepared

    def resume(self, parked: Sequence[ParkedJob]) -> PreparedJobs:
        """``prepare`` for jobs that waited for their tenant's knowledge, once its loading has
        ended: they are routed, or wait again if a newer version is needed now. Raises what a
        loading raised (the database away): the caller requeues those jobs."""
        for waiting in parked:
            waiting.loading.result()
        now = utcnow()
        prepared = PreparedJobs()
        runnable = []
        for waiting in parked:
            expiry = past_deadline(
                waiting.job.request, now, "while its tenant's knowledge was indexed"
            )
            if expiry:
                prepared.finished[waiting.job.key] = expiry
            else:
                runnable.append(waiting.job)
        self._route(runnable, now, prepared)
        return prepared

    def _route(self, jobs: Sequence[ClaimedJob], now: datetime, prepared: PreparedJobs) -> None:
        """Route claimed jobs whose tenant's knowledge is held; park the others while the
        registry indexes it in the background (the rest of the batch does not wait)."""
        versions = {
            job.claim.tenant_id: job.claim.knowledge_version
            for job in jobs
            if job.claim.tenant_id is not None and job.claim.knowledge_version is not None
        }
        if self.registry is not None and self.router is not None:
            tenants, loading = self.registry.held_or_loading(versions)
        else:
            tenants, loading = {}, {}
        for job in jobs:
            tenant_id = job.claim.tenant_id
            if tenant_id is not None and tenant_id in loading:
                prepared.parked.append(ParkedJob(job, loading[tenant_id]))
                continue
            # every line logged while this job is routed and its prompt built names it
            with structlog.contextvars.bound_contextvars(
                **job_context(job.request.job_id, job.request.session_id)
            ):
                tenant = tenants.get(tenant_id) if tenant_id else None
                self._prepare_one(job, tenant, now, prepared)

    def _prepare_one(
        self,
        job: ClaimedJob,
        tenant: TenantKnowledge | None,
        now: datetime,
        prepared: PreparedJobs,
    ) -> None:
        """Route one claimed job: answered at once (``prepared.finished``) or queued for the
        model with its prompt (``prepared.generation``)."""
        key, request, history, claim = job.key, job.request, job.history, job.claim
        if self.router is not None and tenant is not None:
            decision = self.router.route(
                tenant,
                RouterInput(request.query, history, claim.signing_secret, request.params.greedy),
            )
            if isinstance(decision, RoutedAnswer):
                prepared.finished[key] = routed(request, decision, now)
                return
            task: ModelTask | None = decision
        else:
            task = None
        try:
            messages = self.prompts.build(
                history,
                (task.query if task else None) or request.query,  # masked by moderation
                system_prompt=task.system_prompt if task else None,
            )
        except PromptTooLongError as error:
            prepared.finished[key] = failure(request, "failed", "prompt_too_long", str(error))
            return
        self._model_routes[key] = _ModelRoute(
            route=task.route if task else "llm",
            sources=task.sources if task else [],
            tenant_id=tenant.tenant_id if tenant else None,
            knowledge_version=tenant.version if tenant else 0,
            cache_key=task.cache_key if task else None,
            route_ms=task.route_ms if task else 0.0,
            moderation=task.moderation if task else None,
            moderator=tenant.safety.moderator if tenant else None,
            lang=detect_language(request.query),
        )
        encoder = self.prompts.count_tokens
        encoded = encoder.encoded(messages) if isinstance(encoder, PromptEncoder) else None
        prepared.generation.append(
            GenerationRequest(
                key,
                messages,
                request.params,
                prompt_ids=tuple(encoded.ids) if encoded is not None else None,
                encoded_by=encoder.encoded_by if isinstance(encoder, PromptEncoder) else None,
                prompt_prefix=encoded.shared_prefix if encoded is not None else 0,
            )
        )

    def forget(self, key: str) -> None:
        """Drop what was kept for a job that will not complete here (engine error, requeue)."""
        self._model_routes.pop(key, None)

    def stream_flagger(self, key: str) -> Callable[[str], bool]:
        """Whether text streamed for the job ``key`` is flagged by its tenant's output
        moderation (the stored answer is moderated again, whole, in post-processing)."""
        routed_as = self._model_routes.get(key)
        if routed_as is None or routed_as.moderator is None:
            return lambda _text: False
        moderator, lang = routed_as.moderator, routed_as.lang
        return lambda text: moderator.check(text, stage="output", lang=lang).flagged

    def use_engine(self, engine: Engine) -> None:
        """Generate with ``engine`` from now on (a model version switch, on the engine thread
        while no sequence is decoding): prompts are counted with its tokenizer, and the answer
        cache keys name its model, so no answer of the old model is served as the new one's."""
        self.engine = engine
        self.prompts = replace(self.prompts, count_tokens=own_token_counter(engine))
        if self.router is not None:
            self.router.model_name = f"{engine.info.model}:{engine.info.variant}"

    def completed(
        self, request: InferenceRequest, result: GenerationResult, admitted_at: datetime
    ) -> InferenceOutcome:
        routed_as = self._model_routes.pop(result.request_id, None)
        if result.error is not None:
            # this sequence alone failed in the engine (its batch went on): final, no retry
            return failure(request, "failed", result.error.code, result.error.message)
        if routed_as is not None and self.router is not None and routed_as.tenant_id:
            self.router.remember_generated(
                routed_as.tenant_id,
                routed_as.knowledge_version,
                routed_as.cache_key,
                result.text,
                routed_as.route,
                routed_as.sources,
            )
        return InferenceOutcome(
            job_id=request.job_id,
            status="completed",
            response=result.text,
            route=routed_as.route if routed_as else "llm",
            sources=routed_as.sources if routed_as else [],
            moderation=routed_as.moderation if routed_as else None,
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
                route_ms=routed_as.route_ms if routed_as else None,
            ),
            engine=self.engine.info,
            finished_at=utcnow(),
        )


def routed(
    request: InferenceRequest, answer: RoutedAnswer, claimed_at: datetime
) -> InferenceOutcome:
    """The outcome of a job the router answered without the model."""
    return InferenceOutcome(
        job_id=request.job_id,
        status="completed",
        response=answer.response,
        route=answer.route,
        sources=answer.sources,
        intent=answer.intent,
        handoff=answer.handoff,
        moderation=answer.moderation,
        finish_reason="stop",
        usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
        timings=Timings(
            queue_ms=round((claimed_at - request.submitted_at).total_seconds() * 1000, 3),
            inference_ms=0.0,
            batch_size=0,
            route_ms=answer.route_ms,
        ),
        finished_at=utcnow(),
    )


def past_deadline(
    request: InferenceRequest, now: datetime, waiting: str
) -> InferenceOutcome | None:
    """The job's expiry if its deadline has passed (``waiting`` says when, for its message)."""
    if request.deadline_at is None or request.deadline_at > now:
        return None
    return failure(request, "expired", "deadline_exceeded", f"the job's deadline passed {waiting}")


def failure(
    request: InferenceRequest, status: Literal["failed", "expired"], code: str, message: str
) -> InferenceOutcome:
    return InferenceOutcome(
        job_id=request.job_id,
        status=status,
        error=JobError(code=code, message=message),
        finished_at=utcnow(),
    )
