"""Storing and reading feedback: one per job, of the caller's tenant, on a completed job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.auth import Caller
from services.api.context import ApiContext
from services.api.feedback.protocol import FeedbackCreate
from services.api.problems import Problem, ProblemType
from shared.db.engine import session_scope
from shared.db.models import ChatSession, Feedback, Job, JobStatus, Tenant, utcnow
from shared.pii import PlaceholderMap
from shared.pii.secret import pii_secret
from shared.tenant_safety import load_tenant_safety


@dataclass(frozen=True)
class StoredFeedback:
    row: Feedback
    created: bool  # False: it replaced the job's earlier feedback


def _job_not_found(job_id: uuid.UUID) -> Problem:
    return Problem(ProblemType.NOT_FOUND, f"No job {str(job_id)!r}.")


def store_feedback(
    ctx: ApiContext, caller: Caller, job_id: uuid.UUID, feedback: FeedbackCreate
) -> StoredFeedback:
    with session_scope(ctx.settings.database_url) as session:
        job = session.scalar(
            select(Job)
            .where(Job.id == job_id, Job.tenant_id == caller.tenant_id)
            # one writer per job at a time: two first ratings cannot both insert
            .with_for_update(of=Job)
        )
        if job is None:
            raise _job_not_found(job_id)
        if job.status is not JobStatus.COMPLETED:
            raise Problem(
                ProblemType.JOB_NOT_COMPLETED,
                f"The job is {job.status.value}; feedback is about an answer, so only a "
                "completed job takes it.",
                job_status=job.status.value,
            )
        if job.response is None:  # erased with its session (shared/erasure.py)
            raise Problem(
                ProblemType.JOB_ERASED, "The job's texts were erased; there is no answer to judge."
            )
        row = session.scalar(select(Feedback).where(Feedback.job_id == job_id))
        created = row is None
        now = utcnow()
        if row is None:
            row = Feedback(job_id=job_id, tenant_id=caller.tenant_id, created_at=now)
            session.add(row)
        assert feedback.scale is not None  # the model's validator fills it
        row.api_key_id = caller.key_id
        row.rating = feedback.rating
        row.scale = feedback.scale.value
        row.comment, row.corrected_answer = feedback.comment, feedback.corrected_answer
        if job.redacted_at is not None:
            # the retention purge has passed this job and will not come back to it: what
            # quotes the customer is kept as the purge keeps the job's own texts
            row.comment, row.corrected_answer = _anonymised(
                session, ctx, job, row.comment, row.corrected_answer
            )
        row.updated_at = now
        session.flush()
        return StoredFeedback(row, created)


def _anonymised(
    session: Session, ctx: ApiContext, job: Job, *texts: str | None
) -> tuple[str | None, ...]:
    tenant = session.get(Tenant, job.tenant_id)
    assert tenant is not None
    anonymizer = load_tenant_safety(session, tenant).anonymizer
    chat_session = (
        session.get(ChatSession, job.session_id, with_for_update=True)
        if job.session_id is not None
        else None
    )
    placeholders = PlaceholderMap(
        pii_secret(ctx.settings), chat_session.pii_placeholders if chat_session else None
    )
    cleaned = tuple(
        anonymizer.anonymize(text, placeholders) if text is not None else None for text in texts
    )
    if chat_session is not None:
        chat_session.pii_placeholders = placeholders.to_json()
    return cleaned


def load_feedback(ctx: ApiContext, caller: Caller, job_id: uuid.UUID) -> Feedback:
    with session_scope(ctx.settings.database_url) as session:
        job_exists = session.scalar(
            select(Job.id).where(Job.id == job_id, Job.tenant_id == caller.tenant_id)
        )
        if job_exists is None:
            raise _job_not_found(job_id)
        row = session.scalar(select(Feedback).where(Feedback.job_id == job_id))
        if row is None:
            raise Problem(ProblemType.NOT_FOUND, f"The job {str(job_id)!r} has no feedback.")
        return row
