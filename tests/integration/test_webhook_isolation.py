"""Slow webhook receivers cannot hold the storing of results (issue 8, hole 2).

The post-processing and delivery workers run as the stack starts them (real Celery processes on
the real broker and database); outcomes are sent to ``finalize_job`` by name, as the inference
workers send them. While every delivery thread is held by a receiver that answers 200 and then
trickles its body, a job without a webhook is still stored at once, and each held attempt is
recorded as failed at its deadline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from chatq.demo import free_port
from chatq.stack import Stack
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import dispose_engine, session_scope
from shared.db.models import DeliveryStatus, Job, JobStatus, WebhookAttempt, WebhookDelivery
from shared.messaging.celery_config import make_celery
from shared.messaging.topology import FINALIZE_JOB_TASK, POSTPROCESS_QUEUE_NAME
from tests.conftest import (
    BACKENDS,
    NamespaceFactory,
    backend_env,
    prepare_backend,
    settings_from_env,
)
from tests.integration.factories import completed_outcome, make_job
from tests.webhook_servers import SlowReceiver

pytestmark = pytest.mark.integration

DEADLINE_S = 3.0
THREADS = 2  # per worker: two slow receivers are enough to hold every thread of a shared pool


@pytest.fixture(params=BACKENDS)
def workers(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    server_namespace_factory: NamespaceFactory,
) -> Iterator[Settings]:
    """A post-processing worker and a delivery worker, as ``chatq up`` starts them."""
    env = backend_env(request.param, tmp_path, server_namespace_factory)
    env.update(
        CHATQ_API_PORT=str(free_port()),  # names the workers (--hostname)
        CHATQ_INFERENCE_WORKERS="0",
        CHATQ_POSTPROCESS_CONCURRENCY=str(THREADS),
        CHATQ_WEBHOOK_DELIVERY_CONCURRENCY=str(THREADS),
        CHATQ_WEBHOOK_TIMEOUT_S=str(DEADLINE_S),
        CHATQ_WEBHOOK_RETRY_SCHEDULE_S="[600]",
        CHATQ_WEBHOOK_ALLOW_PRIVATE="true",  # the receiver listens on loopback
        CHATQ_LOG_LEVEL="WARNING",
    )
    settings = settings_from_env(env)
    prepare_backend(settings)
    stack = Stack(settings, env)
    try:
        for spec in stack.specs():
            if spec.name.startswith(("postprocess-", "delivery-")):
                stack.spawn(spec)
        assert set(stack.processes) == {"postprocess-0", "delivery-0"}
        yield settings
    finally:
        stack.stop(timeout_s=15)
        dispose_engine(settings.database_url)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll a database state until it holds; returns when it did (``time.monotonic()``)."""
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        if condition():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def job_status(settings: Settings, job_id: uuid.UUID) -> JobStatus:
    with session_scope(settings.database_url) as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
    assert status is not None
    return status


def test_a_job_is_stored_at_once_while_slow_receivers_hold_every_delivery_thread(
    workers: Settings,
) -> None:
    settings = workers
    key = create_api_key(settings.database_url, "shop")
    celery = make_celery(settings, "test-sender")

    def finish(job: Job) -> None:
        celery.send_task(
            FINALIZE_JOB_TASK,
            args=[completed_outcome(job.id).model_dump(mode="json")],
            queue=POSTPROCESS_QUEUE_NAME,
        )

    # the post-processor is up once a first job is stored
    warm_up = make_job(settings.database_url, key.id)
    finish(warm_up)
    wait_until(
        lambda: job_status(settings, warm_up.id) is JobStatus.COMPLETED, 60, "warm-up stored"
    )

    with SlowReceiver(trickle="body", interval_s=0.05, body_length=100_000) as slow:
        for _ in range(THREADS):
            finish(make_job(settings.database_url, key.id, webhook_url=slow.url()))
        # every delivery thread is now held by a receiver that answered 200 and trickles on
        assert len(slow.wait_for_requests(THREADS, timeout_s=60)) == THREADS

        plain = make_job(settings.database_url, key.id)
        sent_at = time.monotonic()
        finish(plain)
        stored_at = wait_until(
            lambda: job_status(settings, plain.id) is JobStatus.COMPLETED, 30, "plain job stored"
        )
        still_held = slow.open_connections

        exchanges = slow.wait_until_closed(THREADS, timeout_s=DEADLINE_S + 10)

    # the embedded broker polls once a second; Postgres + RabbitMQ answer in milliseconds
    assert stored_at - sent_at < 2.0
    assert still_held == THREADS, "the deliveries should still have been in flight"

    with session_scope(settings.database_url) as session:
        attempts = session.scalars(select(WebhookAttempt)).all()
        statuses = session.scalars(select(WebhookDelivery.status)).all()
        assert len(attempts) == THREADS
        for attempt in attempts:
            assert attempt.status_code is None
            assert f"deadline of {DEADLINE_S:g} s exceeded" in (attempt.error or "")
            assert DEADLINE_S * 1000 <= attempt.duration_ms < DEADLINE_S * 1000 + 1000
        assert set(statuses) == {DeliveryStatus.PENDING}  # retried on the schedule
    for exchange in exchanges:
        assert exchange.closed_at is not None
        assert exchange.closed_at - exchange.started_at < DEADLINE_S + 1.0
