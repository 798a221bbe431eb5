"""The engine scheduler: jobs in, outcomes and settlements out, and no broker in it.

Two threads behind the batcher. The preparer takes jobs from the batcher, claims them, reads
their history and routes them (``preparer``), a batch ahead of the engine; the engine thread
admits what is ready into the engine between decode steps and settles each finished job
(``engine_loop``). The broker loop only submits deliveries and applies the settlements.
"""

from __future__ import annotations

import threading
from typing import Protocol

from services.worker.batcher import DynamicBatcher
from services.worker.engine_loop import Completing, EngineLoop, EngineSwitch
from services.worker.pending_job import PendingJob
from services.worker.preparer import JobPreparer, Preparing
from services.worker.ready_queue import ReadyQueue
from services.worker.settlements import Settler
from services.worker.streaming import StreamRelay
from shared.config import BatchingMode, Settings


class JobProcessor(Preparing, Completing, Protocol):
    """What the scheduler needs of ``BatchProcessor``."""


class EngineScheduler:
    def __init__(
        self,
        settings: Settings,
        processor: JobProcessor,
        settler: Settler,
        *,
        retry_pause_s: float = 1.0,
        switch: EngineSwitch | None = None,
        relay: StreamRelay | None = None,
    ) -> None:
        # an engine that answers whole batches gets them whole: a lone first job would hold the
        # rest back for a whole generation
        continuous = (
            settings.batching is BatchingMode.CONTINUOUS
            and not processor.engine.answers_whole_batches
        )
        self.processor = processor
        self.batcher: DynamicBatcher[PendingJob] = DynamicBatcher(
            settings.max_batch_size,
            settings.max_wait_ms / 1000,
            priority=lambda pending: pending.request.priority,
            length=lambda pending: pending.length_hint,
        )
        self.ready = ReadyQueue(settings.max_batch_size)
        self.preparer = preparer = JobPreparer(
            self.batcher,
            processor,
            self.ready,
            settler,
            whole_batches=not continuous,
            retry_pause_s=retry_pause_s,
        )
        engine_loop = EngineLoop(
            processor,
            self.ready,
            settler,
            max_batch_size=settings.max_batch_size,
            continuous=continuous,
            retry_pause_s=retry_pause_s,
            switch=switch,
            relay=relay,
        )
        self._settler = settler
        self._runs = {"preparer": preparer.run, "engine": engine_loop.run}
        self._ended = {name: threading.Event() for name in self._runs}
        self._threads = [
            threading.Thread(target=self._run_then_wake, args=(name,), name=name, daemon=True)
            for name in self._runs
        ]

    def _run_then_wake(self, name: str) -> None:
        # The channel's thread waits for ``finished`` on the settlement pipe: each thread
        # marks its end, then wakes it (a thread is still alive while it wakes the other, so
        # ``finished`` reads the marks, not ``is_alive``), or it sleeps a whole idle wake-up.
        try:
            self._runs[name]()
        finally:
            self._ended[name].set()
            self._settler.wake()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, pending: PendingJob) -> bool:
        """Queue a delivered job; ``False`` once closed (it stays unsettled)."""
        try:
            self.batcher.put(pending)
        except RuntimeError:
            return False
        return True

    def close(self) -> None:
        """Take no more jobs; what is claimed already (prepared or generating) finishes."""
        self.batcher.close()

    @property
    def finished(self) -> bool:
        return all(ended.is_set() for ended in self._ended.values())

    def join(self, timeout_s: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout_s)

    def drop_waiting(self) -> int:
        """Forget the jobs not started yet: their messages died with their channel and the
        broker delivers them again. Returns how many."""
        dropped = self.batcher.clear() + self.preparer.drop_parked()
        for job in self.ready.clear():
            self.processor.forget(job.pending.key)
            dropped += 1
        return dropped
