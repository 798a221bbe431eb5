"""What the inference worker reads and writes in the database: it claims jobs and reads
session transcripts (one transaction for both, ``claim_with_transcripts``). Results are written
by post-processing, not here."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.engine import session_scope
from shared.db.models import ApiKey, Job, JobStatus, Message, utcnow
from shared.messaging.schemas import ChatTurn


@dataclass(frozen=True)
class Claim:
    status: JobStatus
    attempts: int  # how often a worker has taken the job, this time included
    tenant_id: uuid.UUID | None = None  # whose knowledge answers it
    signing_secret: str | None = field(default=None, repr=False)  # the key's webhook secret


@dataclass(frozen=True)
class ClaimedJobs:
    claims: dict[uuid.UUID, Claim]  # every existing job's claim
    transcripts: dict[uuid.UUID, list[ChatTurn]]  # by session, of the jobs claimed to run


def claim_jobs(database_url: str, job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Claim]:
    """Take jobs for running: queued (or redelivered in-progress) jobs become ``in_progress``
    and count one more attempt. Returns every existing job's claim.

    A job that is not ``in_progress`` afterwards was cancelled or finished already (a
    redelivery) and must not run.
    """
    if not job_ids:
        return {}
    with session_scope(database_url) as session:
        return _claim(session, job_ids)


def claim_with_transcripts(
    database_url: str, session_by_job: Mapping[uuid.UUID, uuid.UUID | None]
) -> ClaimedJobs:
    """``claim_jobs`` for the jobs named, and the stored transcripts of the sessions of those
    that run, in one transaction (one round trip fewer, and the claim and the history agree)."""
    if not session_by_job:
        return ClaimedJobs({}, {})
    with session_scope(database_url) as session:
        claims = _claim(session, session_by_job.keys())
        session_ids = {
            session_id
            for job_id, session_id in session_by_job.items()
            if session_id is not None
            and (claim := claims.get(job_id)) is not None
            and claim.status is JobStatus.IN_PROGRESS
        }
        return ClaimedJobs(claims, _session_turns(session, session_ids))


def _claim(session: Session, job_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Claim]:
    now = utcnow()
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
    with session_scope(database_url) as session:
        return _session_turns(session, session_ids)


def _session_turns(
    session: Session, session_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[ChatTurn]]:
    if not session_ids:
        return {}
    turns: dict[uuid.UUID, list[ChatTurn]] = defaultdict(list)
    rows = session.execute(
        select(Message.session_id, Message.role, Message.content)
        .where(Message.session_id.in_(session_ids))
        .order_by(Message.created_at, Message.job_id, Message.position)
    ).all()
    for session_id, role, content in rows:
        assert session_id is not None  # the query asked for these sessions' messages only
        turns[session_id].append(ChatTurn(role=role, content=content))
    return dict(turns)
