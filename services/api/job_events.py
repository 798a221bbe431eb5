"""Waking long-polls the moment a job finishes.

On Postgres, post-processing sends ``NOTIFY chatq_jobs, '<job id>'`` in the transaction that
stores the result; one listener thread per API process wakes the requests waiting for that job.
A notification can be missed (listener reconnecting), so waiters still re-read the job every
``SAFETY_POLL_S``. SQLite has no notifications: waiters poll, quickly at first.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url

from shared.db.notifications import JOB_FINISHED_CHANNEL
from shared.logs import get_logger

log = get_logger(__name__)

SAFETY_POLL_S = 0.5
SQLITE_POLL_S = (0.005, 0.01, 0.02, 0.05)  # then every 0.05 s


class JobEvents:
    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self._conninfo = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if url.get_backend_name() == "postgresql"
            else None
        )
        self._waiting: dict[uuid.UUID, set[threading.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None

    @property
    def notifies(self) -> bool:
        return self._conninfo is not None

    @contextmanager
    def subscribe(self, job_id: uuid.UUID) -> Iterator[threading.Event]:
        """An event set when ``job_id`` finishes (register before reading the job)."""
        event = threading.Event()
        with self._lock:
            self._waiting[job_id].add(event)
            if self._conninfo and self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name="job-events", daemon=True
                )
                self._listener.start()
        try:
            yield event
        finally:
            with self._lock:
                self._waiting[job_id].discard(event)
                if not self._waiting[job_id]:
                    del self._waiting[job_id]

    def poll_intervals(self) -> Iterator[float]:
        """How long to wait between reads of the job."""
        if self.notifies:
            while True:
                yield SAFETY_POLL_S
        yield from SQLITE_POLL_S
        while True:
            yield SQLITE_POLL_S[-1]

    def _listen(self) -> None:
        assert self._conninfo is not None
        while True:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {JOB_FINISHED_CHANNEL}")
                    while True:
                        for notification in connection.notifies(timeout=5.0):
                            self._wake(notification.payload)
            except Exception as error:
                log.warning("job_events_listener_lost", error=repr(error))
                threading.Event().wait(1.0)

    def _wake(self, payload: str) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            return
        with self._lock:
            events = list(self._waiting.get(job_id, ()))
        for event in events:
            event.set()
