"""One watcher per API process wakes every long-poll waiting for a finished job (NOTIFY on
Postgres, one query for all waited jobs on SQLite), and only those."""

from __future__ import annotations

import uuid
from contextlib import ExitStack

import pytest
from sqlalchemy import update

from services.api.job_events import JobEvents
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import Job, JobStatus
from shared.db.notifications import notify_job_finished
from tests.integration.factories import make_job

pytestmark = pytest.mark.integration

WAITERS = 30


def finish(database_url: str, job_id: uuid.UUID) -> None:
    with session_scope(database_url) as session:
        session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.COMPLETED))
        notify_job_finished(session, job_id)


def test_every_waiter_of_a_finished_job_wakes_and_no_other(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "waiter")
    finished_job = make_job(url, key.id).id
    other_job = make_job(url, key.id).id
    events = JobEvents(url)
    with ExitStack() as waits:
        waiting = [waits.enter_context(events.subscribe(finished_job)) for _ in range(WAITERS)]
        bystander = waits.enter_context(events.subscribe(other_job))
        assert events.watching.wait(10), "the watcher never started"
        for event in [*waiting, bystander]:
            event.clear()  # a watcher that starts wakes everyone once, to re-read
        finish(url, finished_job)
        assert all(event.wait(5) for event in waiting)
        assert not bystander.is_set()


def test_a_job_waited_for_again_after_its_waiters_left_still_wakes(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "again")
    job_id = make_job(url, key.id).id
    events = JobEvents(url)
    with events.subscribe(job_id):
        assert events.watching.wait(10)
    with events.subscribe(job_id) as finished:
        finish(url, job_id)
        assert finished.wait(5)
