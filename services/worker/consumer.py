"""The inference consumer: the broker loop of an inference worker.

It is kombu's ``ConsumerMixin``: the mixin connects, retries and reconnects; this class says
what to consume and what to do around it. It owns the broker connection and channel (one
thread: a channel is not shared between threads): it hands deliveries to the engine scheduler,
applies the settlements the scheduler queues (``on_iteration``, woken at once by each one, see
``settlements``), keeps heartbeats going while the model runs, and, when a connection comes back,
forgets what the dead channel held (``on_connection_revived``: the broker delivers it again).
Batching, preparing and generating happen in the scheduler (``scheduler``), which has no broker
in it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from kombu import Connection, Consumer, Message
from kombu.mixins import ConsumerMixin
from kombu.transport.base import StdChannel
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

# Waits between attempts to reach the broker: first soon (a blip), then at most every 10 s
# (kombu's own default grows to 30 s, too long for a worker that holds a model idle).
RECONNECT_FIRST_S = 0.5
RECONNECT_STEP_S = 1.0
RECONNECT_MAX_S = 10.0
# After a failure the mixin does not classify as a connection or channel error (a bug, a
# broken embedded broker file): wait this long before the next connection, growing per failure.
FAILURE_BACKOFF_S = (0.5, 1, 2, 5, 10)
# The consumer thread wakes for a delivery, a settlement or a stop; failing those, this often
# to check heartbeats.
IDLE_WAKEUP_S = 1.0
# Transports without a socket to wait on (the embedded broker) are polled this often.
POLL_INTERVAL_S = 0.05


class _Stopped(Exception):
    """Raised out of the reconnect loop once the worker is told to stop."""


class InferenceConsumer(ConsumerMixin):
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
        self.connection = broker_connection(settings, heartbeat=30)
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
        self._stop_requested = threading.Event()
        self._failures = 0  # unexpected failures since the last healthy connection

    @property  # the mixin's flag, read from the event a backoff waits on
    def should_stop(self) -> bool:  # type: ignore[override]
        return self._stop_requested.is_set()

    def stop(self) -> None:
        """Finish what is claimed, stop consuming, return from ``run``."""
        self._stop_requested.set()
        self._settlements.wake()

    def run(self, _tokens: int = 1, **kwargs: Any) -> None:
        self.scheduler.start()
        try:
            while not self.should_stop:
                try:
                    # reconnects by itself after connection and channel errors
                    super().run(_tokens, **kwargs)
                except _Stopped:
                    break  # told to stop while the broker was away: nothing is claimed
                except Exception as error:
                    # Anything else (a bug, the embedded broker's file broken) would end the
                    # worker and its loaded model: log it, wait, and connect again; the next
                    # connection forgets what this one's channel held.
                    delay = FAILURE_BACKOFF_S[min(self._failures, len(FAILURE_BACKOFF_S) - 1)]
                    self._failures += 1
                    log.exception("broker_loop_failed", error=repr(error), retry_in_s=delay)
                    self._stop_requested.wait(delay)
        finally:
            self.scheduler.close()
            self.scheduler.join()

    # -- what the mixin asks -----------------------------------------------------------------

    @contextlib.contextmanager
    def establish_connection(self) -> Iterator[Connection]:
        with self.create_connection() as connection:
            connection.ensure_connection(
                self.on_connection_error,
                interval_start=RECONNECT_FIRST_S,
                interval_step=RECONNECT_STEP_S,
                interval_max=RECONNECT_MAX_S,
                callback=self._raise_if_stopped,  # called every second of a wait between tries
            )
            yield connection

    def _raise_if_stopped(self) -> None:
        if self.should_stop:
            raise _Stopped

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        self._raise_if_stopped()
        log.warning("broker_unreachable", error=repr(exc), retry_in_s=interval)

    def on_connection_revived(self) -> None:
        # The broker redelivers whatever the dead channel held: drop our copies.
        dropped = self.scheduler.drop_waiting()
        if dropped:
            log.warning("broker_connection_revived", dropped=dropped)

    def get_consumers(
        self, consumer_for_channel: Callable[..., Consumer], channel: StdChannel
    ) -> list[Consumer]:
        declare_topology(channel)
        return [
            consumer_for_channel(
                queues=[INFERENCE_QUEUE],
                callbacks=[self._on_message],
                accept=["json"],
                prefetch_count=self.settings.effective_prefetch_count,
            )
        ]

    def on_consume_ready(
        self, connection: Connection, channel: StdChannel, consumers: list[Any], **kwargs: Any
    ) -> None:
        self._failures = 0  # connected and consuming: the next failure backs off from the start
        log.info(
            "consuming",
            queue=INFERENCE_QUEUE.name,
            prefetch=self.settings.effective_prefetch_count,
            max_batch_size=self.settings.max_batch_size,
        )

    def on_iteration(self) -> None:
        self.settled += self._settlements.apply()

    def on_decode_error(self, message: Message, exc: Exception) -> None:
        # a body no consumer can read (another content type, broken JSON): redelivering it would
        # fail forever, so it is rejected: to the dead-letter queue on RabbitMQ, for inspection
        # (the embedded broker has none and drops it; either way it is logged here)
        log.error(
            "undecodable_message",
            content_type=message.content_type,
            error=repr(exc),
        )
        message.reject()

    def consume(
        self,
        limit: int | None = None,
        timeout: float | None = None,
        safety_interval: float = 1,
        **kwargs: Any,
    ) -> Iterator[None]:
        """One connection's life: deliveries in and settlements out until told to stop, then
        the claimed jobs finish and are settled before the channel closes. (The mixin's own
        loop waits ``safety_interval`` between looks at the settlements; this one wakes for
        them at once.)"""
        with self.consumer_context(**kwargs) as (connection, _channel, consumers):
            self._pump(connection, until=lambda: self.should_stop)
            for consumer in consumers:
                consumer.cancel()
            # What is claimed already finishes and is acknowledged before the channel closes;
            # what is still waiting in the batcher goes back to the queue with the channel.
            self.scheduler.close()
            self._pump(connection, until=lambda: self.scheduler.finished)
            self.on_iteration()
        yield

    # -- the loop ----------------------------------------------------------------------------

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
            self.on_iteration()
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
            # What Flower and the logs show of the arguments: the job, not the answer. Celery
            # would put a repr of the whole outcome in every message's headers, with the
            # customer's text in it, and spend a quarter of the send building it.
            argsrepr=f"[outcome of job {outcome.job_id} ({outcome.status})]",
            kwargsrepr="{}",
        )
