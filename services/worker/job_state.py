"""What the inference worker reads and writes in the database: it claims jobs and reads
session transcripts. Results are written by post-processing, not here."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection

from sqlalchemy import select, update

from shared.db.engine import session_scope
from shared.db.models import Job, JobStatus, Message, utcnow
from shared.messaging.schemas import ChatTurn


def claim_jobs(database_url: str, job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:
    """Move queued jobs to ``in_progress`` and return every job's status.

    Jobs missing from the result do not exist; a job that is not ``in_progress`` afterwards
    was cancelled or finished already (a redelivery) and must not run.
    """
    if not job_ids:
        return {}
    now = utcnow()
    with session_scope(database_url) as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.IN_PROGRESS, started_at=now, updated_at=now)
        )
        rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids))).all()
    return {job_id: status for job_id, status in rows}


def load_session_turns(
    database_url: str, session_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[ChatTurn]]:
    """Each session's stored transcript, oldest turn first."""
    if not session_ids:
        return {}
    turns: dict[uuid.UUID, list[ChatTurn]] = defaultdict(list)
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Message.session_id, Message.role, Message.content)
            .where(Message.session_id.in_(session_ids))
            .order_by(Message.created_at, Message.job_id, Message.position)
        ).all()
    for session_id, role, content in rows:
        turns[session_id].append(ChatTurn(role=role, content=content))
    return turns
