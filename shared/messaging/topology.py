"""Exchanges and queues, declared the same way by every process.

RabbitMQ refuses a queue re-declared with other arguments, so the API, the inference workers and
the Celery post-processors all take their declarations from here.
"""

from __future__ import annotations

from typing import Any

from kombu import Connection, Exchange, Queue
from kombu.transport.base import StdChannel

MAX_PRIORITY = 9

JOBS_EXCHANGE = Exchange("chatq", type="direct", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("chatq.dead-letter", type="fanout", durable=True)

INFERENCE_QUEUE_NAME = "chat.inference"
POSTPROCESS_QUEUE_NAME = "chat.postprocess"
WEBHOOK_QUEUE_NAME = "chat.webhooks"
DEAD_LETTER_QUEUE_NAME = "chat.dead-letter"

_DEAD_LETTERED = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name}

INFERENCE_QUEUE = Queue(
    INFERENCE_QUEUE_NAME,
    JOBS_EXCHANGE,
    routing_key=INFERENCE_QUEUE_NAME,
    durable=True,
    queue_arguments={"x-max-priority": MAX_PRIORITY, **_DEAD_LETTERED},
)
POSTPROCESS_QUEUE = Queue(
    POSTPROCESS_QUEUE_NAME,
    JOBS_EXCHANGE,
    routing_key=POSTPROCESS_QUEUE_NAME,
    durable=True,
    queue_arguments=dict(_DEAD_LETTERED),
)
# Webhook calls wait on other people's servers: their own queue keeps a slow receiver from
# holding up the completion of other jobs.
WEBHOOK_QUEUE = Queue(
    WEBHOOK_QUEUE_NAME,
    JOBS_EXCHANGE,
    routing_key=WEBHOOK_QUEUE_NAME,
    durable=True,
    queue_arguments=dict(_DEAD_LETTERED),
)
DEAD_LETTER_QUEUE = Queue(DEAD_LETTER_QUEUE_NAME, DEAD_LETTER_EXCHANGE, durable=True)

ALL_QUEUES = (INFERENCE_QUEUE, POSTPROCESS_QUEUE, WEBHOOK_QUEUE, DEAD_LETTER_QUEUE)

# Celery task names: the worker sends by name and never imports the post-processing service.
FINALIZE_JOB_TASK = "chatq.postprocess.finalize_job"
DELIVER_WEBHOOK_TASK = "chatq.postprocess.deliver_webhook"


def declare_topology(on: Connection | StdChannel) -> None:
    """Declare every exchange and queue (idempotent), on ``on``'s default channel or on the
    channel given."""
    # Any: kombu annotates binding with its virtual Channel, though an AMQP channel binds alike
    channel: Any = on.default_channel if isinstance(on, Connection) else on
    for exchange in (JOBS_EXCHANGE, DEAD_LETTER_EXCHANGE):
        exchange(channel).declare()
    for queue in ALL_QUEUES:
        queue(channel).declare()


def queue_depth(connection: Connection, queue: Queue) -> int:
    """Messages ready in ``queue`` (not counting those delivered and unacknowledged)."""
    return queue_state(connection, queue)[0]


def queue_state(connection: Connection, queue: Queue) -> tuple[int, int]:
    """Messages ready in ``queue``, and the consumers it has."""
    _name, message_count, consumers = queue(connection.default_channel).queue_declare(passive=True)
    return int(message_count), int(consumers or 0)
