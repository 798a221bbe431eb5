"""The embedded default's doorbells: a consumer of the embedded broker, and the API's watcher of
finished jobs on SQLite, wake when something is written for them, not when their polling
interval (set here far longer than the test waits) runs out."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Consumer, Producer, Queue
from sqlalchemy import update
from sqlalchemy.engine import make_url

from services.api import job_events
from services.api.job_events import JobEvents
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import dispose_engine, session_scope
from shared.db.migrate import upgrade_database
from shared.db.models import Job, JobStatus
from shared.db.notifications import job_finished_bell, notify_job_finished
from shared.messaging.broker import broker_connection
from tests.integration.factories import make_job

pytestmark = pytest.mark.integration

SLOW_POLL_S = 10.0  # the longest the settings allow: a test that waited it out fails below
WAIT_S = 6.0


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(
        data_dir=tmp_path, database_url="", broker_url="", broker_polling_interval_s=SLOW_POLL_S
    )
    upgrade_database(settings.database_url)
    yield settings
    dispose_engine(settings.database_url)


def publish_later(settings: Settings, queue: Queue, body: dict[str, str]) -> threading.Thread:
    def publish() -> None:
        threading.Event().wait(0.3)  # after the consumer's first look found the queue empty
        with broker_connection(settings) as connection:
            Producer(connection).publish(body, routing_key=queue.name, declare=[queue])

    thread = threading.Thread(target=publish)
    thread.start()
    return thread


def test_a_consumer_of_the_embedded_broker_wakes_for_a_publish(embedded: Settings) -> None:
    name = f"doorbell-{uuid.uuid4().hex[:8]}"
    queue, other = Queue(name, routing_key=name), Queue(f"{name}-x", routing_key=f"{name}-x")
    received: list[dict[str, str]] = []
    with broker_connection(embedded) as connection:
        consumer = Consumer(
            connection, [queue], callbacks=[lambda body, message: received.append(body)]
        )
        consumer.declare()
        with consumer, pytest.raises(TimeoutError):
            connection.drain_events(timeout=0.5)  # an empty look, a wait: the tables exist now
        with consumer:
            publisher = publish_later(embedded, queue, {"hello": "worker"})
            started = time.monotonic()
            connection.drain_events(timeout=WAIT_S)
            # without the ring it would look again only when its wait (WAIT_S) ran out
            assert time.monotonic() - started < WAIT_S / 2
            publisher.join()
            assert received == [{"hello": "worker"}]
            # a publish to a queue nobody here consumes rings nobody here
            publisher = publish_later(embedded, other, {"hello": "nobody"})
            publisher.join()
            listener = connection.transport._listener
            assert listener is not None and listener.topics == {queue.name}
            assert not listener.wait(0.2)


def test_the_api_watcher_wakes_for_a_job_finished_on_sqlite(
    embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_events, "SQLITE_WATCH_S", SLOW_POLL_S)
    url = embedded.database_url
    key = create_api_key(url, "waiter")
    job_id = make_job(url, key.id).id
    events = JobEvents(url)
    with events.subscribe(job_id) as finished:
        assert events.watching.wait(10)
        threading.Event().wait(0.3)  # the watcher has looked once and waits
        finished.clear()
        with session_scope(url) as session:
            session.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.COMPLETED))
            notify_job_finished(session, job_id)
        assert finished.wait(WAIT_S), "the watcher waited out its polling interval"


def test_a_rolled_back_finish_rings_nothing(embedded: Settings) -> None:
    url = embedded.database_url
    key = create_api_key(url, "rollback")
    job_id = make_job(url, key.id).id
    listener = job_finished_bell(make_url(url).database).listen()
    assert listener is not None
    listener.subscribe()
    with pytest.raises(RuntimeError), session_scope(url) as session:
        notify_job_finished(session, job_id)
        raise RuntimeError("the transaction fails")
    assert not listener.wait(0.2)
    with session_scope(url) as session:
        notify_job_finished(session, job_id)
    assert listener.wait(WAIT_S)
    listener.close()
