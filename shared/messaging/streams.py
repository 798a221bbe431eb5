"""Token streams: the text of an answer, travelling from the inference worker to the API process
that holds the client's streaming request while the model generates it.

Each streamed job has a queue of its own, ``chat.stream.<job id>``, declared by the API process
before it submits the job (so no token is published before someone listens) and deleted when the
stream ends. The worker publishes to it through the default exchange, which routes by queue name
on RabbitMQ and on the embedded transport alike. Messages are transient and unconfirmed: a stream
is a preview. The answer of record is the job's stored ``response``, after output moderation,
which the API sends last; a lost delta costs the preview, never the answer.

On RabbitMQ the queue is exclusive to the API's connection and expires when unused, so a stream
whose API process died leaves nothing behind.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from kombu import Connection, Queue
from pydantic import BaseModel

from shared.config import Settings
from shared.messaging.broker import kombu_url

STREAM_QUEUE_PREFIX = "chat.stream."
# an unused stream queue (its API process gone) disappears after this long (RabbitMQ)
STREAM_QUEUE_EXPIRES_MS = 120_000


class StreamEvent(BaseModel):
    """``delta``: more text of the answer (``index`` counts from 0 per job); ``end``: the
    model finished (the API then sends the stored answer, which may differ: moderation)."""

    type: Literal["delta", "end"]
    index: int
    text: str = ""


def stream_queue_name(job_id: uuid.UUID) -> str:
    return f"{STREAM_QUEUE_PREFIX}{job_id}"


def stream_queue(settings: Settings, job_id: uuid.UUID) -> Queue:
    arguments: dict[str, Any] = {}
    if not settings.uses_embedded_broker:
        arguments["x-expires"] = STREAM_QUEUE_EXPIRES_MS
    name = stream_queue_name(job_id)
    return Queue(
        name,
        routing_key=name,
        durable=False,
        auto_delete=not settings.uses_embedded_broker,
        exclusive=not settings.uses_embedded_broker,
        queue_arguments=arguments,
    )


def stream_connection(settings: Settings) -> Connection:
    """A broker connection for stream messages: no publisher confirms (a token is not worth a
    round trip), and on the embedded transport a short polling interval."""
    options: dict[str, Any] = {}
    if settings.uses_embedded_broker:
        options["polling_interval"] = min(settings.broker_polling_interval_s, 0.02)
    return Connection(kombu_url(settings), transport_options=options, connect_timeout=5)
