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
from collections.abc import Callable

from sqlalchemy import String, bindparam, event, func, select
from sqlalchemy.orm import Session

from shared.doorbell import Doorbell

JOB_FINISHED_CHANNEL = "chatq_jobs"

# Postgres refuses a NOTIFY payload of 8000 bytes or more
MAX_PAYLOAD_BYTES = 7999

_RING_PENDING = "chatq_ring_job_finished"


def notify_job_finished(
    session: Session, job_id: uuid.UUID, render: Callable[[], str] | None = None
) -> None:
    """Queue a notification for ``job_id``, sent when the session's transaction commits.

    ``render`` gives the finished job as the API shows it (``JobView`` JSON). On Postgres it
    rides in the notification when it fits, so that a long-poll answers from it instead of
    reading the job again (one round trip and the rendering, on the path every waited job
    takes); what the transaction commits is what it says."""
    if session.get_bind().dialect.name == "postgresql":
        payload = notification_payload(job_id, render() if render is not None else None)
        session.execute(NOTIFY_JOB_FINISHED, {NOTIFICATION: payload})
    else:
        ring_job_finished_after_commit(session)


NOTIFICATION = "notification"
NOTIFY_JOB_FINISHED = select(
    func.pg_notify(JOB_FINISHED_CHANNEL, bindparam(NOTIFICATION, type_=String()))
)
"""Postgres: the ``pg_notify`` of a finished job, its payload (``notification_payload``) the
parameter ``NOTIFICATION``; sent when the transaction commits. A statement of its own, or the
outer SELECT of a statement whose WITH clauses make the writes it announces."""


def notification_payload(job_id: uuid.UUID, rendered: str | None) -> str:
    """``"<job id>"``, or ``"<job id> <rendered job>"`` where that fits in a notification."""
    if rendered is not None:
        payload = f"{job_id} {rendered}"
        if len(payload.encode()) <= MAX_PAYLOAD_BYTES:
            return payload
    return str(job_id)


def parse_notification(payload: str) -> tuple[uuid.UUID, str | None] | None:
    """The job id and the rendered job (None when it did not fit) of a payload; None for a
    payload that names no job."""
    head, _, rendered = payload.partition(" ")
    try:
        return uuid.UUID(head), rendered or None
    except ValueError:
        return None


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
