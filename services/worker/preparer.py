"""The preparer thread: jobs from the batcher, ready for the engine.

It claims a batch of jobs and reads their sessions' history (one transaction), routes them and
builds their prompts (``BatchProcessor.prepare``), then hands those for the model to the engine
thread through the ready queue; answers decided without the model (routed, expired, skipped)
go straight to the outcome sender. On the engine thread this work stalled every sequence that
was decoding; here it overlaps with decoding, a batch ahead of the engine.

A job whose tenant's knowledge is being indexed (a tenant met for the first time: tens of
seconds for a large upload on a small CPU) waits aside, claimed, while the registry indexes in
the background; the preparer goes on with the other jobs and resumes the parked ones when the
indexing ends. On a stop it finishes them (they are claimed); when the connection is lost they
are dropped with the rest (the broker delivers them again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from services.worker.batcher import DynamicBatcher
from services.worker.inference import ParkedJob, PreparedJobs
from services.worker.pending_job import PendingJob
from services.worker.ready_queue import ReadyJob, ReadyQueue
from services.worker.settlements import Settler
from shared import metrics
from shared.logs import get_logger
from shared.messaging.schemas import InferenceRequest

log = get_logger(__name__)

# How long the preparer waits for room or for jobs before it looks again whether to stop.
IDLE_TIMEOUT_S = 0.2


class Preparing(Protocol):
    def prepare(self, jobs: Sequence[tuple[str, InferenceRequest]]) -> PreparedJobs: ...

    def resume(self, parked: Sequence[ParkedJob]) -> PreparedJobs: ...


@dataclass(frozen=True)
class _Parked:
    pending: PendingJob
    waiting: ParkedJob
    since: float  # time.monotonic() when it was first parked


class JobPreparer:
    def __init__(
        self,
        batcher: DynamicBatcher[PendingJob],
        processor: Preparing,
        ready: ReadyQueue,
        settler: Settler,
        *,
        whole_batches: bool,
        retry_pause_s: float = 1.0,
    ) -> None:
        self.batcher = batcher
        self.processor = processor
        self.ready = ready
        self.settler = settler
        # Static batching: wait for company in the batcher, and prepare the next batch only
        # once the engine has taken the last one, so that batches stay whole.
        self.whole_batches = whole_batches
        self.retry_pause_s = retry_pause_s
        # jobs waiting for their tenant's knowledge, by key
        self._parked: dict[str, _Parked] = {}
        self._parked_lock = threading.Lock()

    def run(self) -> None:
        """Until the batcher closes and the parked jobs are done; then the ready queue
        closes behind the last batch."""
        try:
            while True:
                self._resume_parked()
                room = self.ready.wait_for_room(
                    self.ready.capacity if self.whole_batches else 1, IDLE_TIMEOUT_S
                )
                if not room:
                    if self.batcher.closed and not self.parked:
                        return
                    continue
                batch = self.batcher.next_batch(
                    IDLE_TIMEOUT_S, limit=room, wait_for_company=self.whole_batches
                )
                if batch is None:
                    with self._parked_lock:
                        loadings = {entry.waiting.loading for entry in self._parked.values()}
                    if not loadings:
                        return
                    # stopping: what is parked is claimed, so it finishes
                    wait(loadings, IDLE_TIMEOUT_S, return_when=FIRST_COMPLETED)
                elif batch:
                    self.prepare(batch)
        finally:
            self.ready.close()

    @property
    def parked(self) -> int:
        with self._parked_lock:
            return len(self._parked)

    def drop_parked(self) -> int:
        """Forget the parked jobs (their messages died with their channel; the broker
        delivers them again). Returns how many."""
        with self._parked_lock:
            dropped = len(self._parked)
            self._parked.clear()
            return dropped

    def prepare(self, batch: list[PendingJob]) -> None:
        self._handle(batch, lambda: self.processor.prepare([(p.key, p.request) for p in batch]))

    def _resume_parked(self) -> None:
        """Route the parked jobs whose tenant's loading has ended, a tenant at a time."""
        with self._parked_lock:
            done = [entry for entry in self._parked.values() if entry.waiting.loading.done()]
            for entry in done:
                del self._parked[entry.pending.key]
        by_loading: dict[int, list[_Parked]] = {}
        for entry in done:
            by_loading.setdefault(id(entry.waiting.loading), []).append(entry)
        for entries in by_loading.values():
            self._handle(
                [entry.pending for entry in entries],
                partial(self.processor.resume, [entry.waiting for entry in entries]),
                parked_since={entry.pending.key: entry.since for entry in entries},
            )

    def _handle(
        self,
        batch: list[PendingJob],
        prepare: Callable[[], PreparedJobs],
        parked_since: dict[str, float] | None = None,
    ) -> None:
        """Run ``prepare`` for ``batch`` and pass its jobs on: to the engine, settled, or
        parked (``parked_since``: when those of ``batch`` that waited already were parked)."""
        try:
            prepared = prepare()
        except Exception:
            log.exception("prepare_failed", job_ids=[str(p.request.job_id) for p in batch])
            for pending in batch:
                self.settler.requeue(pending.message)
            time.sleep(self.retry_pause_s)  # do not spin on a persistent failure (database down)
            return
        by_key = {pending.key: pending for pending in batch}
        # the engine first: it can start while the routed answers are sent
        self.ready.put([ReadyJob(by_key[r.request_id], r) for r in prepared.generation])
        for key, outcome in prepared.finished.items():
            self.settler.settle(by_key[key].message, outcome)
        if parked_since:
            self._count_waits(by_key, parked_since, prepared)
        if prepared.parked:
            self._park(by_key, prepared.parked, parked_since or {})

    def _count_waits(
        self, by_key: dict[str, PendingJob], parked_since: dict[str, float], prepared: PreparedJobs
    ) -> None:
        """The waits of the resumed jobs that go on now (not those parked again)."""
        parked_again = {waiting.job.key for waiting in prepared.parked}
        now = time.monotonic()
        waits = {key: now - at for key, at in parked_since.items() if key not in parked_again}
        for seconds in waits.values():
            metrics.KNOWLEDGE_WAIT.observe(seconds)
        if waits:
            log.info(
                "parked_jobs_resumed",
                job_ids=[str(by_key[key].request.job_id) for key in waits],
                waited_ms=round(max(waits.values()) * 1000, 1),
            )

    def _on_loading_ended(self, _loading: object) -> None:
        # on the loader's thread: the preparer resumes the parked jobs now, not after its wait
        self.batcher.interrupt()

    def _park(
        self, by_key: dict[str, PendingJob], parked: list[ParkedJob], since: dict[str, float]
    ) -> None:
        now = time.monotonic()
        with self._parked_lock:
            for waiting in parked:
                key = waiting.job.key
                self._parked[key] = _Parked(by_key[key], waiting, since.get(key, now))
        for waiting in parked:
            waiting.loading.add_done_callback(self._on_loading_ended)
        log.info(
            "jobs_parked_for_knowledge",
            job_ids=[str(w.job.request.job_id) for w in parked],
            tenants=sorted({str(w.job.claim.tenant_id) for w in parked}),
        )
