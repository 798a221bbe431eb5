"""What the inference worker reads and writes in the database: it claims jobs and reads
session transcripts. Results are written by post-processing, not here."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from shared.db.engine import session_scope
from shared.db.models import ApiKey, Job, JobStatus, Message, utcnow
from shared.messaging.schemas import ChatTurn


@dataclass(frozen=True)
class Claim:
    status: JobStatus
    attempts: int  # how often a worker has taken the job, this time included
    tenant_id: uuid.UUID | None = None  # whose knowledge answers it
    signing_secret: str | None = field(default=None, repr=False)  # the key's webhook secret


def claim_jobs(database_url: str, job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Claim]:
    """Take jobs for running: queued (or redelivered in-progress) jobs become ``in_progress``
    and count one more attempt. Returns every existing job's claim.

    A job that is not ``in_progress`` afterwards was cancelled or finished already (a
    redelivery) and must not run.
    """
    if not job_ids:
        return {}
    now = utcnow()
    with session_scope(database_url) as session:
        session.execute(
            update(Job)
            .where(
                Job.id.in_(job_ids),
                Job.status.in_([JobStatus.QUEUED, JobStatus.IN_PROGRESS]),
            )
            .values(
                status=JobStatus.IN_PROGRESS,
                started_at=func.coalesce(Job.started_at, now),
                attempts=Job.attempts + 1,
                updated_at=now,
            )
        )
        rows = session.execute(
            select(Job.id, Job.status, Job.attempts, ApiKey.tenant_id, ApiKey.webhook_secret)
            .join(ApiKey, ApiKey.id == Job.api_key_id)
            .where(Job.id.in_(job_ids))
        ).all()
    return {
        job_id: Claim(status, attempts, tenant_id, secret)
        for job_id, status, attempts, tenant_id, secret in rows
    }


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
