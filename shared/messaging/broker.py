"""Broker connections from settings: RabbitMQ (``amqp://``) or the embedded SQLite transport."""

from __future__ import annotations

from typing import Any

from kombu import Connection, Producer
from kombu.transport import TRANSPORT_ALIASES

from shared.config import Settings
from shared.messaging.topology import INFERENCE_QUEUE, JOBS_EXCHANGE

EMBEDDED_TRANSPORT_ALIAS = "chatqsqlite"
TRANSPORT_ALIASES.setdefault(EMBEDDED_TRANSPORT_ALIAS, "shared.messaging.embedded:Transport")


def kombu_url(settings: Settings) -> str:
    """The broker URL as kombu and Celery should see it.

    ``sqla+sqlite:///…`` (the documented embedded default) is served by chatq's tuned subclass of
    kombu's SQLAlchemy transport.
    """
    if settings.uses_embedded_broker:
        return EMBEDDED_TRANSPORT_ALIAS + settings.broker_url.removeprefix("sqla")
    return settings.broker_url


def transport_options(settings: Settings) -> dict[str, Any]:
    if settings.uses_embedded_broker:
        return {"polling_interval": settings.broker_polling_interval_s}
    if settings.broker_url.startswith(("amqp", "pyamqp")):
        # Every publish waits for RabbitMQ's confirm: a job is accepted only once it is safe.
        return {"confirm_publish": True}
    return {}


def broker_connection(settings: Settings, *, heartbeat: float = 0) -> Connection:
    return Connection(
        kombu_url(settings),
        transport_options=transport_options(settings),
        heartbeat=heartbeat,
        connect_timeout=5,
    )


def publish_inference_request(
    producer: Producer, payload: dict[str, Any], priority: int, confirm_timeout_s: float
) -> None:
    """Publish one inference request, persistent, and (on RabbitMQ) wait for its confirm."""
    producer.publish(
        payload,
        exchange=JOBS_EXCHANGE,
        routing_key=INFERENCE_QUEUE.routing_key,
        declare=[INFERENCE_QUEUE],
        serializer="json",
        delivery_mode="persistent",
        priority=priority,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        confirm_timeout=confirm_timeout_s,
    )
