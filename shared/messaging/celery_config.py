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
        # After a reconnect Celery lowers the prefetch count while tasks of the old connection
        # run, and raises it again from each finished task's acknowledgement. On the threads
        # pool that runs on the task's thread, which then waits on the consumer's channel for
        # the broker's qos-ok while the consumer's own loop reads the same socket: when the loop
        # takes the reply, the thread waits forever, holding the prefetch lock, and the worker
        # takes no more tasks (the chaos test's RabbitMQ restart, now and then: py-spy showed
        # the pool threads in basic_qos). The full prefetch count from the start costs at most
        # one pool's worth of extra messages.
        worker_enable_prefetch_count_reduction=False,
        # A task running when the connection drops finishes (Celery 6 would cancel it, and a
        # thread cannot be stopped anyway): its acknowledgement fails, the broker delivers it
        # again, and the second run finds the job stored (both tasks are idempotent).
        worker_cancel_long_running_tasks_on_connection_loss=False,
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
