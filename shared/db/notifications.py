"""How chatq announces that a job has finished (listeners: the API's long-polls).

On Postgres, a ``NOTIFY`` that the database sends when the transaction commits. SQLite has no
notifications: the job-finished doorbell (``shared/doorbell.py``) of the database file rings
once the transaction has committed, and the API's watcher, which otherwise looks every
``SQLITE_WATCH_S``, looks at once.
"""

from __future__ import annotations

import functools
import os
import uuid

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from shared.doorbell import Doorbell

JOB_FINISHED_CHANNEL = "chatq_jobs"

_RING_PENDING = "chatq_ring_job_finished"


def notify_job_finished(session: Session, job_id: uuid.UUID) -> None:
    """Queue a notification for ``job_id``, sent when the session's transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(JOB_FINISHED_CHANNEL, str(job_id))))
    else:
        ring_job_finished_after_commit(session)


def ring_job_finished_after_commit(session: Session) -> None:
    """SQLite: ring the database's job-finished doorbell once this transaction commits (once,
    however many jobs it finishes: the watcher looks at every job waited for)."""
    session.info[_RING_PENDING] = job_finished_bell(session.get_bind().engine.url.database)


@event.listens_for(Session, "after_commit")
def _ring_once_committed(session: Session) -> None:
    bell = session.info.pop(_RING_PENDING, None)
    if bell is not None:
        bell.ring()


@event.listens_for(Session, "after_rollback")
def _forget_when_rolled_back(session: Session) -> None:
    session.info.pop(_RING_PENDING, None)


@functools.cache
def _bell(path: str) -> Doorbell:
    return Doorbell(f"{path}#jobs")


def job_finished_bell(database: str | None) -> Doorbell:
    """The job-finished doorbell of the SQLite file ``database`` (the URL's database part)."""
    return _bell(os.path.abspath(database or ""))
