"""The embedded broker's publish (one INSERT, the queue's row id remembered) stays correct when
the queue's row it remembers is gone: removed by hand, say, with the messages it held."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Consumer, Producer, Queue

from shared.config import Settings
from shared.messaging.broker import broker_connection

pytestmark = pytest.mark.integration


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Settings]:
    yield Settings(data_dir=tmp_path, database_url="", broker_url="")


def drain(settings: Settings, queue: Queue) -> list[dict[str, int]]:
    received: list[dict[str, int]] = []
    with broker_connection(settings) as connection:
        consumer = Consumer(
            connection, [queue], callbacks=[lambda b, m: (received.append(b), m.ack())]
        )
        with consumer:
            while True:
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    return received


def test_a_publish_after_its_queue_was_deleted_elsewhere_is_not_lost(embedded: Settings) -> None:
    name = f"remembered-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, routing_key=name)
    with broker_connection(embedded) as publishing:
        producer = Producer(publishing)
        producer.publish({"n": 1}, routing_key=name, declare=[queue])  # its row id remembered
        with sqlite3.connect(embedded.data_dir / "broker.db") as broker_file:
            broker_file.execute(
                "DELETE FROM kombu_message WHERE queue_id IN "
                "(SELECT id FROM kombu_queue WHERE name = ?)",
                (name,),
            )
            broker_file.execute("DELETE FROM kombu_queue WHERE name = ?", (name,))
        producer.publish({"n": 2}, routing_key=name, declare=[queue])
    assert drain(embedded, queue) == [{"n": 2}]
