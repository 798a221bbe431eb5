"""Postgres notifications that chatq sends (listeners: the API's long-polls)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

JOB_FINISHED_CHANNEL = "chatq_jobs"


def notify_job_finished(session: Session, job_id: uuid.UUID) -> None:
    """Queue a notification for ``job_id``; Postgres sends it when the transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(JOB_FINISHED_CHANNEL, str(job_id))))
