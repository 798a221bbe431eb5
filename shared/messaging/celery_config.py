"""The Celery application settings shared by the post-processing service (which consumes) and
the inference workers (which only send ``finalize_job`` by name)."""

from __future__ import annotations

from celery import Celery

from shared.config import Settings
from shared.messaging.broker import kombu_url, transport_options
from shared.messaging.topology import (
    DELIVER_WEBHOOK_TASK,
    FINALIZE_JOB_TASK,
    JOBS_EXCHANGE,
    POSTPROCESS_QUEUE,
    POSTPROCESS_QUEUE_NAME,
    WEBHOOK_QUEUE,
    WEBHOOK_QUEUE_NAME,
)


def make_celery(settings: Settings, main: str) -> Celery:
    app = Celery(main, broker=kombu_url(settings), set_as_current=False)
    app.conf.update(
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_queues=(POSTPROCESS_QUEUE, WEBHOOK_QUEUE),
        task_default_queue=POSTPROCESS_QUEUE_NAME,
        task_default_exchange=JOBS_EXCHANGE.name,
        task_default_routing_key=POSTPROCESS_QUEUE_NAME,
        task_routes={
            FINALIZE_JOB_TASK: {"queue": POSTPROCESS_QUEUE_NAME},
            DELIVER_WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE_NAME},
        },
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        # A task is acknowledged only when it has finished; a worker that dies mid-task gets
        # its task redelivered (celery#1628, #3053: both settings are needed).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        # Task events (and the worker heartbeats, see chatq/stack.py) let Flower and
        # celery-exporter watch the post-processors. The embedded transport has no fanout
        # exchanges, which events and remote control need. No "task-sent" events: each would
        # be a second confirmed publish for every outcome an inference worker sends, on the
        # thread that runs the model (~2.5 ms a job); "task-received" marks the same moment.
        worker_send_task_events=not settings.uses_embedded_broker,
        task_send_sent_event=False,
        worker_enable_remote_control=not settings.uses_embedded_broker,
        enable_utc=True,
        timezone="UTC",
    )
    return app
