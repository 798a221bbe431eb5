"""Fakes of the worker's collaborators: an engine, a processor, an outcome sender, messages.

The engine finishes each request after ``max_new_tokens`` tokens (the first one at ``add``, one
per ``step``) and records who called it and when; gates let a test hold a step or a prepare.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from kombu import Producer

from services.worker.engine import Engine, GenerationRequest, GenerationResult
from services.worker.inference import ClaimedJob, ParkedJob, PreparedJobs
from services.worker.job_state import Claim
from services.worker.pending_job import PendingJob
from shared.db.models import JobStatus, utcnow
from shared.messaging.broker import publish_inference_request
from shared.messaging.schemas import (
    EngineInfo,
    GenerationParams,
    InferenceOutcome,
    InferenceRequest,
)

WAIT_S = 10.0  # a guard against hanging, never a measurement


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    """Whether ``condition`` came true within ``timeout_s`` (looked at every few ms)."""
    give_up_at = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up_at:
            return False
        time.sleep(0.005)
    return True


class FakeMessage:
    def __init__(self) -> None:
        self.settlements: list[str] = []

    def ack(self) -> None:
        self.settlements.append("ack")

    def requeue(self) -> None:
        self.settlements.append("requeue")

    def reject(self) -> None:
        self.settlements.append("reject")


def request(query: str = "Where is my order?", new_tokens: int = 3) -> InferenceRequest:
    return InferenceRequest(
        job_id=uuid.uuid4(),
        query=query,
        params=GenerationParams(max_new_tokens=new_tokens),
        submitted_at=utcnow(),
    )


def pending(query: str = "Where is my order?", new_tokens: int = 3) -> PendingJob:
    return PendingJob(request(query, new_tokens), FakeMessage())


def publish_requests(producer: Producer, count: int) -> None:
    """``count`` short inference requests onto ``chat.inference``, as the API publishes them."""
    for n in range(count):
        payload = request(f"question {n}", new_tokens=2).model_dump(mode="json")
        publish_inference_request(producer, payload, 0, 5)


class FakeEngine(Engine):
    def __init__(self, *, gated_steps: bool = False, model: str = "fake") -> None:
        self.info = EngineInfo(name="fake", providers=["none"], model=model, version=model)
        self.tokenizer = None
        self._running: dict[str, list[int]] = {}  # request id -> [tokens made, tokens wanted]
        self.admissions: list[list[str]] = []  # the request ids of each add()
        self.active_at_admission: list[int] = []
        self.threads: set[str] = set()
        self.admitted = threading.Semaphore(0)  # released once per add()
        # with gated_steps, each step needs a permit from step_permits
        self.step_permits: threading.Semaphore | None = (
            threading.Semaphore(0) if gated_steps else None
        )

    @property
    def active(self) -> int:
        return len(self._running)

    def add(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.threads.add(threading.current_thread().name)
        self.active_at_admission.append(self.active)
        self.admissions.append([r.request_id for r in requests])
        for request in requests:
            self._running[request.request_id] = [0, request.params.max_new_tokens]
        self.admitted.release()
        return self._advance()

    def step(self) -> list[GenerationResult]:
        self.threads.add(threading.current_thread().name)
        if self.step_permits is not None and not self.step_permits.acquire(timeout=WAIT_S):
            raise RuntimeError("the test gave no permit for this step")
        return self._advance()

    def abort(self) -> None:
        self._running.clear()

    def _advance(self) -> list[GenerationResult]:
        finished = []
        for request_id, progress in list(self._running.items()):
            progress[0] += 1
            if progress[0] >= progress[1]:
                del self._running[request_id]
                finished.append(
                    GenerationResult(request_id, "answer", 5, progress[0], "length", 1, 1.0)
                )
        return finished


class FakeProcessor:
    """Queries starting with "routed" are answered without the model; "slow" ones wait for
    ``slow_gate`` in ``prepare``; "indexing" ones wait aside until the test ends ``loading``
    (as for a tenant whose knowledge is being indexed); the first ``failing`` prepares raise."""

    def __init__(self, engine: FakeEngine, *, failing: int = 0) -> None:
        self.engine = engine
        self.failing = failing
        self.prepare_threads: list[str] = []
        self.forgotten: list[str] = []
        self.slow_prepare_started = threading.Event()
        self.slow_gate = threading.Event()
        self.loading: Future[Any] = Future()  # the tenant's knowledge, as the test decides
        self.resumed: list[str] = []  # keys of the parked jobs, as they were resumed

    def prepare(self, jobs: Sequence[tuple[str, InferenceRequest]]) -> PreparedJobs:
        self.prepare_threads.append(threading.current_thread().name)
        if self.failing:
            self.failing -= 1
            raise RuntimeError("the database is down")
        prepared = PreparedJobs()
        for key, request in jobs:
            if request.query.startswith("slow"):
                self.slow_prepare_started.set()
                if not self.slow_gate.wait(WAIT_S):
                    raise RuntimeError("the test never opened the gate")
            if request.query.startswith("indexing"):
                claim = Claim(JobStatus.IN_PROGRESS, 1, tenant_id=uuid.uuid4())
                job = ClaimedJob(key, request, [], claim)
                prepared.parked.append(ParkedJob(job, self.loading))
            else:
                self._route(key, request, prepared)
        return prepared

    def resume(self, parked: Sequence[ParkedJob]) -> PreparedJobs:
        prepared = PreparedJobs()
        for waiting in parked:
            waiting.loading.result()
        for waiting in parked:
            self.resumed.append(waiting.job.key)
            self._route(waiting.job.key, waiting.job.request, prepared)
        return prepared

    def _route(self, key: str, request: InferenceRequest, prepared: PreparedJobs) -> None:
        if request.query.startswith(("routed", "indexing routed")):
            prepared.finished[key] = InferenceOutcome(
                job_id=request.job_id,
                status="completed",
                response="routed",
                finished_at=utcnow(),
            )
        else:
            messages = [{"role": "user", "content": request.query}]
            prepared.generation.append(GenerationRequest(key, messages, request.params))

    def completed(
        self, request: InferenceRequest, result: GenerationResult, admitted_at: datetime
    ) -> InferenceOutcome:
        return InferenceOutcome(
            job_id=request.job_id,
            status="completed",
            response=result.text,
            engine=self.engine.info,
            finished_at=utcnow(),
        )

    def forget(self, key: str) -> None:
        self.forgotten.append(key)

    def use_engine(self, engine: FakeEngine) -> None:
        self.engine = engine


class FakeSender:
    def __init__(self) -> None:
        self.outcomes: list[InferenceOutcome] = []
        self._lock = threading.Lock()

    def send(self, outcome: InferenceOutcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def wait_for(self, count: int) -> bool:
        return wait_until(lambda: len(self.outcomes) >= count)
