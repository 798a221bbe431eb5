"""The engine thread: prepared jobs into the engine, finished jobs out.

With continuous batching, ready jobs join the running batch between decode steps and an idle
engine starts on the first one at once; with static batching, an idle engine takes the next
whole batch and runs it to the end. Each finished job's outcome goes to post-processing, and
only then is its message acknowledged (``Settler``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from services.worker.engine import ContinuousEngine, Engine, GenerationResult
from services.worker.pending_job import PendingJob
from services.worker.ready_queue import ReadyJob, ReadyQueue
from services.worker.settlements import Settler
from shared.db.models import utcnow
from shared.logs import get_logger
from shared.messaging.schemas import InferenceOutcome, InferenceRequest
from shared.metrics import BATCH_PADDING, BATCH_SIZE, ENGINE_FAILURES, GENERATED_TOKENS

log = get_logger(__name__)

# How long an idle engine waits for ready jobs before it looks again whether to stop.
IDLE_TIMEOUT_S = 0.2


class Completing(Protocol):
    engine: Engine

    def completed(
        self, request: InferenceRequest, result: GenerationResult, admitted_at: datetime
    ) -> InferenceOutcome: ...

    def forget(self, key: str) -> None: ...


class EngineLoop:
    def __init__(
        self,
        processor: Completing,
        ready: ReadyQueue,
        settler: Settler,
        *,
        max_batch_size: int,
        continuous: bool,
        retry_pause_s: float = 1.0,
    ) -> None:
        self.processor = processor
        self.engine = processor.engine
        self.ready = ready
        self.settler = settler
        self.max_batch_size = max_batch_size
        self.continuous = continuous
        self.retry_pause_s = retry_pause_s
        self._in_flight: dict[str, tuple[PendingJob, datetime]] = {}

    def run(self) -> None:
        """Until the ready queue is closed and empty and the engine idle."""
        while True:
            active = self.engine.active if isinstance(self.engine, ContinuousEngine) else 0
            if not active:
                jobs = self.ready.take(
                    self.max_batch_size, IDLE_TIMEOUT_S, whole_group=not self.continuous
                )
            elif self.continuous and active < self.max_batch_size:
                jobs = self.ready.take(self.max_batch_size - active, 0)
            else:
                jobs = []
            if jobs is None and not active:
                return  # closed, and nothing is being generated
            if jobs:
                self._admit(jobs)
            if active or jobs:
                self._step()

    def _admit(self, jobs: list[ReadyJob]) -> None:
        admitted = utcnow()
        for job in jobs:
            self._in_flight[job.generation.request_id] = (job.pending, admitted)
        log.info(
            "jobs_admitted",
            job_ids=[str(job.pending.request.job_id) for job in jobs],
            in_flight=len(self._in_flight),
            padding_ratio=round(self.engine.padding_ratio, 3),
        )
        BATCH_SIZE.observe(len(jobs))
        BATCH_PADDING.observe(self.engine.padding_ratio)
        requests = [job.generation for job in jobs]
        engine = self.engine
        if isinstance(engine, ContinuousEngine):
            self._run_engine(lambda: engine.add(requests))
        else:
            self._run_engine(lambda: engine.generate(requests))

    def _step(self) -> None:
        engine = self.engine
        if isinstance(engine, ContinuousEngine) and engine.active:
            self._run_engine(engine.step)

    def _run_engine(self, work: Callable[[], list[GenerationResult]]) -> None:
        try:
            results = work()
        except Exception:
            log.exception(
                "generation_failed",
                job_ids=[str(pending.request.job_id) for pending, _ in self._in_flight.values()],
            )
            ENGINE_FAILURES.inc()
            if isinstance(self.engine, ContinuousEngine):
                self.engine.abort()
            for key, (pending, _admitted) in self._in_flight.items():
                self.processor.forget(key)
                self.settler.requeue(pending.message)
            self._in_flight.clear()
            time.sleep(self.retry_pause_s)
            return
        for result in results:
            GENERATED_TOKENS.inc(result.completion_tokens)
            pending, admitted = self._in_flight.pop(result.request_id)
            self.settler.settle(
                pending.message, self.processor.completed(pending.request, result, admitted)
            )
