"""The inference consumer: broker messages in, batches to the engine, outcomes out, then acks.

Two threads. The consumer thread owns the broker channel: it drains deliveries into the batcher,
keeps heartbeats going while the model runs, and acknowledges. The engine thread admits jobs
from the batcher into the engine (between decode steps, with continuous batching), steps it,
sends each finished job's outcome to post-processing and only then asks for its ack, so a
message is acknowledged only once its result is safely handed on.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from kombu import Connection, Message
from pydantic import ValidationError

from services.worker.batcher import DynamicBatcher
from services.worker.engine import ContinuousEngine, GenerationResult
from services.worker.inference import BatchProcessor
from shared.config import BatchingMode, Settings
from shared.db.models import utcnow
from shared.logs import get_logger
from shared.messaging.broker import broker_connection
from shared.messaging.schemas import InferenceOutcome, InferenceRequest, JobError
from shared.messaging.topology import (
    FINALIZE_JOB_TASK,
    INFERENCE_QUEUE,
    POSTPROCESS_QUEUE_NAME,
    declare_topology,
)

log = get_logger(__name__)

RECONNECT_BACKOFF_S = (0.5, 1, 2, 5, 10)


class OutcomeSender(Protocol):
    def send(self, outcome: InferenceOutcome) -> None: ...


class Settlement(Enum):
    ACK = "ack"
    REQUEUE = "requeue"  # could not be handled now (database down, engine error): try again
    REJECT = "reject"  # can never be handled: to the dead-letter exchange


@dataclass
class PendingJob:
    request: InferenceRequest
    message: Message
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # one per delivery

    @property
    def length_hint(self) -> int:
        """Characters of the prompt, for grouping similar lengths into one batch."""
        return len(self.request.query) + sum(len(t.content) for t in self.request.history)


class InferenceConsumer:
    def __init__(
        self, settings: Settings, processor: BatchProcessor, sender: OutcomeSender
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.engine = processor.engine
        self.sender = sender
        self.batcher: DynamicBatcher[PendingJob] = DynamicBatcher(
            settings.max_batch_size,
            settings.max_wait_ms / 1000,
            priority=lambda pending: pending.request.priority,
            length=lambda pending: pending.length_hint,
        )
        self._in_flight: dict[str, tuple[PendingJob, datetime]] = {}
        self._settlements: queue.SimpleQueue[tuple[Message, Settlement]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._engine_thread = threading.Thread(target=self._engine_loop, name="engine", daemon=True)

    def stop(self) -> None:
        """Finish the batch being generated, stop consuming, return from ``run``."""
        self._stopping.set()

    def run(self) -> None:
        self._engine_thread.start()
        failures = 0
        while not self._stopping.is_set():
            connection = broker_connection(self.settings, heartbeat=30)
            try:
                with connection:
                    self._consume(connection)
                    failures = 0
            except Exception as error:  # whatever broke the connection, reconnect
                # The broker redelivers whatever the dead channel held: drop our copies.
                dropped = self.batcher.clear()
                delay = RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)]
                failures += 1
                log.warning(
                    "broker_connection_lost", error=repr(error), dropped=dropped, retry_in_s=delay
                )
                self._stopping.wait(delay)
        self.batcher.close()
        self._engine_thread.join()

    def _consume(self, connection: Connection) -> None:
        connection.ensure_connection(max_retries=1)
        declare_topology(connection)
        channel = connection.channel()
        consumer = connection.Consumer(
            channel=channel,
            queues=[INFERENCE_QUEUE],
            callbacks=[self._on_message],
            accept=["json"],
            prefetch_count=self.settings.effective_prefetch_count,
        )
        consumer.consume()
        log.info(
            "consuming",
            queue=INFERENCE_QUEUE.name,
            prefetch=self.settings.effective_prefetch_count,
            max_batch_size=self.settings.max_batch_size,
        )
        try:
            while not self._stopping.is_set():
                try:
                    connection.drain_events(timeout=0.05)
                except TimeoutError:
                    connection.heartbeat_check()
                self._apply_settlements()
            consumer.cancel()
            # Let the batch on the engine finish and acknowledge it before the channel closes;
            # what is still waiting in the batcher goes back to the queue with the channel.
            self.batcher.close()
            self._engine_thread.join()
            self._apply_settlements()
        finally:
            channel.close()

    def _on_message(self, body: Any, message: Message) -> None:
        try:
            request = InferenceRequest.model_validate(body)
        except ValidationError as error:
            self._reject_poison(body, message, error)
            return
        self.batcher.put(PendingJob(request, message))

    def _reject_poison(self, body: Any, message: Message, error: ValidationError) -> None:
        """A message no worker can process: its job (if it names one) fails with the reason;
        the message goes to the dead-letter queue either way, for inspection."""
        reason = (
            f"the inference request is malformed: {error.error_count()} problem(s), "
            + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:3]
            )
        )
        job_id = body.get("job_id") if isinstance(body, dict) else None
        log.error("poison_message", job_id=job_id, reason=reason)
        try:
            self.sender.send(
                InferenceOutcome(
                    job_id=uuid.UUID(str(job_id)),
                    status="failed",
                    error=JobError(code="invalid_message", message=reason[:1000]),
                    finished_at=utcnow(),
                )
            )
        except (ValueError, TypeError):
            pass  # no job to fail: it names none, or not a valid one
        except Exception:
            log.exception("poison_outcome_send_failed", job_id=job_id)
        message.reject()

    def _apply_settlements(self) -> None:
        while True:
            try:
                message, settlement = self._settlements.get_nowait()
            except queue.Empty:
                return
            try:
                if settlement is Settlement.ACK:
                    message.ack()
                elif settlement is Settlement.REQUEUE:
                    message.requeue()
                else:
                    message.reject()
            except Exception as error:
                # Its channel died meanwhile: the broker will redeliver the message, and
                # redelivered jobs are idempotent.
                log.warning("settle_failed", settlement=settlement.value, error=repr(error))

    def _engine_loop(self) -> None:
        continuous = (
            isinstance(self.engine, ContinuousEngine)
            and self.settings.batching is BatchingMode.CONTINUOUS
        )
        while True:
            active = self.engine.active if isinstance(self.engine, ContinuousEngine) else 0
            if not active:
                batch = self.batcher.next_batch(idle_timeout_s=0.2)
            elif continuous and active < self.settings.max_batch_size:
                batch = self.batcher.next_batch(
                    idle_timeout_s=0,
                    limit=self.settings.max_batch_size - active,
                    wait_for_company=False,
                )
            else:
                batch = []
            if batch is None and not active:
                return  # stopping, and nothing is being generated
            if batch:
                self._admit(batch)
            if active or batch:
                self._step()

    def _admit(self, batch: list[PendingJob]) -> None:
        try:
            prepared = self.processor.prepare([(p.key, p.request) for p in batch])
        except Exception:
            log.exception("prepare_failed", jobs=len(batch))
            for pending in batch:
                self._settlements.put((pending.message, Settlement.REQUEUE))
            time.sleep(1)  # do not spin on a persistent failure (database down, say)
            return
        by_key = {pending.key: pending for pending in batch}
        for key, outcome in prepared.finished.items():
            self._settle(by_key[key], outcome)
        if not prepared.generation:
            return
        admitted = utcnow()
        for request in prepared.generation:
            self._in_flight[request.request_id] = (by_key[request.request_id], admitted)
        log.info(
            "jobs_admitted",
            jobs=len(prepared.generation),
            in_flight=len(self._in_flight),
            padding_ratio=round(self.engine.padding_ratio, 3),
        )
        self._run_engine(
            lambda: (
                self.engine.add(prepared.generation)
                if isinstance(self.engine, ContinuousEngine)
                else self.engine.generate(prepared.generation)
            )
        )

    def _step(self) -> None:
        if isinstance(self.engine, ContinuousEngine) and self.engine.active:
            self._run_engine(self.engine.step)

    def _run_engine(self, work: Callable[[], list[GenerationResult]]) -> None:
        try:
            results = work()
        except Exception:
            log.exception("generation_failed", in_flight=len(self._in_flight))
            if isinstance(self.engine, ContinuousEngine):
                self.engine.abort()
            for key, (pending, _admitted) in self._in_flight.items():
                self.processor.forget(key)
                self._settlements.put((pending.message, Settlement.REQUEUE))
            self._in_flight.clear()
            time.sleep(1)
            return
        for result in results:
            pending, admitted = self._in_flight.pop(result.request_id)
            self._settle(pending, self.processor.completed(pending.request, result, admitted))

    def _settle(self, pending: PendingJob, outcome: InferenceOutcome | None) -> None:
        """Hand the outcome on, then ask the consumer thread to acknowledge the message."""
        settlement = Settlement.ACK
        if outcome is not None:
            try:
                self.sender.send(outcome)
            except Exception:
                log.exception("outcome_send_failed", job_id=str(outcome.job_id))
                settlement = Settlement.REQUEUE
        self._settlements.put((pending.message, settlement))


class CeleryOutcomeSender:
    """Sends outcomes to the post-processing service's ``finalize_job`` task, by name."""

    def __init__(self, celery_app: Any) -> None:
        self.celery = celery_app

    def send(self, outcome: InferenceOutcome) -> None:
        self.celery.send_task(
            FINALIZE_JOB_TASK,
            args=[outcome.model_dump(mode="json")],
            queue=POSTPROCESS_QUEUE_NAME,
        )
