"""The engine thread: prepared jobs into the engine, finished jobs out.

Every engine has one interface (``add`` and ``step``). With continuous batching, ready jobs join
the running batch between decode steps and an idle engine starts on the first one at once; with
static batching, an idle engine takes the next whole batch and steps it to the end before it
admits more. Each finished job's outcome goes to post-processing, and
only then is its message acknowledged (``Settler``).

When the model switcher has a newly activated version loaded, the loop admits nothing more,
lets the running sequences finish, and takes the new engine before the next admission
(``services/worker/model_switch.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from services.worker.engine import Engine, GenerationResult
from services.worker.pending_job import PendingJob
from services.worker.ready_queue import ReadyJob, ReadyQueue
from services.worker.settlements import Settler
from services.worker.streaming import StreamRelay
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

    def use_engine(self, engine: Engine) -> None: ...

    def stream_flagger(self, key: str) -> Callable[[str], bool]: ...


class EngineSwitch(Protocol):
    """A replacement engine, loaded elsewhere, for the engine thread to take."""

    @property
    def pending(self) -> bool: ...

    def take(self) -> Engine | None: ...


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
        switch: EngineSwitch | None = None,
        relay: StreamRelay | None = None,
    ) -> None:
        self.processor = processor
        self.engine = processor.engine
        self.ready = ready
        self.settler = settler
        self.max_batch_size = max_batch_size
        self.continuous = continuous
        self.retry_pause_s = retry_pause_s
        self.switch = switch
        self.relay = relay
        self._in_flight: dict[str, tuple[PendingJob, datetime]] = {}

    def run(self) -> None:
        """Until the ready queue is closed and empty and the engine idle."""
        while True:
            active = self.engine.active
            if self.switch is not None and self.switch.pending:
                if active:  # finish the running batch on the engine that started it
                    self._step()
                    continue
                self._switch_engine()
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

    def _switch_engine(self) -> None:
        assert self.switch is not None
        engine = self.switch.take()
        if engine is None:
            return
        previous = self.engine.info
        self.processor.use_engine(engine)
        self.engine = engine
        log.info(
            "model_switched",
            version=engine.info.version,
            model=engine.info.model,
            previous=previous.version or previous.model,
        )

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
        if self.relay is not None:
            for job in jobs:
                request = job.pending.request
                if request.stream:
                    self.relay.start(
                        job.generation.request_id,
                        request.job_id,
                        self.engine.tokenizer,
                        request.params.stop,
                        self.processor.stream_flagger(job.generation.request_id),
                    )
        BATCH_SIZE.observe(len(jobs))
        BATCH_PADDING.observe(self.engine.padding_ratio)
        requests = [job.generation for job in jobs]
        engine = self.engine
        self._run_engine(lambda: engine.add(requests))

    def _step(self) -> None:
        if self.engine.active:
            self._run_engine(self.engine.step)

    def _run_engine(self, work: Callable[[], list[GenerationResult]]) -> None:
        try:
            results = work()
        except Exception:
            log.exception(
                "generation_failed",
                job_ids=[str(pending.request.job_id) for pending, _ in self._in_flight.values()],
            )
            ENGINE_FAILURES.inc()
            self.engine.abort()
            for key, (pending, _admitted) in self._in_flight.items():
                self.processor.forget(key)
                if self.relay is not None:
                    self.relay.forget(key)  # the retry streams again, from its start
                self.settler.requeue(pending.message)
            self._in_flight.clear()
            time.sleep(self.retry_pause_s)
            return
        if self.relay is not None:  # before settling: a stream ends before its job does
            try:
                self.relay.after_engine_call(self.engine, results)
            except Exception:  # a preview must never stop the engine thread or its jobs
                log.exception("stream_relay_failed")
                self.relay.clear()
        for result in results:
            GENERATED_TOKENS.inc(result.completion_tokens)
            pending, admitted = self._in_flight.pop(result.request_id)
            self.settler.settle(
                pending.message, self.processor.completed(pending.request, result, admitted)
            )
