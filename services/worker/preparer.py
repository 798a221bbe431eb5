"""The preparer thread: jobs from the batcher, ready for the engine.

It claims a batch of jobs and reads their sessions' history (one transaction), routes them and
builds their prompts (``BatchProcessor.prepare``), then hands those for the model to the engine
thread through the ready queue; answers decided without the model (routed, expired, skipped)
go straight to the outcome sender. On the engine thread this work stalled every sequence that
was decoding; here it overlaps with decoding, a batch ahead of the engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from services.worker.batcher import DynamicBatcher
from services.worker.inference import PreparedJobs
from services.worker.pending_job import PendingJob
from services.worker.ready_queue import ReadyJob, ReadyQueue
from services.worker.settlements import Settler
from shared.logs import get_logger
from shared.messaging.schemas import InferenceRequest

log = get_logger(__name__)

# How long the preparer waits for room or for jobs before it looks again whether to stop.
IDLE_TIMEOUT_S = 0.2


class Preparing(Protocol):
    def prepare(self, jobs: Sequence[tuple[str, InferenceRequest]]) -> PreparedJobs: ...


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

    def run(self) -> None:
        """Until the batcher closes; then the ready queue closes behind the last batch."""
        try:
            while True:
                room = self.ready.wait_for_room(
                    self.ready.capacity if self.whole_batches else 1, IDLE_TIMEOUT_S
                )
                if not room:
                    if self.batcher.closed:
                        return
                    continue
                batch = self.batcher.next_batch(
                    IDLE_TIMEOUT_S, limit=room, wait_for_company=self.whole_batches
                )
                if batch is None:
                    return
                if batch:
                    self.prepare(batch)
        finally:
            self.ready.close()

    def prepare(self, batch: list[PendingJob]) -> None:
        try:
            prepared = self.processor.prepare([(p.key, p.request) for p in batch])
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
