"""Storing an inference outcome: the job's result, its transcript and its webhook event, in one
transaction, exactly once however often the outcome is redelivered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.postprocess.job_metrics import FinishedJob, observe_finished
from services.postprocess.job_writes import JOB_RESULT_COLUMNS, JobWrites
from services.postprocess.moderation import moderate_answer
from shared.batch_completion import finish_batch_if_done
from shared.config import Settings
from shared.db.engine import session_scope, writes_in_with_clauses
from shared.db.models import (
    ChatSession,
    DeliveryStatus,
    Job,
    JobStatus,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from shared.job_view import JobView
from shared.logs import get_logger
from shared.messaging.schemas import InferenceOutcome, JobError
from shared.pii import PlaceholderMap
from shared.pii.secret import pii_secret
from shared.tenant_safety import TenantSafety, TenantSafetyCache

log = get_logger(__name__)

EVENT_FOR_STATUS = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.EXPIRED: "job.failed",
}


HANDOFF_EVENT = "job.handoff"
# what an outcome sets only when the job completed
ANSWER_COLUMNS = tuple(
    name
    for name in JOB_RESULT_COLUMNS
    if name not in {"status", "completed_at", "updated_at", "error"}
)

# each tenant's moderator and anonymiser, rebuilt when its knowledge version moves
_safety = TenantSafetyCache()

# Longer than a delivery attempt can take (CHATQ_WEBHOOK_TIMEOUT_S is at most 120 s): a sweeper
# that found the new delivery due would start a second attempt of it.
FIRST_ATTEMPT_LEASE = timedelta(seconds=150)


def new_delivery_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def record_outcome(settings: Settings, outcome: InferenceOutcome) -> list[str]:
    """Store ``outcome``; return the ids of webhook deliveries to attempt now.

    A job already in a terminal state (a redelivered outcome, or a job cancelled meanwhile) is
    left as it is; its still-unattempted deliveries are returned again, in case the process that
    stored it died before handing them on.

    Every finished job takes this path, so it costs few round trips: the job is read and locked
    in one, and its new state, transcript, session, deliveries and notification are written in
    one more on Postgres (``JobWrites``), as plain statements without the ORM's unit of work.
    """
    with session_scope(settings.database_url) as session:
        found = session.execute(
            # the tenant comes in the same round trip (its moderation and anonymisation);
            # of=Job: Postgres cannot lock the outer-joined session row that comes with it
            select(Job, Tenant)
            .join(Tenant, Tenant.id == Job.tenant_id)
            .where(Job.id == outcome.job_id)
            .with_for_update(of=Job)
        ).one_or_none()
        if found is None:  # a tenant's jobs go with it (ON DELETE CASCADE)
            log.warning("outcome_for_unknown_job", job_id=str(outcome.job_id))
            return []
        job, tenant = found
        if job.status.is_terminal:
            log.info("outcome_already_recorded", job_id=str(job.id), status=job.status.value)
            return _unattempted_deliveries(session, job.id)
        # From here the loaded job only describes the new state (its view, its webhooks): the
        # writes below store it, and the session must not flush it a second time.
        session.expunge(job)

        now = utcnow()
        safety = _safety.get(session, tenant)
        changes = _finished_state(job, outcome, safety, now)
        for name, value in changes.items():
            setattr(job, name, value)
        writes = JobWrites(job.id, one_statement=writes_in_with_clauses(settings.database_url))
        writes.update_job(changes)
        stored_texts = _anonymise_texts(session, job, safety, pii_secret(settings), writes, now)
        if job.status is JobStatus.COMPLETED:
            _write_transcript(writes, job, stored_texts, now)
        view = JobView.from_job(job)
        deliveries = []
        if job.webhook_url:
            events = [EVENT_FOR_STATUS[job.status]]
            if job.handoff:
                # a person takes over: the backend routes the conversation to its agents
                events.append(HANDOFF_EVENT)
            shown = view.model_dump(mode="json")
            for event_type in events:
                delivery_id = new_delivery_id()
                writes.insert_delivery(
                    {
                        "id": delivery_id,
                        "job_id": job.id,
                        "api_key_id": job.api_key_id,
                        "event_type": event_type,
                        "url": job.webhook_url,
                        # stored anonymised: the sender puts the clear texts back while the job
                        # still holds them (see CHATQ_RESULT_RETENTION_S)
                        "payload": _anonymised(
                            webhook_payload(event_type, shown, now), stored_texts
                        ),
                        "status": DeliveryStatus.PENDING,
                        # the first attempt is handed on by finalize_job at once; the sweeper
                        # takes the delivery only if that hand-off is lost, not while it runs
                        "next_attempt_at": now + FIRST_ATTEMPT_LEASE,
                        "attempt_count": 0,
                        "created_at": now,
                    }
                )
                deliveries.append(delivery_id)
        # the job as the API shows it rides in the notification (Postgres): a long-poll
        # answers from it without reading the job again
        writes.execute(session, render=view.model_dump_json)
        if job.batch_id is not None:  # its batch ends with its last job
            deliveries += finish_batch_if_done(
                session, job.batch_id, now, first_attempt_at=now + FIRST_ATTEMPT_LEASE
            )
        log.info("job_finished", job_id=str(job.id), status=job.status.value)
        finished = FinishedJob(job.status.value, job.route, job.timings, outcome.usage, job.handoff)
    observe_finished(finished)  # once committed: a rolled-back store is retried, not counted
    return deliveries


def _finished_state(
    job: Job, outcome: InferenceOutcome, safety: TenantSafety, now: datetime
) -> dict[str, Any]:
    """The job's columns as ``outcome`` leaves them (the answer moderated): a value for each
    of ``JOB_RESULT_COLUMNS``. Those of the answer stay as a job that has not finished has
    them, unless it completed."""
    changes: dict[str, Any] = {
        "status": JobStatus(outcome.status),
        "completed_at": now,
        "updated_at": now,
        "error": outcome.error.model_dump() if outcome.error else None,
        **{name: getattr(job, name) for name in ANSWER_COLUMNS},
    }
    if outcome.status != "completed":
        return changes
    checked = moderate_answer(safety, job.query, outcome)
    changes |= {
        "response": checked.response,
        "route": checked.route,
        "moderation": checked.moderation,
        "sources": [source.model_dump() for source in outcome.sources],
        "intent": outcome.intent.model_dump() if outcome.intent else None,
        "handoff": outcome.handoff,
        "usage": outcome.usage.model_dump() if outcome.usage else None,
        "engine": outcome.engine.model_dump() if outcome.engine else None,
        "model_version": (
            (outcome.engine.version or outcome.engine.model) if outcome.engine else None
        ),
    }
    if outcome.timings:
        timings = outcome.timings.model_copy(
            update={"total_ms": round((now - job.created_at).total_seconds() * 1000, 3)}
        )
        changes |= {"timings": timings.model_dump(), "batch_size": timings.batch_size}
    return changes


@dataclass(frozen=True)
class StoredTexts:
    """A job's question and answer as they may be kept: anonymised."""

    query: str
    response: str | None


