"""A post-processor whose every thread is stuck exits, and the results it held are stored after
it is started again (``services/postprocess/stall_watchdog.py``).

A real Celery worker on Postgres + RabbitMQ, started as ``chatq up`` starts it, with one thread.
The test holds a job's row lock in an open transaction, so the task storing that job's result
waits for it, as a wedged thread would; the worker holds the next results unstarted. With
``CHATQ_STALL_TIMEOUT_S`` short, the worker must exit with status 70, and once the lock is gone
a new worker must store every result: nothing the stuck worker held is lost.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from chatq.demo import free_port
from chatq.stack import Stack
from services.postprocess.stall_watchdog import EXIT_STALLED
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import dispose_engine, get_engine, session_scope
from shared.db.models import Job, JobStatus
from shared.messaging.celery_config import make_celery
from shared.messaging.topology import FINALIZE_JOB_TASK, POSTPROCESS_QUEUE_NAME
from tests.chaos.harness import wait_for
from tests.conftest import NamespaceFactory, backend_env, prepare_backend, settings_from_env
from tests.integration.factories import completed_outcome, make_job

pytestmark = pytest.mark.integration

STALL_TIMEOUT_S = 3


def statuses(settings: Settings, job_ids: list[uuid.UUID]) -> list[JobStatus]:
    with session_scope(settings.database_url) as session:
        found = dict(session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids))).all())
    return [found[job_id] for job_id in job_ids]


def test_a_post_processor_with_every_thread_stuck_exits_and_nothing_it_held_is_lost(
    tmp_path: Path, server_namespace_factory: NamespaceFactory
) -> None:
    env = backend_env("servers", tmp_path, server_namespace_factory)
    env.update(
        CHATQ_API_PORT=str(free_port()),  # names the worker (--hostname)
        CHATQ_INFERENCE_WORKERS="0",
        CHATQ_WEBHOOK_DELIVERY_WORKERS="0",
        CHATQ_POSTPROCESS_CONCURRENCY="1",
        CHATQ_STALL_TIMEOUT_S=str(STALL_TIMEOUT_S),
        CHATQ_LOG_LEVEL="WARNING",
    )
    settings = settings_from_env(env)
    prepare_backend(settings)
    stack = Stack(settings, env)
    (spec,) = [spec for spec in stack.specs() if spec.name.startswith("postprocess-")]
    key = create_api_key(settings.database_url, "shop")
    jobs = [make_job(settings.database_url, key.id).id for _ in range(3)]
    celery = make_celery(settings, "test-sender")
    locker = get_engine(settings.database_url).connect()
    try:
        # the first job's row stays locked: storing its result waits, as a stuck thread does
        transaction = locker.begin()
        locker.execute(select(Job.id).where(Job.id == jobs[0]).with_for_update())
        stuck = stack.spawn(spec)
        for job_id in jobs:
            celery.send_task(
                FINALIZE_JOB_TASK,
                args=[completed_outcome(job_id).model_dump(mode="json")],
                queue=POSTPROCESS_QUEUE_NAME,
            )
        # a guard against hanging: the watchdog looks every STALL_TIMEOUT_S / 4 seconds
        assert stuck.wait(timeout=60 + STALL_TIMEOUT_S) == EXIT_STALLED
        assert statuses(settings, jobs)[0] is JobStatus.QUEUED
        transaction.rollback()

        stack.spawn(spec)  # as the supervisor starts it again
        wait_for(
            lambda: statuses(settings, jobs) == [JobStatus.COMPLETED] * 3,
            60,
            "every result stored by the restarted post-processor",
        )
    finally:
        locker.close()
        stack.stop(timeout_s=15)
        dispose_engine(settings.database_url)
