"""The broker loop on kombu's in-memory transport: deliveries reach the scheduler and come back
settled, a revived connection forgets what the dead channel held, an unexpected error costs a
reconnect (not the worker), and a stop ends the wait for an unreachable broker."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from kombu import Connection

from services.worker.consumer import CeleryOutcomeSender, InferenceConsumer
from services.worker.pending_job import PendingJob
from shared.config import Settings
from shared.db.models import utcnow
from shared.messaging.celery_config import make_celery
from shared.messaging.schemas import InferenceOutcome
from shared.messaging.topology import (
    FINALIZE_JOB_TASK,
    INFERENCE_QUEUE,
    POSTPROCESS_QUEUE,
    declare_topology,
    queue_depth,
)
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
    settings = Settings(data_dir=tmp_path, broker_url="memory://")
    # kombu's memory transport keeps its queues per process, whatever the virtual host: start
    # from an empty queue
    with Connection(settings.broker_url) as connection:
        declare_topology(connection)
        INFERENCE_QUEUE(connection.default_channel).purge()
    return settings


def _publish(settings: Settings, count: int) -> None:
    with Connection(settings.broker_url) as connection:
        declare_topology(connection)
        publish_requests(connection.Producer(), count)


def _running(consumer: InferenceConsumer) -> threading.Thread:
    thread = threading.Thread(target=consumer.run, name="consumer")
    thread.start()
    return thread


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


def test_an_unexpected_error_costs_a_reconnect_not_the_worker(tmp_path: Path) -> None:
    settings = _memory_settings(tmp_path)
    sender = FakeSender()
    consumer = InferenceConsumer(settings, FakeProcessor(FakeEngine()), sender)
    submit = consumer.scheduler.submit
    failed = threading.Event()

    def fails_once(job: PendingJob) -> bool:
        if not failed.is_set():
            failed.set()
            raise KeyError("a bug in the hand-over")
        return submit(job)

    consumer.scheduler.submit = fails_once  # type: ignore[method-assign]
    thread = _running(consumer)
    try:
        _publish(settings, 1)
        assert wait_until(failed.is_set)
        # the loop connected again and goes on (the delivery that met the bug went back with
        # its channel on RabbitMQ; kombu's memory transport drops it)
        _publish(settings, 1)
        assert sender.wait_for(1)
        assert wait_until(lambda: consumer.settled >= 1)
        assert thread.is_alive()
    finally:
        consumer.stop()
        thread.join(WAIT_S)
    assert not thread.is_alive()


def test_a_stop_ends_the_wait_for_an_unreachable_broker(tmp_path: Path) -> None:
    refused = Settings(data_dir=tmp_path, broker_url="amqp://guest:guest@127.0.0.1:1//")
    consumer = InferenceConsumer(refused, FakeProcessor(FakeEngine()), FakeSender())
    thread = _running(consumer)
    time.sleep(2.5)  # into the waits between connection attempts
    consumer.stop()
    thread.join(2.0)  # the wait is checked every second
    assert not thread.is_alive()


def test_an_outcome_is_sent_to_post_processing_without_the_answer_in_its_headers(
    tmp_path: Path,
) -> None:
    """Flower and the logs show a task's ``argsrepr``: it names the job, never the customer's
    text, which travels only in the body."""
    settings = _memory_settings(tmp_path)
    celery = make_celery(settings, "test-sender")
    with Connection(settings.broker_url) as connection:
        POSTPROCESS_QUEUE(connection.default_channel).declare()
        POSTPROCESS_QUEUE(connection.default_channel).purge()
    outcome = InferenceOutcome(
        job_id=uuid.uuid4(),
        status="completed",
        response="Your card 4111 1111 1111 1111 is on file, Sam.",
        finished_at=utcnow(),
    )
    CeleryOutcomeSender(celery).send(outcome)

    with Connection(settings.broker_url) as connection:
        message = POSTPROCESS_QUEUE(connection.default_channel).get(no_ack=True)
    assert message is not None
    assert message.headers["task"] == FINALIZE_JOB_TASK
    assert str(outcome.job_id) in message.headers["argsrepr"]
    assert "4111" not in message.headers["argsrepr"]
    args, _kwargs, _embed = message.decode()
    assert InferenceOutcome.model_validate(args[0]) == outcome
