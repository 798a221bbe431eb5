"""Token streams on the real brokers (embedded SQLite transport, and RabbitMQ): a stream's
queue exists while its API process listens, receives what the worker publishes in order, and is
gone once the stream ends; what is published after that is dropped, not kept."""

from __future__ import annotations

import uuid

import pytest
from amqp.exceptions import NotFound, ResourceLocked
from sqlalchemy import create_engine, text

from services.api.chat.streaming import TokenListener
from services.worker.streaming import StreamPublisher
from shared.config import Settings
from shared.messaging.streams import StreamEvent, stream_connection, stream_queue_name

pytestmark = pytest.mark.integration


def queue_exists(settings: Settings, name: str) -> bool:
    if settings.uses_embedded_broker:
        engine = create_engine("sqlite:///" + settings.broker_url.split(":///", 1)[1])
        try:
            with engine.connect() as connection:
                found = connection.execute(
                    text("SELECT count(*) FROM kombu_queue WHERE name = :name"), {"name": name}
                ).scalar()
        finally:
            engine.dispose()
        return bool(found)
    with stream_connection(settings) as connection:
        try:
            connection.default_channel.queue_declare(name, passive=True)
        except ResourceLocked:  # it exists, exclusive to the listener's connection
            return True
        except NotFound:
            return False
        return True


def test_a_stream_queue_lives_exactly_as_long_as_its_listener(
    backend_settings: Settings,
) -> None:
    job_id = uuid.uuid4()
    name = stream_queue_name(job_id)
    publisher = StreamPublisher(backend_settings)
    try:
        with TokenListener(backend_settings, job_id) as listener:
            assert queue_exists(backend_settings, name)
            for index, piece in enumerate(["Hel", "lo"]):
                publisher.publish(job_id, StreamEvent(type="delta", index=index, text=piece))
            publisher.publish(job_id, StreamEvent(type="end", index=2))
            received = [listener.get(5.0) for _ in range(3)]
        assert [(e.type, e.text) for e in received if e is not None] == [
            ("delta", "Hel"), ("delta", "lo"), ("end", ""),
        ]  # fmt: skip
        assert not queue_exists(backend_settings, name)
        # the client left; the worker goes on publishing: nothing is created or kept
        publisher.publish(job_id, StreamEvent(type="delta", index=3, text="late"))
        assert not queue_exists(backend_settings, name)
    finally:
        publisher.close()
