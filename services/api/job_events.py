"""Waking long-polls the moment a job finishes.

One watcher per API process wakes every request waiting for a job, however many wait:
- on Postgres, post-processing sends ``NOTIFY chatq_jobs, '<job id> <job JSON>'`` in the
  transaction that stores the result (the job as the API shows it, when it fits in a
  notification), and the watcher ``LISTEN``s: a waiter answers with that JSON, without
  reading the job again;
- SQLite has no notifications: the watcher asks which of the jobs being waited for are
  finished, in one query for all of them (50 waits cost one query, not 50), whenever the
  database's job-finished doorbell rings (``shared/db/notifications.py``), and at the latest
  every ``SQLITE_WATCH_S``.

Notifications sent while the listener reconnects are lost: once it listens again it wakes
every waiter to re-read its job. Waiters also re-read every ``SAFETY_POLL_S`` whatever happens;
that is rare because each re-read costs the process CPU (50 waits re-reading every 0.5 s kept
an API process busy). Under gunicorn's gevent worker the watcher and the waits are greenlets.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

from shared.db.engine import create_db_engine
from shared.db.models import TERMINAL_STATUSES, Job
from shared.db.notifications import JOB_FINISHED_CHANNEL, job_finished_bell, parse_notification
from shared.logs import get_logger

log = get_logger(__name__)

SAFETY_POLL_S = 5.0
SQLITE_WATCH_S = 0.02
SQLITE_IDS_PER_QUERY = 500  # well under SQLite's limit on bound parameters


class JobEvents:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        url = make_url(database_url)
        self._conninfo = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if url.get_backend_name() == "postgresql"
            else None
        )
        self._waiting: dict[uuid.UUID, set[JobFinished]] = defaultdict(set)
        self._lock = threading.Lock()
        self._someone_waits = threading.Event()
        self._watcher: threading.Thread | None = None
        self.watching = threading.Event()
        """Set once the watcher listens (Postgres) or polls (SQLite): wake-ups from then on."""

    @property
    def notifies(self) -> bool:
        return self._conninfo is not None

    @contextmanager
    def subscribe(self, job_id: uuid.UUID) -> Iterator[JobFinished]:
        """An event set when ``job_id`` finishes (register before reading the job)."""
        event = JobFinished()
        with self._lock:
            self._waiting[job_id].add(event)
            self._someone_waits.set()
            if self._watcher is None:
                watch = self._listen if self._conninfo else self._poll_sqlite
                self._watcher = threading.Thread(target=watch, name="job-events", daemon=True)
                self._watcher.start()
        try:
            yield event
        finally:
            with self._lock:
                self._waiting[job_id].discard(event)
                if not self._waiting[job_id]:
                    del self._waiting[job_id]
                if not self._waiting:
                    self._someone_waits.clear()

    def poll_intervals(self) -> Iterator[float]:
        """How long a waiter waits for its event before re-reading the job anyway."""
        while True:
            yield SAFETY_POLL_S

    def _listen(self) -> None:
        assert self._conninfo is not None
        while True:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {JOB_FINISHED_CHANNEL}")
                    self._wake_everyone()  # whatever finished before we listened
                    self.watching.set()
                    while True:
                        for notification in connection.notifies(timeout=5.0):
                            self._wake_payload(notification.payload)
            except Exception as error:
                log.warning("job_events_listener_lost", error=repr(error))
                threading.Event().wait(1.0)
                # Reconnect once somebody waits again (who subscribes is woken as soon as the
                # listener is back): an idle process does not retry a database that is gone
                # every second, nor log each attempt.
                self._someone_waits.wait()

    def _poll_sqlite(self) -> None:
        # plain reads: the application's engine would take SQLite's write lock for each one
        engine = create_db_engine(self._database_url, immediate_transactions=False)
        # bound before the first look: a ring after a look waits in its socket for the next
        bell = job_finished_bell(make_url(self._database_url).database).listen()
        if bell is not None:
            bell.subscribe()
        self.watching.set()
        while True:
            self._someone_waits.wait()
            with self._lock:
                waited = list(self._waiting)
            try:
                with engine.connect() as connection:
                    for start in range(0, len(waited), SQLITE_IDS_PER_QUERY):
                        chunk = waited[start : start + SQLITE_IDS_PER_QUERY]
                        finished = connection.scalars(
                            select(Job.id).where(
                                Job.id.in_(chunk), Job.status.in_(TERMINAL_STATUSES)
                            )
                        )
                        for job_id in finished:
                            self._wake(job_id)
            except Exception as error:
                log.warning("job_events_poll_failed", error=repr(error))
            if bell is None:
                threading.Event().wait(SQLITE_WATCH_S)
            else:
                bell.wait(SQLITE_WATCH_S)

    def _wake_payload(self, payload: str) -> None:
        parsed = parse_notification(payload)
        if parsed is not None:
            self._wake(*parsed)

    def _wake_everyone(self) -> None:
        with self._lock:
            events = [event for waiting in self._waiting.values() for event in waiting]
        for event in events:
            event.set()

    def _wake(self, job_id: uuid.UUID, rendered: str | None = None) -> None:
        with self._lock:
            events = list(self._waiting.get(job_id, ()))
        for event in events:
            if rendered is not None:
                event.rendered = rendered
            event.set()


class JobFinished(threading.Event):
    """Set when the job waited for finishes; ``rendered`` is the finished job as the API shows
    it (``JobView`` JSON), when its notification carried it: no need to read it again."""

    def __init__(self) -> None:
        super().__init__()
        self.rendered: str | None = None
