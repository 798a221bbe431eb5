"""The inference consumer: the broker loop of an inference worker.

It owns the broker connection and channel (one thread: a channel is not shared between
threads): it hands deliveries to the engine scheduler, applies the settlements the scheduler
queues (woken at once by each one, see ``settlements``), keeps heartbeats going while the model
runs, and reconnects when the connection breaks. Batching, preparing and generating happen in
the scheduler (``scheduler``), which has no broker in it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from kombu import Connection, Message
from pydantic import ValidationError

from services.worker.engine_loop import EngineSwitch
from services.worker.pending_job import PendingJob
from services.worker.scheduler import EngineScheduler, JobProcessor
from services.worker.settlements import OutcomeSender, SettlementQueue, Settler
from services.worker.streaming import StreamRelay
from shared.config import Settings
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
# The consumer thread wakes for a delivery, a settlement or a stop; failing those, this often
# to check heartbeats.
IDLE_WAKEUP_S = 1.0
# Transports without a socket to wait on (the embedded broker) are polled this often.
POLL_INTERVAL_S = 0.05


class InferenceConsumer:
    def __init__(
        self,
        settings: Settings,
        processor: JobProcessor,
        sender: OutcomeSender,
        *,
        idle_wakeup_s: float = IDLE_WAKEUP_S,
        retry_pause_s: float = 1.0,
        switch: EngineSwitch | None = None,
        relay: StreamRelay | None = None,
    ) -> None:
        self.settings = settings
        self.idle_wakeup_s = idle_wakeup_s
        self.sender = sender
        self._settlements = SettlementQueue()
        self.scheduler = EngineScheduler(
            settings,
            processor,
            Settler(sender, self._settlements),
            retry_pause_s=retry_pause_s,
            switch=switch,
            relay=relay,
        )
        self.settled = 0  # messages settled so far (acked, requeued or rejected)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Finish what is claimed, stop consuming, return from ``run``."""
        self._stopping.set()
        self._settlements.wake()

    def run(self) -> None:
        self.scheduler.start()
        failures = 0
        while not self._stopping.is_set():
            connection = broker_connection(self.settings, heartbeat=30)
            try:
                with connection:
                    self._consume(connection)
                    failures = 0
            except Exception as error:  # whatever broke the connection, reconnect
                # The broker redelivers whatever the dead channel held: drop our copies.
                dropped = self.scheduler.drop_waiting()
                delay = RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)]
                failures += 1
                log.warning(
                    "broker_connection_lost", error=repr(error), dropped=dropped, retry_in_s=delay
                )
                self._stopping.wait(delay)
        self.scheduler.close()
        self.scheduler.join()

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
            self._pump(connection, until=self._stopping.is_set)
            consumer.cancel()
            # What is claimed already finishes and is acknowledged before the channel closes;
            # what is still waiting in the batcher goes back to the queue with the channel.
            self.scheduler.close()
            self._pump(connection, until=lambda: self.scheduler.finished)
            self._apply_settlements()
        finally:
            channel.close()

    def _pump(self, connection: Connection, until: Callable[[], bool]) -> None:
        """Deliveries in, settlements out and heartbeats kept, until ``until()``."""
        broker_socket = _waitable_socket(connection)
        heartbeat_due = time.monotonic() + self.idle_wakeup_s
        while not until():
            if broker_socket is None:
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=POLL_INTERVAL_S)
            else:
                waitables: list[SettlementQueue | socket.socket] = [
                    self._settlements,
                    broker_socket,
                ]
                ready, _, _ = select.select(waitables, [], [], self.idle_wakeup_s)
                if broker_socket in ready:
                    with contextlib.suppress(TimeoutError):  # one frame, already arriving
                        connection.drain_events(timeout=self.idle_wakeup_s)
            self._apply_settlements()
            if time.monotonic() >= heartbeat_due:
                connection.heartbeat_check()
                heartbeat_due = time.monotonic() + self.idle_wakeup_s

    def _on_message(self, body: Any, message: Message) -> None:
        try:
            request = InferenceRequest.model_validate(body)
        except ValidationError as error:
            self._reject_poison(body, message, error)
            return
        # False once stopping: unacknowledged, the message goes back with the channel
        self.scheduler.submit(PendingJob(request, message))

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
        self.settled += self._settlements.apply()


def _waitable_socket(connection: Connection) -> socket.socket | None:
    """The plain AMQP socket to wait on beside the settlement pipe; ``None`` where there is
    none (virtual transports) or where the client buffers what it reads (TLS), so a ready
    frame may sit in its buffer while the socket looks idle."""
    sock = getattr(connection.connection, "sock", None)
    if connection.ssl or not isinstance(sock, socket.socket):
        return None
    return sock


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
