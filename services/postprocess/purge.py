"""Retention: what the settings no longer allow to keep goes, on a schedule and on demand.

- After ``CHATQ_RESULT_RETENTION_S`` a finished job keeps only the anonymised copy of its texts
  (question, history, answer): the same placeholders as its session's transcript.
- After ``CHATQ_TRANSCRIPT_RETENTION_DAYS`` transcripts and job texts are deleted, and sessions
  with no activity since are removed.

Post-processors run it every ``CHATQ_PURGE_INTERVAL_S``; ``chatq purge`` runs it at once. Every
step is idempotent, so two post-processors purging at the same time do no harm.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import ChatSession, Feedback, Job, JobStatus, Message, Tenant, utcnow
from shared.erasure import erase_job_texts
from shared.periodic import PeriodicWork
from shared.pii import PlaceholderMap
from shared.pii.secret import pii_secret
from shared.tenant_safety import TenantSafetyCache

BATCH = 500
TERMINAL = [status for status in JobStatus if status.is_terminal]


@dataclass
class PurgeCounts:
    anonymised_jobs: int = 0
    erased_jobs: int = 0
    deleted_messages: int = 0
    deleted_sessions: int = 0

    @property
    def total(self) -> int:
        return (
            self.anonymised_jobs + self.erased_jobs + self.deleted_messages + self.deleted_sessions
        )


def purge_once(settings: Settings, now: datetime | None = None) -> PurgeCounts:
    now = now or utcnow()
    counts = PurgeCounts()
    safety = TenantSafetyCache()
    secret = pii_secret(settings)
    result_cutoff = now - timedelta(seconds=settings.result_retention_s)
    while True:
        with session_scope(settings.database_url) as session:
            done = _anonymise_finished_jobs(session, safety, secret, result_cutoff, now)
        counts.anonymised_jobs += done
        if done < BATCH:
            break
    if settings.transcript_retention_days:
        cutoff = now - timedelta(days=settings.transcript_retention_days)
        with session_scope(settings.database_url) as session:
            # a DELETE's result is a CursorResult, which Session.execute's typing does not say
            counts.deleted_messages = cast(
                CursorResult[Any],
                session.execute(delete(Message).where(Message.created_at < cutoff)),
            ).rowcount
            old_jobs = session.scalars(
                select(Job.id).where(
                    Job.created_at < cutoff, Job.status.in_(TERMINAL), Job.query != ""
                )
            ).all()
            counts.erased_jobs = erase_job_texts(session, old_jobs, now)
            counts.deleted_sessions = cast(
                CursorResult[Any],
                session.execute(delete(ChatSession).where(ChatSession.last_activity_at < cutoff)),
            ).rowcount
    return counts


def _anonymise_finished_jobs(
    session: Session,
    safety: TenantSafetyCache,
    secret: bytes,
    cutoff: datetime,
    now: datetime,
) -> int:
    jobs = session.scalars(
        select(Job)
        .where(Job.redacted_at.is_(None), Job.status.in_(TERMINAL), Job.completed_at <= cutoff)
        .order_by(Job.completed_at)
        .limit(BATCH)
    ).all()
    for job in jobs:
        tenant = session.get(Tenant, job.tenant_id)
        assert tenant is not None
        anonymizer = safety.get(session, tenant).anonymizer
        chat_session = job.session
        placeholders = PlaceholderMap(
            secret, chat_session.pii_placeholders if chat_session is not None else None
        )
        job.query = anonymizer.anonymize(job.query, placeholders)
        job.history = [
            {**turn, "content": anonymizer.anonymize(turn.get("content", ""), placeholders)}
            for turn in job.history
        ]
        if job.response is not None:
            job.response = anonymizer.anonymize(job.response, placeholders)
        feedback = session.scalar(select(Feedback).where(Feedback.job_id == job.id))
        if feedback is not None:  # a correction or comment may quote the customer
            if feedback.comment is not None:
                feedback.comment = anonymizer.anonymize(feedback.comment, placeholders)
            if feedback.corrected_answer is not None:
                feedback.corrected_answer = anonymizer.anonymize(
                    feedback.corrected_answer, placeholders
                )
        job.redacted_at = now
        if chat_session is not None:
            chat_session.pii_placeholders = placeholders.to_json()
    return len(jobs)


class PurgeSchedule(PeriodicWork):
    name = "purge"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.purge_interval_s)
        self.settings = settings

    def run_once(self) -> int:
        return purge_once(self.settings).total
