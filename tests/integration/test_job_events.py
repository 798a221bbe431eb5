"""One watcher per API process wakes every long-poll waiting for a finished job (NOTIFY on
Postgres, one query for all waited jobs on SQLite), and only those."""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import update

from services.api.app import create_app
from services.api.context import EXTENSION_KEY
from services.api.job_events import JobEvents
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import Job, JobStatus
from shared.db.notifications import MAX_PAYLOAD_BYTES, notify_job_finished
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


def test_a_notification_carries_the_finished_job_where_it_fits(
    backend_settings: Settings,
) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "rendered")
    small, large = make_job(url, key.id).id, make_job(url, key.id).id
    events = JobEvents(url)
    rendered = {small: json.dumps({"id": str(small)}), large: "x" * MAX_PAYLOAD_BYTES}
    with events.subscribe(small) as small_finished, events.subscribe(large) as large_finished:
        assert events.watching.wait(10)
        small_finished.clear()
        large_finished.clear()
        for job_id in (small, large):
            with session_scope(url) as session:
                session.execute(
                    update(Job).where(Job.id == job_id).values(status=JobStatus.COMPLETED)
                )
                notify_job_finished(session, job_id, lambda job_id=job_id: rendered[job_id])
        assert small_finished.wait(5) and large_finished.wait(5)
        # SQLite has no notifications: its waiters always read the job again
        assert small_finished.rendered == (rendered[small] if events.notifies else None)
        assert large_finished.rendered is None  # too large to ride along: the id alone


def test_a_long_poll_answers_with_what_the_notification_carried(
    postgres_settings: Settings,
) -> None:
    """The waiter does not read the job again: what the notification says is the answer
    (here it differs from the row on purpose, to show which one was used)."""
    url = postgres_settings.database_url
    key = create_api_key(url, "long-poll")
    job_id = make_job(url, key.id).id
    app = create_app(postgres_settings)
    answered: list[Any] = []
    waiter = threading.Thread(
        target=lambda: answered.append(
            app.test_client().get(
                f"/v1/jobs/{job_id}?wait=20", headers={"Authorization": f"Bearer {key.key}"}
            )
        )
    )
    waiter.start()
    # the watcher starts with the first subscription and listens before the wait begins
    assert app.extensions[EXTENSION_KEY].job_events.watching.wait(10)
    time.sleep(0.3)  # the waiter's first read of the job, then its wait
    view = {"id": str(job_id), "status": "completed", "response": "from the notification"}
    with session_scope(url) as session:
        notify_job_finished(session, job_id, lambda: json.dumps(view))
    waiter.join(20)
    assert answered and answered[0].status_code == 200
    assert answered[0].get_json() == view
