"""The inference consumer on a real broker, with a fake engine: deliveries reach the scheduler,
and each settlement is applied as soon as it is queued."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Queue

from services.worker.consumer import InferenceConsumer
from shared.config import Settings
from shared.messaging.broker import broker_connection
from shared.messaging.topology import DEAD_LETTER_QUEUE, INFERENCE_QUEUE, queue_depth
from tests.conftest import NamespaceFactory, backend_env, prepare_backend, settings_from_env
from tests.unit.worker.fakes import (
    WAIT_S,
    FakeEngine,
    FakeProcessor,
    FakeSender,
    publish_requests,
    wait_until,
)

pytestmark = pytest.mark.integration

# Longer than the test may take: a settlement applied within the test was applied on a wake-up
# it caused itself, not on the idle one (RabbitMQ's first heartbeat comes after 15 s, too).
IDLE_WAKEUP_S = 60.0


@pytest.fixture
def rabbitmq_settings(tmp_path: Path, server_namespace_factory: NamespaceFactory) -> Settings:
    settings = settings_from_env(backend_env("servers", tmp_path, server_namespace_factory))
    prepare_backend(settings)
    return settings


class RunningConsumer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sender = FakeSender()
        self.consumer = InferenceConsumer(
            settings, FakeProcessor(FakeEngine()), self.sender, idle_wakeup_s=IDLE_WAKEUP_S
        )
        self._thread = threading.Thread(target=self.consumer.run, name="consumer")
        self._thread.start()

    def publish(self, count: int) -> None:
        with broker_connection(self.settings) as connection:
            publish_requests(connection.Producer(), count)

    def stop(self) -> None:
        self.consumer.stop()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()


@pytest.fixture
def running(rabbitmq_settings: Settings) -> Iterator[RunningConsumer]:
    consumer = RunningConsumer(rabbitmq_settings)
    yield consumer
    if consumer._thread.is_alive():
        consumer.stop()


def test_an_ack_is_applied_on_the_wake_up_its_settlement_causes(
    running: RunningConsumer,
) -> None:
    running.publish(1)
    assert running.sender.wait_for(1)
    # the consumer thread's idle wake-up is a minute away: only the settlement can wake it
    assert wait_until(lambda: running.consumer.settled == 1)
    running.stop()
    with broker_connection(running.settings) as connection:
        assert queue_depth(connection, INFERENCE_QUEUE) == 0  # acknowledged, not handed back


def test_every_delivered_job_is_handed_on_and_acknowledged_once(
    backend_settings: Settings,
) -> None:
    running = RunningConsumer(backend_settings)
    try:
        running.publish(20)
        assert running.sender.wait_for(20)
        assert wait_until(lambda: running.consumer.settled == 20)
    finally:
        running.stop()
    assert len({outcome.job_id for outcome in running.sender.outcomes}) == 20
    with broker_connection(backend_settings) as connection:
        assert queue_depth(connection, INFERENCE_QUEUE) == 0


def test_a_body_no_consumer_can_decode_goes_to_the_dead_letter_queue(
    running: RunningConsumer,
) -> None:
    with broker_connection(running.settings) as connection:
        connection.Producer().publish(
            b"not json at all",
            exchange=INFERENCE_QUEUE.exchange,
            routing_key=INFERENCE_QUEUE.routing_key,
            content_type="text/plain",
            content_encoding="utf-8",
            delivery_mode=2,
        )
    # redelivering it would fail forever: it is rejected, and the consumer goes on
    assert wait_until(lambda: running.consumer.settled == 0 and _depth(running, DEAD_LETTER_QUEUE))
    running.publish(1)
    assert running.sender.wait_for(1)
    assert wait_until(lambda: running.consumer.settled == 1)
    running.stop()
    with broker_connection(running.settings) as connection:
        assert queue_depth(connection, INFERENCE_QUEUE) == 0
        assert queue_depth(connection, DEAD_LETTER_QUEUE) == 1


def _depth(running: RunningConsumer, queue: Queue) -> int:
    with broker_connection(running.settings) as connection:
        return queue_depth(connection, queue)
