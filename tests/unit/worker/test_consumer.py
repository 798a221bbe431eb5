"""The broker loop on kombu's in-memory transport: deliveries reach the scheduler and come back
settled, and a revived connection forgets what the dead channel held."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from kombu import Connection

from services.worker.consumer import InferenceConsumer
from shared.config import Settings
from shared.messaging.topology import INFERENCE_QUEUE, declare_topology, queue_depth
from tests.unit.worker.fakes import (
    WAIT_S,
    FakeEngine,
    FakeProcessor,
    FakeSender,
    pending,
    publish_requests,
    wait_until,
)


def _memory_settings(tmp_path: Path) -> Settings:
    # a virtual host of its own: kombu's memory transport is shared by the whole process
    return Settings(data_dir=tmp_path, broker_url=f"memory://localhost/{uuid.uuid4().hex}")


def _publish(settings: Settings, count: int) -> None:
    with Connection(settings.broker_url) as connection:
        declare_topology(connection)
        publish_requests(connection.Producer(), count)


def test_every_delivery_is_handed_on_and_settled_then_the_loop_stops(tmp_path: Path) -> None:
    settings = _memory_settings(tmp_path)
    sender = FakeSender()
    consumer = InferenceConsumer(settings, FakeProcessor(FakeEngine()), sender)
    thread = threading.Thread(target=consumer.run, name="consumer")
    thread.start()
    try:
        _publish(settings, 5)
        assert sender.wait_for(5)
        assert wait_until(lambda: consumer.settled == 5)
    finally:
        consumer.stop()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert len({outcome.job_id for outcome in sender.outcomes}) == 5
    with Connection(settings.broker_url) as connection:
        assert queue_depth(connection, INFERENCE_QUEUE) == 0


def test_a_revived_connection_forgets_the_jobs_its_dead_channel_held(tmp_path: Path) -> None:
    consumer = InferenceConsumer(
        _memory_settings(tmp_path), FakeProcessor(FakeEngine()), FakeSender()
    )
    waiting = [pending(), pending()]
    for job in waiting:
        assert consumer.scheduler.submit(job)
    consumer.on_connection_revived()
    assert len(consumer.scheduler.batcher) == 0
    assert all(job.message.settlements == [] for job in waiting)  # the broker redelivers them