def _anonymise_texts(
    session: Session,
    job: Job,
    safety: TenantSafety,
    secret: bytes,
    writes: JobWrites,
    now: datetime,
) -> StoredTexts:
    """The texts anonymised with the session's placeholders (its row locked while they are
    read and written back, so that concurrent turns number their values alike)."""
    known: Any = None
    if job.session_id is not None:
        known = session.execute(
            select(ChatSession.pii_placeholders)
            .where(ChatSession.id == job.session_id)
            .with_for_update()
        ).one_or_none()
    placeholders = PlaceholderMap(secret, known[0] if known is not None else None)
    stored = StoredTexts(
        query=safety.anonymizer.anonymize(job.query, placeholders),
        response=(
            safety.anonymizer.anonymize(job.response, placeholders)
            if job.response is not None
            else None
        ),
    )
    if known is not None:
        assert job.session_id is not None  # known is the session's row
        active_at = now if job.status is JobStatus.COMPLETED else None
        writes.update_session(job.session_id, placeholders.to_json(), active_at)
    return stored


def _write_transcript(writes: JobWrites, job: Job, texts: StoredTexts, now: datetime) -> None:
    question = (0, "user", texts.query, job.created_at)
    answer = (1, "assistant", texts.response or "", now)
    for position, role, content, created_at in (question, answer):
        writes.insert_message(
            {
                "id": uuid.uuid4(),
                "job_id": job.id,
                "session_id": job.session_id,
                "position": position,
                "role": role,
                "content": content,
                "created_at": created_at,
            }
        )


def webhook_payload(event_type: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The Standard Webhooks envelope: ``type``, ``timestamp`` and the job as ``data``."""
    return {"type": event_type, "timestamp": now.isoformat(), "data": data}


def _anonymised(payload: dict[str, Any], texts: StoredTexts) -> dict[str, Any]:
    data = payload["data"]
    return {**payload, "data": {**data, "query": texts.query, "response": texts.response}}


def _unattempted_deliveries(session: Session, job_id: uuid.UUID) -> list[str]:
    return list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.job_id == job_id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.attempt_count == 0,
            )
        )
    )


def record_failure(settings: Settings, job_id: uuid.UUID, code: str, message: str) -> list[str]:
    """Fail a job that post-processing could not finish (its outcome keeps failing)."""
    outcome = InferenceOutcome(
        job_id=job_id,
        status="failed",
        error=JobError(code=code, message=message[:1000]),
        finished_at=utcnow(),
    )
    return record_outcome(settings, outcome)
